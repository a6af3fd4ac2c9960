"""Model presets (ml.config): the defaults are the shipped architecture, the shipped cards load as written,
the retired concat head is refused with where to find it, and the presets' former names still resolve."""

import json
from dataclasses import replace

import pytest

from ml.config import DEFAULT_PRESET, LEGACY_PRESET_NAMES, PRESETS, TRAIN_PRESET, ModelConfig, get_preset
from ml.constants import DEFAULT_WEIGHTS, V3_WEIGHTS


def card_config(weights):
    return json.loads(weights.with_suffix(".json").read_text())["config"]


def test_it_builds_the_shipped_architecture_by_default():
    config = ModelConfig()
    assert config == get_preset(DEFAULT_PRESET)
    assert (config.cnn, config.vit, config.vit_kwargs) == (
        "tf_efficientnet_lite0", "vit_small_patch14_dinov2", {"img_size": 224, "depth": 8})
    assert (config.fusion, config.vit_pool, config.cnn_kwargs, config.cnn_map, config.maps) == (
        "mean", "token+avg", {"output_stride": 16}, "cam", ("cnn",))
    # The shipped card records the same architecture, under the preset's former name.
    assert ModelConfig.from_dict(card_config(DEFAULT_WEIGHTS)) == replace(config, name="focus")


def test_it_loads_v3s_card_as_v3_though_it_predates_the_v4_fields():
    raw = card_config(V3_WEIGHTS)
    assert not {"cnn_kwargs", "cnn_map", "maps"} & set(raw)  # written before they existed
    assert ModelConfig.from_dict(raw) == replace(get_preset(TRAIN_PRESET), name="hybrid")


def test_it_drops_the_retired_head_hidden_the_shipped_cards_record():
    for weights in (DEFAULT_WEIGHTS, V3_WEIGHTS):
        raw = card_config(weights)
        assert raw["head_hidden"] == 256 and raw["fusion"] == "mean"
        assert "head_hidden" not in ModelConfig.from_dict(raw).to_dict()


@pytest.mark.parametrize("change", [{"fusion": "concat"}, {"fusion": None}])
def test_it_refuses_the_retired_concat_head_and_says_where_it_is(change):
    raw = {k: v for k, v in {**card_config(DEFAULT_WEIGHTS), **change}.items() if v is not None}
    # A card without "fusion" (v1, v2) predates it: its model had the concat head.
    with pytest.raises(ValueError, match=r"'concat' fusion .* retired.*git log -S head_hidden.*MODEL_CARD"):
        ModelConfig.from_dict(raw)
    with pytest.raises(ValueError, match="retired"):
        ModelConfig(fusion="concat")


def test_the_presets_former_names_still_resolve():
    assert set(LEGACY_PRESET_NAMES.values()) == set(PRESETS) == {DEFAULT_PRESET, TRAIN_PRESET}
    assert get_preset("hybrid") == get_preset(TRAIN_PRESET) and get_preset("focus") == get_preset(DEFAULT_PRESET)
    assert get_preset("focus", branches=("cnn", "age")).branches == ("cnn", "age")
    with pytest.raises(ValueError, match="lite0-dinov2s8.*former name.*focus"):
        get_preset("full")
