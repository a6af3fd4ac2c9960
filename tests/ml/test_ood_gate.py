"""The shipped model's out-of-distribution gate: real held-out X-rays of children and adults pass, other inputs are refused.

Floors are the rates measured on this fixed set when the model was shipped (docs/MODEL_CARD.md);
the full measurement is `python -m ml.cli.fit_ood` on the training data.
"""

from pathlib import Path

import pytest

from ml.constants import DEFAULT_WEIGHTS
from ml.decode import decode_with_tags
from ml.inference import Predictor
from ml.training.ood_corpus import corpus

FIXTURES = Path(__file__).parent.parent / "fixtures"
# Minimum share of each kind the gate must refuse.
FLOORS = {"natural": 1.0, "other modality": 1.0, "noise": 1.0, "blank": 1.0, "text": 1.0, "inverted": 1.0, "crop": 1.0}


@pytest.fixture(scope="module")
def predictor():
    predictor = Predictor.load(DEFAULT_WEIGHTS, device="cpu")
    assert predictor.gate is not None, "the shipped checkpoint carries its OOD gate"
    return predictor


@pytest.fixture(scope="module")
def xrays():
    paths = sorted((FIXTURES / "validation").rglob("*.jpeg")) + sorted((FIXTURES / "xrays").glob("adult-*.jpeg"))
    return [(path, *decode_with_tags(path)) for path in paths]


@pytest.fixture(scope="module")
def kinds(xrays):
    return corpus([image for _, image, _ in xrays], seed=0)


def test_it_lets_every_held_out_xray_of_a_child_or_an_adult_through(predictor, xrays):
    assert len(xrays) == 62  # 40 Kermany children, 20 + 2 NIH adults
    answers = [(path.name, predictor.assess(image, info, age=40 if "nih" in str(path) or "adult" in path.name else 3))
               for path, image, info in xrays]
    assert [(name, a.ood_reason) for name, a in answers if a.ood] == []


@pytest.mark.parametrize("kind", sorted(FLOORS))
def test_it_refuses_what_is_not_a_chest_xray(predictor, kinds, kind):
    answers = [(name, predictor.assess(image, info, age=3, view="PA")) for name, image, info in kinds[kind]]
    refused = [a for _, a in answers if a.ood]
    assert len(refused) / len(answers) >= FLOORS[kind], [n for n, a in answers if not a.ood]
    for answer in refused:
        assert answer.label == "" and answer.probability is None and answer.ood_reason
