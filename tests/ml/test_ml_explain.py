"""Grad-CAM heatmaps from both branches of the shipped model."""

import io

import numpy as np
import pytest
from PIL import Image
from timm.layers import use_fused_attn

from ml.constants import DEFAULT_WEIGHTS
from ml.decode import decode_image
from ml.explain import heatmap_png
from ml.inference import Predictor

from ..factories import XRAYS


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(DEFAULT_WEIGHTS, device="cpu")


def test_it_maps_both_branches_onto_the_model_input(predictor):
    maps = predictor.explain(decode_image(XRAYS / "pneumonia-1.jpeg"))
    for heat in (maps.combined, maps.cnn, maps.vit):
        assert heat.shape == (224, 224) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
        assert heat.std() > 0.05  # a picture, not a constant


def test_it_moves_when_part_of_the_image_is_masked(predictor):
    image = decode_image(XRAYS / "pneumonia-1.jpeg")
    before = predictor.explain(image).combined
    pixels = np.asarray(image).copy()
    height, width = pixels.shape
    pixels[:, width // 2:] = 0  # black out the right half of the picture
    after = predictor.explain(Image.fromarray(pixels)).combined
    assert np.abs(before - after).mean() > 0.05
    # Heat left on a black area means the map ignores the image: most of it moves to the other half.
    assert after[:, 112:].sum() < after[:, :112].sum()


def test_it_depends_on_the_label_explained(predictor):
    image = decode_image(XRAYS / "normal-1.jpeg")
    toward_pneumonia = predictor.explain(image, label="PNEUMONIA").combined
    toward_normal = predictor.explain(image, label="NORMAL").combined
    assert np.abs(toward_pneumonia - toward_normal).mean() > 0.02


def test_it_writes_a_transparent_where_cold_rgba_png():
    heat = np.linspace(0, 1, 224 * 224).reshape(224, 224)
    image = Image.open(io.BytesIO(heatmap_png(heat)))
    assert image.mode == "RGBA" and image.size == (224, 224)
    alpha = np.asarray(image)[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] > 150


def test_it_explains_from_the_same_forward_pass_as_the_answer(predictor):
    image = decode_image(XRAYS / "normal-2.jpeg")
    plain = predictor.assess(image, age=3, view="PA")
    explained = predictor.assess(image, age=3, view="PA", explain=True)
    assert plain.heatmaps is None
    assert explained.probability == pytest.approx(plain.probability, abs=1e-5) and explained.label == plain.label
    separate = predictor.explain(image, age=3, label=plain.label)
    for branch in ("combined", "cnn", "vit"):
        np.testing.assert_allclose(getattr(explained.heatmaps, branch), getattr(separate, branch), atol=1e-4)


def test_it_leaves_the_model_without_gradients_or_recording_hooks(predictor):
    predictor.assess(decode_image(XRAYS / "pneumonia-2.jpeg"), explain=True)
    assert all(p.grad is None for p in predictor.model.parameters())
    for block in predictor.model.vit.blocks:
        assert not block.attn.attn_drop._forward_hooks and block.attn.fused_attn == use_fused_attn()
