"""The shipped model's out-of-distribution gate: real held-out X-rays pass, every other kind of input is refused.

Floors are the rates measured on this fixed set when pneumoweb-compact-v2 was shipped (every kind
100 %, docs/MODEL_CARD.md); the full measurement is `python -m ml.fit_ood` on the training data.
"""

from pathlib import Path

import pytest

from ml.constants import DEFAULT_WEIGHTS
from ml.inference import Predictor
from ml.training.ood_corpus import corpus
from ml.decode import decode_with_tags

VALIDATION = Path(__file__).parent / "fixtures" / "validation"
# Minimum share of each kind the gate must refuse.
FLOORS = {"natural": 1.0, "other modality": 1.0, "noise": 1.0, "blank": 1.0, "text": 1.0, "inverted": 1.0, "crop": 1.0}


@pytest.fixture(scope="module")
def predictor():
    predictor = Predictor.load(DEFAULT_WEIGHTS, device="cpu")
    assert predictor.gate is not None, "the shipped checkpoint carries its OOD gate"
    return predictor


@pytest.fixture(scope="module")
def xrays():
    return [decode_with_tags(path) for path in sorted(VALIDATION.rglob("*.jpeg"))]


@pytest.fixture(scope="module")
def kinds(xrays):
    return corpus([image for image, _ in xrays], seed=0)


def test_it_lets_every_held_out_xray_through(predictor, xrays):
    assert len(xrays) == 40
    rejected = [a.ood_reason for a in (predictor.assess(image, info, age=3, view="PA") for image, info in xrays) if a.ood]
    assert rejected == []


@pytest.mark.parametrize("kind", sorted(FLOORS))
def test_it_refuses_what_is_not_a_chest_xray(predictor, kinds, kind):
    answers = [(name, predictor.assess(image, info, age=3, view="PA")) for name, image, info in kinds[kind]]
    refused = [a for _, a in answers if a.ood]
    assert len(refused) / len(answers) >= FLOORS[kind], [n for n, a in answers if not a.ood]
    for answer in refused:
        assert answer.label == "" and answer.probability is None and answer.ood_reason
