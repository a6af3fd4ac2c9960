"""The parts of the out-of-distribution gate (ml/ood.py, ml/training/gate.py) on synthetic features and real pictures."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.decode import decode_with_tags
from ml.ood import FeatureGate, NegativeProbe, OodGate, image_check
from ml.training.gate import QUANTILES, distance_threshold, probe_threshold

XRAYS = Path(__file__).parent.parent / "fixtures" / "xrays"


@pytest.fixture
def clusters():
    generator = torch.Generator().manual_seed(0)
    # Training features live near a low-dimensional subspace, like a backbone's.
    basis = torch.randn(8, 48, generator=generator)
    inside = torch.randn(600, 8, generator=generator) @ basis + 0.1 * torch.randn(600, 48, generator=generator)
    outside = inside[:100] + 3.0 * torch.randn(100, 48, generator=generator)
    inside = inside + 5.0  # post-activation features are positive, away from the origin
    return inside[:500], inside[500:], outside + 5.0


def inverted(features):
    """Stands in for the features of inverted films: a fixed shift off the X-rays' subspace."""
    return features + torch.linspace(-1, 1, features.shape[1])


def test_it_passes_a_real_xray_through_the_image_checks():
    image, info = decode_with_tags(XRAYS / "normal-1.jpeg")
    assert image_check(image, info) is None


@pytest.mark.parametrize("picture, words", [
    (Image.new("L", (600, 200), 128), "far from the shape"),
    (Image.new("L", (300, 300), 90), "blank"),
    (Image.fromarray(np.where(np.arange(300 * 300).reshape(300, 300) % 7 == 0, 128, 255).astype(np.uint8)),
     "pure black or white"),
])
def test_it_refuses_pictures_that_cannot_be_a_chest_xray(picture, words):
    assert words in image_check(picture)


def test_it_refuses_a_colour_file(tmp_path):
    rgb = np.zeros((256, 256, 3), dtype=np.uint8)
    rgb[..., 0] = np.linspace(0, 255, 256)[None, :]
    rgb[..., 2] = np.linspace(255, 0, 256)[:, None]
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    image, info = decode_with_tags(tmp_path / "colour.png")
    assert "colour" in image_check(image, info)


def test_it_scores_far_features_above_the_threshold(clusters):
    train, held_out, far = clusters
    gate = FeatureGate.fit(train, components=8, quantile=0.99)
    # Held-out points score a little higher than the points the Gaussian was fitted on: why
    # ml.training.gate sets the real thresholds on held-out validation patients.
    assert (gate.score(held_out) <= gate.threshold).float().mean() >= 0.9
    assert (gate.score(far) > gate.threshold).all()


def test_it_probes_the_negatives_it_was_shown(clusters):
    train, held_out, _ = clusters
    probe = NegativeProbe.fit(train, inverted(train))
    assert (probe.score(held_out) < 0.5).float().mean() >= 0.95
    assert (probe.score(inverted(held_out)) > 0.5).float().mean() >= 0.95


def test_it_travels_inside_a_checkpoint_unchanged(clusters):
    train, held_out, far = clusters
    distance = FeatureGate.fit(train, components=8)
    gate = OodGate(distance, NegativeProbe.fit(train, inverted(train)))
    tensors = {name: tensor.clone() for name, tensor in gate.tensors().items()}
    assert all(name.startswith("ood.") and tensor.dtype == torch.float32 for name, tensor in tensors.items())
    again = OodGate.from_checkpoint(tensors, gate.card())
    features = torch.cat([held_out, far, inverted(held_out)])
    assert [d[:2] for d in again.decide(features)] == [d[:2] for d in gate.decide(features)]
    assert all("feature distance" in reason for _, reason, _, _ in gate.decide(far))
    gate.distance.threshold = float("inf")  # the probe alone still names what it saw
    assert all("inverted" in reason for _, reason, _, _ in gate.decide(inverted(held_out)))
    assert OodGate.from_checkpoint({}, None) is None  # an older checkpoint has no gate


def test_it_picks_the_tightest_distance_threshold_that_keeps_false_rejections_under_target():
    generator = torch.Generator().manual_seed(1)
    distance = torch.rand(1000, generator=generator)
    probe_refuses = torch.zeros(1000, dtype=torch.bool)
    probe_refuses[:2] = True  # the probe already refuses 0.2 %
    d, quantile = distance_threshold(distance, probe_refuses, target=0.005)
    assert ((distance > d) | probe_refuses).double().mean() <= 0.005
    tighter = QUANTILES[QUANTILES.index(quantile) - 1]
    assert ((distance > torch.quantile(distance, tighter)) | probe_refuses).double().mean() > 0.005


def test_it_keeps_false_rejections_under_target_for_every_source():
    generator = torch.Generator().manual_seed(2)
    # Source 1's films sit further out than source 0's: a threshold fitted on the pool would refuse them.
    distance = torch.cat([torch.rand(900, generator=generator), 0.8 + 0.3 * torch.rand(100, generator=generator)])
    groups = [0] * 900 + [1] * 100
    pooled, _ = distance_threshold(distance, torch.zeros(1000, dtype=torch.bool), target=0.005)
    assert (distance[900:] > pooled).double().mean() > 0.005
    d, _ = distance_threshold(distance, torch.zeros(1000, dtype=torch.bool), target=0.005, groups=groups)
    for group in (slice(0, 900), slice(900, 1000)):
        assert (distance[group] > d).double().mean() <= 0.005


def test_it_puts_the_probe_threshold_in_the_middle_of_the_gap():
    xrays, copies = torch.tensor([0.001, 0.01, 0.05]), torch.tensor([0.7, 0.95, 0.999])
    threshold = probe_threshold(xrays, copies)
    assert 0.05 < threshold < 0.7
    logit = torch.logit(torch.tensor([0.05, threshold, 0.7]), eps=1e-9)
    assert (logit[1] - logit[0]).item() == pytest.approx((logit[2] - logit[1]).item())


def test_it_refuses_no_xray_to_catch_an_overlapping_copy():
    assert probe_threshold(torch.tensor([0.01, 0.6]), torch.tensor([0.4, 0.9])) == pytest.approx(0.6)
