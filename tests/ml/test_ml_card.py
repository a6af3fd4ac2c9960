"""The model card, parsed once per checkpoint (ml/card.py): what serving, the CLIs and monitoring read from it."""

import json
import math
import subprocess
import sys

import pytest

from ml import checkpoint
from ml.card import ModelCard, card_path
from ml.constants import DEFAULT_WEIGHTS, HISTOGRAM_BINS, REPO_ROOT


def test_it_finds_the_card_beside_the_weights():
    assert card_path(DEFAULT_WEIGHTS) == DEFAULT_WEIGHTS.with_suffix(".json")
    assert card_path(card_path(DEFAULT_WEIGHTS)) == card_path(DEFAULT_WEIGHTS)
    assert checkpoint.card_path is card_path


def test_it_parses_the_shipped_card():
    raw = json.loads(card_path(DEFAULT_WEIGHTS).read_text())
    card = ModelCard.read(DEFAULT_WEIGHTS)
    assert card == ModelCard.read(card_path(DEFAULT_WEIGHTS)) == ModelCard.from_dict(raw)
    assert card.raw == raw
    assert card.name == raw["name"] and card.weights_sha256 == raw["weights_sha256"]
    assert list(card.points) == ["pediatric", "adult"]  # ordered by age band
    for name, point in card.points.items():
        entry = raw["populations"][name]
        assert point.population == name
        assert (point.threshold, point.temperature) == (entry["threshold"], entry["temperature"])
        assert point.age_band == tuple(entry["age_band"]) and point.validated_ages == tuple(entry["validated_ages"])
        assert point.min_recall == entry["min_recall"]
        counts = card.reference_histogram(name)
        assert counts == entry["validation_histogram"]["counts"] and len(counts) == HISTOGRAM_BINS
    assert card.validated_age_range == (1.0, 83.0)
    assert card.uses_age is True and card.age_input_range == tuple(raw["age_input_range_years"])


def test_it_reads_a_card_that_records_nothing_as_one_point_for_every_age():
    card = ModelCard.from_dict({})
    assert card.name is None and card.weights_sha256 is None and card.raw == {}
    [point] = card.points.values()
    assert point.threshold == 0.5 and point.age_band == (0.0, math.inf)
    assert card.validated_age_range is None and card.uses_age is False and card.age_input_range is None
    assert card.reference_histogram("adult") is None


def test_it_says_clearly_when_there_is_no_card_or_a_broken_one(tmp_path):
    with pytest.raises(FileNotFoundError):
        ModelCard.read(tmp_path / "missing.safetensors")
    for text in ("{not json", "[1, 2]", '{"populations": {"adult": {"threshold": 0.3}}}',
                 '{"age_input_range_years": 7}'):
        (tmp_path / "broken.json").write_text(text)
        with pytest.raises(ValueError):
            ModelCard.read(tmp_path / "broken.safetensors")


def test_it_reads_cards_without_torch():
    code = ("import sys, ml.card; ml.card.ModelCard.read(ml.card.card_path(sys.argv[1])); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code, str(DEFAULT_WEIGHTS)], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
