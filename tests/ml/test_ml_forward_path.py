"""One forward path for evaluation (``Predictor.screen``) and serving (``assess_batch``).

The shipped model's answers on the bundled films (probability, label, population, threshold,
gate verdict; one inverted film and one photograph refused) were recorded before the two paths
were merged (tests/fixtures/pneumoweb-v3-answers.json); both paths must still give them.
"""

import json
from pathlib import Path

import pytest
import skimage.data
from PIL import Image, ImageOps

from ml.constants import DEFAULT_WEIGHTS
from ml.decode import decode_with_tags
from ml.inference import Predictor

FIXTURES = Path(__file__).parent.parent / "fixtures"
RECORDED = json.loads((FIXTURES / "pneumoweb-v3-answers.json").read_text())


def film(name):
    if name == "inverted:normal-2.jpeg":
        return ImageOps.invert(decode_with_tags(str(FIXTURES / "xrays" / "normal-2.jpeg"))[0].convert("L")), None
    if name == "photo:skimage.astronaut":
        return Image.fromarray(skimage.data.astronaut()), None
    return decode_with_tags(str(FIXTURES / "xrays" / name))


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def items():
    return [(*film(row["film"]), row["age"], "PA") for row in RECORDED["answers"]]


def test_it_is_the_model_the_answers_were_recorded_with(predictor):
    # The bacterial/viral head (ml.subtype) was written into the file after the answers were recorded: the file's
    # digest changed, its weights and gate did not (test_ml_subtype); the card names the file the head was fitted on.
    subtype = predictor.card.raw.get("subtype")
    sha256 = subtype["base_weights_sha256"] if subtype else predictor.weights_sha256
    assert (predictor.name, sha256) == (RECORDED["model"], RECORDED["weights_sha256"])


def test_it_serves_the_recorded_answers(predictor, items):
    answers = predictor.assess_batch(items)
    for row, answer in zip(RECORDED["answers"], answers, strict=True):
        assert (answer.label, answer.population, answer.ood) == (row["label"], row["population"], row["ood"]), row
        if row["probability"] is None:
            assert answer.probability is None and answer.ood_reason
        else:
            assert answer.probability == pytest.approx(row["probability"], abs=1e-5)
            assert answer.threshold == pytest.approx(row["threshold"])


def test_it_screens_the_recorded_scores_and_verdicts(predictor, items):
    screened = predictor.screen([(image, info, age) for image, info, age, _ in items])
    for row, result in zip(RECORDED["answers"], screened, strict=True):
        assert result.probability == pytest.approx(row["screen_probability"], abs=1e-5)
        assert result.logit == pytest.approx(row["logit"], abs=1e-4)
        assert result.reason == row["screen_reason"]


def test_it_gives_the_same_answer_with_heatmaps_as_without(predictor, items):
    accepted = [item for item, row in zip(items, RECORDED["answers"], strict=True) if not row["ood"]][:4]
    plain, explained = predictor.assess_batch(accepted), predictor.assess_batch(accepted, explain=True)
    for a, b in zip(plain, explained, strict=True):
        assert (a.label, a.population) == (b.label, b.population)
        assert a.probability == pytest.approx(b.probability, abs=1e-5)
        assert a.heatmaps is None and b.heatmaps is not None
