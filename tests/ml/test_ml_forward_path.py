"""One forward path for evaluation (``Predictor.screen``) and serving (``assess_batch``).

v3's answers on the bundled films (probability, label, population, threshold, gate verdict; one
inverted film and one photograph refused) were recorded before the two paths were merged
(tests/fixtures/pneumoweb-v3-answers.json); both paths must still give them. v4's were recorded
when it shipped (tests/fixtures/pneumoweb-v4-answers.json, ``python -m tests.ml.test_ml_forward_path``),
so any later change to its serving path that moves an answer fails here.
"""

import json
from pathlib import Path

import pytest
import skimage.data
from PIL import Image, ImageOps

from ml.constants import DEFAULT_WEIGHTS, V3_WEIGHTS
from ml.decode import decode_with_tags
from ml.inference import Predictor

FIXTURES = Path(__file__).parent.parent / "fixtures"
RECORDINGS = {"v3": ("pneumoweb-v3-answers.json", V3_WEIGHTS), "shipped": ("pneumoweb-v4-answers.json", DEFAULT_WEIGHTS)}
FILMS = [(name, age) for name in ("adult-normal-1.jpeg", "adult-pneumonia-1.jpeg", "normal-1.jpeg", "normal-2.jpeg",
                                  "pneumonia-1.jpeg", "pneumonia-2.jpeg") for age in (3.5, 40.0, None)]
FILMS += [("inverted:normal-2.jpeg", 40.0), ("photo:skimage.astronaut", 40.0)]


def film(name):
    if name == "inverted:normal-2.jpeg":
        return ImageOps.invert(decode_with_tags(str(FIXTURES / "xrays" / "normal-2.jpeg"))[0].convert("L")), None
    if name == "photo:skimage.astronaut":
        return Image.fromarray(skimage.data.astronaut()), None
    return decode_with_tags(str(FIXTURES / "xrays" / name))


@pytest.fixture(scope="module", params=sorted(RECORDINGS))
def recording(request):
    name, weights = RECORDINGS[request.param]
    return json.loads((FIXTURES / name).read_text()), Predictor.from_checkpoint(weights, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def predictor(recording):
    return recording[1]


@pytest.fixture(scope="module")
def recorded(recording):
    return recording[0]


@pytest.fixture(scope="module")
def items(recorded):
    return [(*film(row["film"]), row["age"], "PA") for row in recorded["answers"]]


def test_it_is_the_model_the_answers_were_recorded_with(predictor, recorded):
    # v3's bacterial/viral head (ml.subtype) was written into the file after its answers were recorded: the file's
    # digest changed, its weights and gate did not (test_ml_subtype); the card names the file the head was fitted on.
    # v4's answers were recorded from the finished file.
    subtype = predictor.card.raw.get("subtype") or {}
    assert predictor.name == recorded["model"]
    assert recorded["weights_sha256"] in (predictor.weights_sha256, subtype.get("base_weights_sha256"))


def test_it_serves_the_recorded_answers(predictor, items, recorded):
    answers = predictor.assess_batch(items)
    for row, answer in zip(recorded["answers"], answers, strict=True):
        assert (answer.label, answer.population, answer.ood) == (row["label"], row["population"], row["ood"]), row
        if row["probability"] is None:
            assert answer.probability is None and answer.ood_reason
        else:
            assert answer.probability == pytest.approx(row["probability"], abs=1e-5)
            assert answer.threshold == pytest.approx(row["threshold"])


def test_it_screens_the_recorded_scores_and_verdicts(predictor, items, recorded):
    screened = predictor.screen([(image, info, age) for image, info, age, _ in items])
    for row, result in zip(recorded["answers"], screened, strict=True):
        assert result.probability == pytest.approx(row["screen_probability"], abs=1e-5)
        assert result.logit == pytest.approx(row["logit"], abs=1e-4)
        assert result.reason == row["screen_reason"]


def test_it_gives_the_same_answer_with_heatmaps_as_without(predictor, items, recorded):
    accepted = [item for item, row in zip(items, recorded["answers"], strict=True) if not row["ood"]][:4]
    plain, explained = predictor.assess_batch(accepted), predictor.assess_batch(accepted, explain=True)
    for a, b in zip(plain, explained, strict=True):
        assert (a.label, a.population) == (b.label, b.population)
        assert a.probability == pytest.approx(b.probability, abs=1e-5)
        assert a.heatmaps is None and b.heatmaps is not None


def record(weights, out):
    """Write the answers of the checkpoint at ``weights`` on FILMS (CPU, fp32) to ``out``, in the format above."""
    predictor = Predictor.from_checkpoint(weights, device="cpu", precision="fp32")
    films = [(*film(name), age, "PA") for name, age in FILMS]
    answers = predictor.assess_batch(films)
    screened = predictor.screen([(image, info, age) for image, info, age, _ in films])
    rows = [{"film": name, "age": age, "probability": None if a.probability is None else round(a.probability, 7),
             "label": a.label, "population": a.population, "threshold": a.threshold, "ood": a.ood,
             "screen_probability": round(s.probability, 7), "screen_reason": s.reason, "logit": round(s.logit, 7)}
            for (name, age), a, s in zip(FILMS, answers, screened, strict=True)]
    Path(out).write_text(json.dumps({"model": predictor.name, "weights_sha256": predictor.weights_sha256,
                                     "recorded_with": "tests/ml/test_ml_forward_path.py record(), CPU fp32",
                                     "answers": rows}, indent=1) + "\n")


if __name__ == "__main__":
    import sys

    record(Path(sys.argv[1]), Path(sys.argv[2]))
