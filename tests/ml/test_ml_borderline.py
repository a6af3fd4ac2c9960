"""The borderline band around each operating point's threshold (issue 18).

``ml.training.calibration.borderline_band``: the 95 % percentile interval of the threshold re-chosen
by the point's own rule on bootstrap resamples of the population's validation films, widened to
include the threshold; stored in the card (``borderline_band``), parsed into
``ml.populations.OperatingPoint.band``, and served as ``ml.inference.Assessment.borderline``.
"""

import dataclasses
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from ml.card import ModelCard
from ml.checkpoint import file_sha256
from ml.constants import DEFAULT_WEIGHTS
from ml.metrics import logit_midpoint, sigmoid, threshold_for_recall
from ml.populations import OperatingPoint, operating_points
from ml.training import calibration
from ml.training.calibration import BAND_RULE, add_bands, borderline_band, calibrate_population

from ..base import run_module
from .test_ml_forward_path import FIXTURES, film

# The shipped model's answers on the bundled films (recorded when it shipped: tests/ml/test_ml_forward_path.py).
RECORDED = json.loads((FIXTURES / "pneumoweb-v4-answers.json").read_text())

# --- the band on synthetic scores ----------------------------------------------------------------


def separated(n_negative=60, n_positive=40):
    """Perfectly separated probabilities: every negative in [0.05, 0.30], every positive in [0.60, 0.95]."""
    probabilities = np.concatenate([np.linspace(0.05, 0.30, n_negative), np.linspace(0.60, 0.95, n_positive)])
    return np.array([0] * n_negative + [1] * n_positive), probabilities


def overlapping(n, seed):
    """Two overlapping normal distributions of logits, half the films each class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    return labels, sigmoid(rng.normal(np.where(labels == 1, 1.5, -1.5), 1.0))


def test_it_puts_the_band_of_perfectly_separated_scores_in_the_gap_around_the_threshold():
    labels, probabilities = separated()
    threshold = threshold_for_recall(labels, probabilities, 1.0)
    assert threshold == pytest.approx(logit_midpoint(0.60, 0.30))  # the rule: midway across the gap
    low, high = borderline_band(labels, probabilities, 1.0)
    assert low <= threshold <= high
    # Each resample's threshold is midway between its lowest positive and its highest negative.
    assert logit_midpoint(0.60, 0.05) <= low and high <= logit_midpoint(0.95, 0.30)
    assert low < high  # the gap's edges move from resample to resample
    assert borderline_band(labels, probabilities, 1.0) == [low, high]  # a fixed seed


def test_it_narrows_the_band_with_more_validation_films():
    small, large = overlapping(120, seed=1), overlapping(3000, seed=1)
    small_band, large_band = borderline_band(*small, 0.95), borderline_band(*large, 0.95)
    for (labels, probabilities), (low, high) in ((small, small_band), (large, large_band)):
        assert low <= threshold_for_recall(labels, probabilities, 0.95) <= high
    assert large_band[1] - large_band[0] < (small_band[1] - small_band[0]) / 2


def test_it_widens_the_band_to_include_the_threshold_it_is_given():
    labels, probabilities = separated()
    low, high = borderline_band(labels, probabilities, 1.0)
    assert borderline_band(labels, probabilities, 1.0, threshold=0.99) == [low, 0.99]
    assert borderline_band(labels, probabilities, 1.0, threshold=0.01) == [0.01, high]


def test_it_needs_both_classes_for_a_band():
    with pytest.raises(ValueError, match="both classes"):
        borderline_band([1, 1, 1], [0.2, 0.5, 0.9], 0.95)
    entry = calibrate_population(np.array([0.1, 0.5, 2.0]), [1, 1, 1], 0.95)
    assert "borderline_band" not in entry  # a population of one class: no band, the rest as before


def test_it_stores_the_band_with_each_calibrated_population():
    labels, probabilities = overlapping(300, seed=2)
    logits = np.log(probabilities / (1 - probabilities))
    entry = calibrate_population(logits, labels, 0.95)
    low, high = entry["borderline_band"]
    assert low <= entry["threshold"] <= high
    assert entry["borderline_band_rule"] == BAND_RULE and "2000 bootstrap resamples" in BAND_RULE


def test_it_adds_bands_to_a_card_keeping_every_other_value():
    labels, probabilities = overlapping(200, seed=3)
    logits = np.log(probabilities / (1 - probabilities)) * 1.3
    films = [SimpleNamespace(label=int(y), age=40.0 if i % 4 else 9.0, source="nih") for i, y in enumerate(labels)]
    populations = calibration.calibrate(films, logits)
    stripped = {name: {k: v for k, v in entry.items() if not k.startswith("borderline_band")}
                for name, entry in populations.items()}
    banded = add_bands(stripped, films, logits)
    assert banded == populations  # the same bands as a full calibration, nothing else changed
    assert stripped["adult"].keys().isdisjoint({"borderline_band"})  # the input is not modified
    kept = {**stripped["adult"], "threshold": 0.3}
    moved = add_bands({"adult": kept}, films, logits)["adult"]
    assert moved["borderline_band"][0] <= 0.3 <= moved["borderline_band"][1]  # around the card's own threshold
    assert {k: v for k, v in moved.items() if not k.startswith("borderline_band")} == kept


# --- the operating point and the card ------------------------------------------------------------


@pytest.mark.parametrize("probability, borderline", [(0.0999, False), (0.1, True), (0.2, True), (0.3, True),
                                                     (0.3001, False), (0.0, False), (1.0, False), (None, False)])
def test_it_is_borderline_inside_the_band_edges_included(probability, borderline):
    point = OperatingPoint("adult", 0.2, 1.0, (18, 121), band=(0.1, 0.3))
    assert point.is_borderline(probability) is borderline


@pytest.mark.parametrize("probability", [0.0, 0.2, 0.5, 1.0])
def test_it_is_never_borderline_without_a_band(probability):
    assert OperatingPoint("adult", 0.2, 1.0, (18, 121)).is_borderline(probability) is False


CARD = {
    "populations": {
        "adult": {"threshold": 0.25, "temperature": 1.5, "age_band": [18, 121], "min_recall": 0.95,
                  "borderline_band": [0.2, 0.4]},
        "pediatric": {"threshold": 0.08, "temperature": 1.2, "age_band": [0, 18], "min_recall": 0.98,
                      "borderline_band": [0.05, 0.15]},
    },
}


def test_it_reads_each_populations_band_from_the_card():
    points = ModelCard.from_dict(CARD).points
    assert points["adult"].band == (0.2, 0.4) and points["pediatric"].band == (0.05, 0.15)
    assert points["pediatric"].is_borderline(0.15) and not points["adult"].is_borderline(0.15)
    assert points["adult"].to_dict()["borderline_band"] == [0.2, 0.4]
    again = {"populations": {name: {**entry, "borderline_band": points[name].to_dict()["borderline_band"]}
                             for name, entry in CARD["populations"].items()}}
    assert operating_points(again) == operating_points(CARD)  # round trip


def test_it_reads_a_card_without_bands_as_no_band():
    bare = {"populations": {name: {k: v for k, v in entry.items() if k != "borderline_band"}
                            for name, entry in CARD["populations"].items()}}
    for card in (bare, {"threshold": 0.3, "temperature": 1.0}, {}):
        for point in ModelCard.from_dict(card).points.values():
            assert point.band is None and not point.is_borderline(point.threshold)
            assert point.to_dict()["borderline_band"] is None


@pytest.mark.parametrize("band", [[0.4, 0.2], [0.2], [0.1, 0.2, 0.3], ["low", "high"], [-0.1, 0.2], [0.2, 1.5], 0.3])
def test_it_refuses_a_malformed_band(band):
    card = {"populations": {"adult": {**CARD["populations"]["adult"], "borderline_band": band}}}
    with pytest.raises(ValueError, match="malformed model card"):
        ModelCard.from_dict(card)


def test_the_shipped_card_has_a_band_around_each_threshold():
    card = ModelCard.read(DEFAULT_WEIGHTS)
    assert set(card.points) == {"pediatric", "adult"}
    for name, point in card.points.items():
        low, high = point.band
        assert 0 < low < point.threshold < high < 1, name
        assert card.raw["populations"][name]["borderline_band_rule"] == BAND_RULE
    assert file_sha256(DEFAULT_WEIGHTS) == card.weights_sha256  # bands added to the card, weights untouched


# --- the command ----------------------------------------------------------------------------------


def test_it_adds_only_the_bands_to_an_existing_card(trained, kermany, adults, tmp_path):
    path, _ = trained
    model = tmp_path / path.name
    shutil.copy(path, model)
    card = json.loads(path.with_suffix(".json").read_text())
    bare = {**card, "populations": {name: {k: v for k, v in entry.items() if not k.startswith("borderline_band")}
                                    for name, entry in card["populations"].items()}}
    model.with_suffix(".json").write_text(json.dumps(bare))

    result = run_module("ml.cli.calibrate", "--band-only", "--model", model,
                        "--data", f"kermany={kermany}", "--data", f"nih={adults}")

    assert result.returncode == 0, result.stderr
    again = json.loads(model.with_suffix(".json").read_text())
    assert {k: v for k, v in again.items() if k != "populations"} == {k: v for k, v in bare.items() if k != "populations"}
    for name, entry in bare["populations"].items():
        banded = again["populations"][name]
        assert {k: v for k, v in banded.items() if not k.startswith("borderline_band")} == entry
        low, high = banded["borderline_band"]
        assert low <= entry["threshold"] <= high
        assert f"{name}:\n  borderline band [" in result.stdout
    assert file_sha256(model) == card["weights_sha256"]


# --- serving ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    from ml.inference import Predictor

    return Predictor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def items():
    return [(*film(row["film"]), row["age"], "PA") for row in RECORDED["answers"]]


def with_bands(predictor, band):
    """The same predictor with every population's band replaced (None: a card without bands)."""
    raw = predictor.card.raw
    populations = {name: {**entry, "borderline_band": band} for name, entry in raw["populations"].items()}
    return dataclasses.replace(predictor, card=ModelCard.from_dict({**raw, "populations": populations}))


def assert_recorded(answers):
    for row, answer in zip(RECORDED["answers"], answers, strict=True):
        assert (answer.label, answer.population, answer.ood) == (row["label"], row["population"], row["ood"]), row
        if row["probability"] is None:
            assert answer.probability is None
        else:
            assert answer.probability == pytest.approx(row["probability"], abs=1e-5)
            assert answer.threshold == pytest.approx(row["threshold"])


def test_it_marks_accepted_studies_inside_the_shipped_band_without_changing_the_answer(shipped, items):
    answers = shipped.assess_batch(items)
    assert_recorded(answers)
    for answer in answers:
        if answer.ood:
            assert answer.borderline is False
        else:
            assert answer.borderline == shipped.points[answer.population].is_borderline(answer.probability)
    flags = {(row["film"], row["age"]): a.borderline for row, a in zip(RECORDED["answers"], answers, strict=True)}
    assert flags[("normal-1.jpeg", 3.5)] is True  # P 0.067 in the pediatric band [0.040, 0.182] around 0.069
    assert flags[("adult-normal-1.jpeg", 3.5)] is True  # P 0.108, above the threshold, inside the same band
    assert flags[("normal-1.jpeg", 40.0)] is False  # P 0.040: below the adult band [0.098, 0.365]
    assert flags[("adult-normal-1.jpeg", 40.0)] is False  # P 0.072: below it too
    assert flags[("pneumonia-1.jpeg", 3.5)] is False  # P 0.804: far from both


def test_it_marks_only_accepted_studies_and_nothing_without_a_band(shipped, items):
    everything = with_bands(shipped, [0.0, 1.0]).assess_batch(items)
    assert_recorded(everything)
    assert [a.borderline for a in everything] == [not row["ood"] for row in RECORDED["answers"]]
    bare = with_bands(shipped, None).assess_batch(items)
    assert_recorded(bare)
    assert not any(a.borderline for a in bare)


def test_it_screens_with_the_same_borderline_flag(shipped, items):
    screened = shipped.screen([(image, info, age) for image, info, age, _ in items])
    for row, result in zip(RECORDED["answers"], screened, strict=True):
        assert result.probability == pytest.approx(row["screen_probability"], abs=1e-5)
        point = shipped.points[result.population]
        assert result.borderline == point.is_borderline(result.probability)
