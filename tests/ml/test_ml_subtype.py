"""Bacterial or viral (ml.subtype): labels from names, the fit, serving only where validated, never touching the answer."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ImageOps

from ml.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from ml.cli import fit_subtype
from ml.constants import DEFAULT_WEIGHTS
from ml.decode import decode_with_tags
from ml.inference import NORMAL, PNEUMONIA, Predictor
from ml.subtype import BACTERIAL, VIRAL, Subtype, SubtypeHead
from ml.training.data import load_source
from ml.training.subtype import evaluate_head, fit_head, person_bootstrap_auc, subtype_films, subtype_of, targets

FIXTURES = Path(__file__).parent.parent / "fixtures"
XRAYS = FIXTURES / "xrays"
FILMS = sorted(p.name for p in XRAYS.glob("*.jpeg"))
AGES = [None, 0.5, 1, 3.5, 5, 6, 40]


def film(name):
    return decode_with_tags(str(XRAYS / name))


def synthetic_head(dimensions, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    return SubtypeHead(np.zeros(dimensions), np.ones(dimensions), rng.normal(0, 0.05, dimensions), np.zeros(1),
                       auc=0.9, auc_ci95=(0.85, 0.95), **kwargs)


@pytest.fixture(scope="module")
def shipped():
    return Predictor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def plain(shipped):
    return replace(shipped, subtype=None)


@pytest.fixture(scope="module")
def headed(shipped):
    dimensions = shipped._forward([film("normal-1.jpeg")[0]], [None]).features.shape[1]
    return replace(shipped, subtype=synthetic_head(dimensions))


def test_it_reads_bacterial_or_viral_from_each_films_own_kermany_name():
    assert subtype_of("/data/train/PNEUMONIA/person1_bacteria_1.jpeg") == BACTERIAL
    assert subtype_of("person1_virus_6.jpeg") == VIRAL  # the same person, another film, its own label
    assert subtype_of(Path("x/PERSON22_VIRUS_54.JPEG")) == VIRAL
    for name in ("IM-0117-0001.jpeg", "NORMAL2-IM-0633-0001.jpeg", "00001697_014.jpeg", "person1_fungus_1.jpeg",
                 "adult-pneumonia-1.jpeg", "person1_bacteria_1.jpeg.txt", "my_person1_bacteria_1.jpeg"):
        assert subtype_of(name) is None, name


def test_it_keeps_only_the_pneumonia_films_whose_name_carries_the_kind():
    source = load_source("kermany", FIXTURES / "validation" / "kermany", val_fraction=0.3)
    films = subtype_films(source.train + source.val)
    assert len(films) == 20 and {label for _, label in films} == {BACTERIAL, VIRAL}
    assert all(s.label == 1 and s.patient.startswith("person") for s, _ in films)
    assert list(targets([BACTERIAL, VIRAL, VIRAL])) == [1, 0, 0]


def test_it_fits_a_head_that_separates_separable_features_with_a_person_bootstrap():
    rng = np.random.default_rng(0)

    def draw(n, persons):
        y = rng.integers(0, 2, n)
        x = rng.normal(0, 1, (n, 12)) + 6.0 * y[:, None] * np.eye(12)[0] + 50.0  # offset: standardisation matters
        return x, y, [f"p{i % persons}" for i in range(n)]

    head, report = fit_head(*draw(300, 120))
    assert report["C"] in report["cv_auc_by_C"] or f"{report['C']:g}" in report["cv_auc_by_C"]
    assert min(report["cv_auc_by_C"].values()) > 0.95 and report["persons"] == 120
    figures = evaluate_head(head, *draw(200, 80), resamples=300)
    assert figures["auc"] > 0.99 and 0.97 < figures["auc_ci95"][0] <= figures["auc"] <= figures["auc_ci95"][1]
    assert sum(figures["n"].values()) == 200 and figures["persons"] == 80 and figures["threshold"] == 0.5
    assert figures["accuracy"] > 0.95 and "persons" in figures["ci_method"]
    [answer] = head.predict(torch.tensor(draw(1, 1)[0], dtype=torch.float32))
    assert answer.label in (BACTERIAL, VIRAL) and 0.5 <= answer.probability <= 1.0


def test_its_person_bootstrap_moves_a_persons_films_together():
    y = np.array([1, 1, 0, 0])
    low, high = person_bootstrap_auc(y, np.array([0.9, 0.8, 0.2, 0.1]), ["a", "a", "b", "b"], resamples=50)
    assert low == high == 1.0  # a resample holds both of a person's films or neither: never one class only by halves


def test_it_labels_by_the_threshold_and_gives_the_probability_of_the_label_given():
    head = SubtypeHead(np.zeros(1), np.ones(1), np.ones(1), np.zeros(1), auc=0.9, auc_ci95=(0.8, 0.95))
    bacterial, viral, even = head.predict(torch.tensor([[2.0], [-2.0], [0.0]]))
    assert bacterial == Subtype(BACTERIAL, pytest.approx(float(torch.sigmoid(torch.tensor(2.0)))), 0.9, (0.8, 0.95))
    assert viral.label == VIRAL and viral.probability == pytest.approx(bacterial.probability)
    assert even.label == BACTERIAL and even.probability == 0.5
    assert [head.applies(a) for a in (None, 0.99, 1, 3, 5, 5.01, 40)] == [False, False, True, True, True, False, False]


def test_it_sets_the_subtype_only_for_pneumonia_within_the_validated_ages(headed):
    pneumonia, normal = film("pneumonia-1.jpeg"), film("normal-2.jpeg")
    inverted = (ImageOps.invert(normal[0].convert("L")), None)
    items = [(*pneumonia, age, "PA") for age in AGES] + [(*normal, 3.5, "PA"), (*inverted, 3.5, "PA")]
    answers = headed.assess_batch(items)
    for age, answer in zip(AGES, answers[:len(AGES)], strict=True):
        assert answer.label == PNEUMONIA
        if age is not None and 1 <= age <= 5:
            assert isinstance(answer.subtype, Subtype) and answer.subtype.label in (BACTERIAL, VIRAL)
            assert 0.5 <= answer.subtype.probability <= 1 and answer.subtype.auc_ci95 == (0.85, 0.95)
        else:
            assert answer.subtype is None, age  # no age, under 1, over 5: never validated there
    normal_answer, refused = answers[len(AGES):]
    assert normal_answer.label == NORMAL and normal_answer.subtype is None
    assert refused.ood and refused.subtype is None


def test_it_gives_no_subtype_for_a_lateral_view(headed):
    frontal, lateral = headed.assess_batch([(*film("pneumonia-1.jpeg"), 3.5, view) for view in ("PA", "LAT")])
    assert frontal.subtype is not None and lateral.subtype is None  # validated on frontal films only
    assert frontal.label == lateral.label and frontal.probability == pytest.approx(lateral.probability, abs=1e-5)


def test_it_never_changes_the_label_probability_or_population(plain, headed):
    items = [(*film(name), age, "PA") for name in FILMS for age in AGES]
    without, with_head = plain.assess_batch(items), headed.assess_batch(items)
    assert any(a.subtype for a in with_head) and not any(a.subtype for a in without)
    for a, b, (_, _, age, _) in zip(without, with_head, items, strict=True):
        assert (a.label, a.probability, a.population, a.threshold, a.ood, a.ood_reason, a.warnings) == \
            (b.label, b.probability, b.population, b.threshold, b.ood, b.ood_reason, b.warnings)
        assert (b.subtype is not None) == (b.label == PNEUMONIA and not b.ood and age is not None and 1 <= age <= 5)
    screened = [(image, info, age) for image, info, age, _ in items]
    assert [s.probability for s in plain.screen(screened)] == [s.probability for s in headed.screen(screened)]


def test_it_reads_the_subtype_from_the_same_forward_pass(headed, monkeypatch):
    image, info = film("pneumonia-2.jpeg")
    features = headed._forward([image], [3.0]).features
    calls = []
    original = headed.model.image_features
    monkeypatch.setattr(headed.model, "image_features", lambda x: calls.append(len(x)) or original(x))
    answer = headed.assess(image, info, age=3.0)
    assert calls == [1]  # one forward pass for the label and the subtype
    [expected] = headed.subtype.predict(features)
    assert answer.subtype.label == expected.label
    assert answer.subtype.probability == pytest.approx(expected.probability, abs=1e-6)
    explained = headed.assess(image, info, age=3.0, explain=True)
    assert explained.subtype.label == expected.label and explained.heatmaps is not None
    assert explained.subtype.probability == pytest.approx(expected.probability, abs=1e-5)


def test_it_round_trips_the_head_through_the_checkpoint(tmp_path):
    predictor = Predictor.untrained("lite0-dinov2s8", device="cpu")
    dimensions = predictor._forward([film("normal-1.jpeg")[0]], [None]).features.shape[1]
    head = synthetic_head(dimensions, seed=3, validated_ages=(1, 5))
    card = {"name": "round-trip", "subtype": {"validated_ages": [1, 5], "threshold": 0.5,
                                              "validation": {"auc": 0.9, "auc_ci95": [0.85, 0.95]}}}
    path = tmp_path / "m.safetensors"
    save_checkpoint(predictor.model.float().to(memory_format=torch.contiguous_format), card, path,
                    extra=head.tensors())
    _, _, extra = load_checkpoint(path, with_extra=True)
    assert sorted(extra) == ["subtype.bias", "subtype.mean", "subtype.scale", "subtype.weight"]
    loaded = Predictor.from_checkpoint(path, device="cpu", precision="fp32")
    x = torch.randn(5, dimensions)
    assert [s.label for s in loaded.subtype.predict(x)] == [s.label for s in head.predict(x)]
    assert np.allclose([s.probability for s in loaded.subtype.predict(x)], [s.probability for s in head.predict(x)],
                       atol=1e-6)
    assert loaded.subtype.validated_ages == (1.0, 5.0) and loaded.subtype.auc_ci95 == (0.85, 0.95)
    assert SubtypeHead.from_checkpoint(extra, None) is None and SubtypeHead.from_checkpoint({}, card["subtype"]) is None


def test_it_fits_measures_and_stores_the_head_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "kermany"
    for label in ("NORMAL", "PNEUMONIA"):
        shutil.copytree(FIXTURES / "validation" / "kermany" / label, data / label)
    source = load_source("kermany", data, val_fraction=0.4)
    torch.manual_seed(0)
    model = Predictor.untrained("lite0-dinov2s8", device="cpu").model.float().to(memory_format=torch.contiguous_format)
    card = {"name": "tiny", "training_data": {"split": {"seed": 0}, "documented_ages_years": {"kermany": [1.0, 5.0]},
                                              "sources": {"kermany": {"sha256": source.digest, "val_fraction": 0.4}}}}
    model_path, out = tmp_path / "m.safetensors", tmp_path / "out" / "m.safetensors"
    save_checkpoint(model, card, model_path, extra={"ood.mean": torch.arange(3.0)})
    fit_subtype.main(["--model", str(model_path), "--data", f"kermany={data}", "--out", str(out),
                      "--cache", str(tmp_path / "cache"), "--resamples", "50"])
    assert "validation: AUC" in capsys.readouterr().out
    written = json.loads(out.with_suffix(".json").read_text())
    entry = written["subtype"]
    assert entry["validated_ages"] == [1.0, 5.0] and entry["classes"] == [BACTERIAL, VIRAL]
    assert entry["base_weights_sha256"] == file_sha256(model_path) != written["weights_sha256"] == file_sha256(out)
    assert sum(entry["training"]["n"].values()) + sum(entry["validation"]["n"].values()) == 20
    assert list(tmp_path.joinpath("cache").glob("subtype-features-*.npz"))
    before, _, _ = load_checkpoint(model_path, with_extra=True)
    after, _, extra = load_checkpoint(out, with_extra=True)
    assert all(torch.equal(before.state_dict()[k], v) for k, v in after.state_dict().items())  # weights untouched
    assert torch.equal(extra["ood.mean"], torch.arange(3.0))  # the gate's tensors kept
    loaded = Predictor.from_checkpoint(out, device="cpu", precision="fp32")
    assert loaded.subtype is not None and loaded.subtype.auc_ci95 == tuple(entry["validation"]["auc_ci95"])
    again = tmp_path / "again.safetensors"  # a refit from the headed file: same base, cached features reused
    fit_subtype.main(["--model", str(out), "--data", f"kermany={data}", "--out", str(again),
                      "--cache", str(tmp_path / "cache"), "--resamples", "50"])
    assert json.loads(again.with_suffix(".json").read_text())["subtype"]["base_weights_sha256"] == \
        entry["base_weights_sha256"]


def test_the_shipped_model_carries_its_head_and_the_answers_it_was_recorded_with(shipped):
    entry = shipped.card.raw.get("subtype")
    if entry is None:
        pytest.skip("this checkpoint carries no bacterial/viral head")
    # fitted on the features of the network the shipped file holds: the card names that file (before the head was in it)
    assert len(entry["base_weights_sha256"]) == 64 and entry["base_weights_sha256"] != shipped.weights_sha256
    assert shipped.subtype is not None and shipped.subtype.validated_ages == (1.0, 5.0)
    validation = entry["validation"]
    assert validation["auc_ci95"][0] <= validation["auc"] <= validation["auc_ci95"][1]
    assert min(validation["n"].values()) >= 100 and validation["threshold"] == 0.5
    assert DEFAULT_WEIGHTS.stat().st_size <= 120 * 1024 * 1024
