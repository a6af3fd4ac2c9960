"""Right for the right reasons (ml/training/focus.py): labels from re-reads, masks that follow the
augmentation, the CAM losses on known maps, and the CAM that v4 serves without a backward pass."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.config import get_preset
from ml.explain import cam_heatmap, traced_forward
from ml.model import HybridNet
from ml.training import augment as A
from ml.training.data import Sample
from ml.training.focus import (
    FocusConfig,
    FocusDataset,
    augment_with_mask,
    border_share,
    box_mask,
    erase_borders_and_markers,
    focus_loss,
    grid_of,
    outside_share,
    reread_labels,
)

from ..factories import XRAYS


def sample(name, label):
    return Sample(Path(f"/data/{name}"), label, name, source="nih")


def test_it_takes_the_radiologists_label_and_drops_the_unresolved_films():
    films = [sample("a.png", 1), sample("b.png", 1), sample("c.png", 0), sample("d.png", 1), sample("e.png", 0),
             sample("f.png", 0)]
    rereads = {"a.png": "opacity", "b.png": "normal", "c.png": "opacity", "d.png": "not_normal", "e.png": "not_normal"}
    out, counts = reread_labels(films, rereads)
    assert [(Path(s.path).name, s.label) for s in out] == [("a.png", 1), ("b.png", 0), ("c.png", 1), ("e.png", 0),
                                                            ("f.png", 0)]
    assert counts == {"reread": 5, "to_pneumonia": 1, "to_normal": 1, "dropped_not_normal": 1}


def test_a_box_mask_covers_the_boxes_in_file_pixels():
    mask = np.asarray(box_mask((100, 50), [(10, 5, 20, 10), (90, 40, 30, 30)])) > 0
    assert mask.shape == (50, 100)
    assert mask[5:15, 10:30].all() and mask[40:, 90:].all()
    assert mask.sum() == 20 * 10 + 10 * 10


def test_the_mask_follows_the_geometry_of_the_view():
    # A bright square on the film and a box drawn exactly on it: after any crop and rotation, the mask still sits on it.
    film = Image.new("L", (200, 200), 30)
    film.paste(255, (120, 40, 160, 80))
    mask = box_mask(film.size, [(120, 40, 40, 40)])
    for seed in range(12):
        view, moved = augment_with_mask(film, mask, np.random.default_rng(seed),
                                        focus=FocusConfig(p_border=0, p_marker=0, p_corner=0))
        assert view.size == moved.size
        inside = np.asarray(moved) > 200
        if inside.sum() < 20:
            continue  # the crop cut the square off
        # photometric steps change the grey levels but not which pixels are the bright square
        pixels = np.asarray(view, dtype=np.float32)
        assert pixels[inside].mean() > pixels[~inside].mean() + 40, seed


def test_the_film_outside_the_boxes_is_kept():
    # Geometry only (no photometric step, no erasure): the view's pixels are the film's, inside and outside the box.
    # (A first version resampled film and mask as one "LA" image; Pillow premultiplies alpha, which blacked the film
    # out wherever the mask was 0.)
    film = Image.new("L", (200, 200), 90)
    mask = box_mask(film.size, [(120, 40, 40, 40)])
    geometry_only = A.AugmentConfig(p_contrast=0, p_brightness=0, p_gamma=0, p_blur=0, p_noise=0, p_jpeg=0,
                                    p_lowres=0, p_clahe=0, rotate_degrees=0)
    view, moved = augment_with_mask(film, mask, np.random.default_rng(0), geometry_only,
                                    FocusConfig(p_border=0, p_marker=0, p_corner=0))
    assert (np.asarray(view) == 90).all() and np.asarray(moved).max() == 255


def test_erasure_changes_only_borders_and_corners():
    film = Image.new("L", (200, 200), 100)
    rng = np.random.default_rng(3)
    changed = np.zeros((200, 200), dtype=bool)
    for _ in range(40):
        out = np.asarray(erase_borders_and_markers(film, rng, FocusConfig(p_border=1, p_marker=1, p_corner=1)))
        changed |= out != 100
    assert changed[:20].any() and changed[:, -20:].any()  # borders and corners were hit
    assert not changed[70:130, 70:130].any()  # the middle of the chest never is


def test_outside_share_is_the_softmax_mass_outside_the_boxes():
    cam = torch.full((2, 4, 4), -30.0)
    cam[0, 0, 0], cam[0, 2, 2] = 0.0, 0.0  # two equal peaks, one of them in the box
    cam[1, 3, 3] = 5.0  # one peak, in the box
    mask = torch.zeros(2, 4, 4)
    mask[:, 2:, 2:] = 1
    assert outside_share(cam, mask).tolist() == pytest.approx([0.5, 0.0], abs=1e-5)
    # a map pushed down everywhere is no better: only where its mass lies counts (the collapse the softmax prevents)
    assert outside_share(cam - 100, mask).tolist() == pytest.approx(outside_share(cam, mask).tolist(), abs=1e-5)


def test_border_share_is_the_softmax_mass_on_the_outer_ring():
    cam = torch.full((1, 6, 6), -30.0)
    cam[0, 0, 3], cam[0, 3, 3] = 0.0, 0.0
    assert border_share(cam).item() == pytest.approx(0.5, abs=1e-5)
    assert border_share(cam, ring=3).item() == pytest.approx(1.0, abs=1e-5)
    assert border_share(torch.zeros(1, 6, 6)).item() == pytest.approx(20 / 36, abs=1e-5)  # flat: the ring's area


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = HybridNet(get_preset("lite0os16-dinov2s8-cam"))
    for head in net.heads.values():  # non-trivial standardisation, so the test sees it
        head.mean.normal_()
        head.scale.uniform_(0.5, 2.0)
    return net.eval()


def test_the_cnn_map_is_14x14_at_224_px(model):
    assert grid_of(model) == 14
    assert model.cnn.forward_features(torch.zeros(1, 3, 224, 224)).shape[-2:] == (14, 14)


def test_the_cam_is_the_branch_logit_spread_over_the_grid(model):
    images = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        feature_map = model.cnn.forward_features(images)
        logit = model.heads["cnn"](model.cnn.forward_head(feature_map))
        cam = model.cnn_evidence(feature_map)
    assert cam.shape == (3, 14, 14)
    np.testing.assert_allclose(cam.mean((1, 2)) + model.heads["cnn"].linear.bias.detach(), logit, rtol=1e-4, atol=1e-4)


def test_v4_maps_need_no_gradient_and_show_no_vit_map(model):
    images = torch.randn(2, 3, 224, 224)
    ages = torch.tensor([[0.1, 0.0], [0.0, 1.0]])
    features, logits, explain = traced_forward(model, images, ages)
    with torch.no_grad():
        expected = model(images, ages)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert not logits.requires_grad and all(not f.requires_grad for f in features)
    maps = explain([True, False])
    assert all(m.vit is None and m.combined is m.cnn for m in maps)
    cam = model.cnn_evidence(model.cnn.forward_features(images)).detach()
    np.testing.assert_allclose(maps[0].cnn, cam_heatmap(cam[0], 224, 1.0), atol=1e-6)
    np.testing.assert_allclose(maps[1].cnn, cam_heatmap(cam[1], 224, -1.0), atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_cam_heatmap_keeps_the_peak_where_the_evidence_is():
    cam = torch.zeros(14, 14)
    cam[3, 10] = 2.0
    cam[10, 2] = -4.0  # evidence for the other label
    toward = cam_heatmap(cam, 224, 1.0)
    assert toward.shape == (224, 224) and toward.max() == pytest.approx(1.0)
    row, col = np.unravel_index(toward.argmax(), toward.shape)
    assert row // 16 == 3 and col // 16 == 10
    row, col = np.unravel_index(cam_heatmap(cam, 224, -1.0).argmax(), (224, 224))
    assert row // 16 == 10 and col // 16 == 2


def test_the_loss_falls_when_the_evidence_moves_into_the_box():
    cam_in = torch.zeros(1, 14, 14)
    cam_in[0, 5:9, 5:9] = 10.0
    cam_out = torch.zeros(1, 14, 14)
    cam_out[0, 0:3, 0:3] = 10.0
    mask = torch.zeros(1, 14, 14)
    mask[0, 4:10, 4:10] = 1
    assert outside_share(cam_in, mask).item() < 0.01 < 0.99 < outside_share(cam_out, mask).item()
    assert border_share(cam_in).item() < 0.01 < 0.5 < border_share(cam_out).item()


def test_the_training_batch_gives_each_part_of_the_loss(model):
    boxes = {"pneumonia-1.jpeg": [(50.0, 60.0, 80.0, 90.0)]}
    films = [Sample(XRAYS / "pneumonia-1.jpeg", 1, "p1", source="nih"),
             Sample(XRAYS / "normal-1.jpeg", 0, "n1", source="kermany")]
    data = FocusDataset(films, model.config, boxes, grid=14, train=True, seed=1)
    rows = [data[i] for i in range(2)]
    images, ages, targets, masks, boxed = (torch.stack(column) for column in zip(*rows, strict=True))
    assert boxed.tolist() == [1.0, 0.0] and masks[0].max() > 0.5 and masks[1].max() == 0
    model.train()
    try:
        loss, parts = focus_loss(model, images, ages, targets, masks, boxed)
    finally:
        model.eval()
    assert set(parts) == {"bce", "outside_boxes", "border"} and torch.isfinite(loss)
    focus = FocusConfig()
    assert loss.item() == pytest.approx(parts["bce"] + focus.box_weight * parts["outside_boxes"]
                                        + focus.border_weight * parts["border"], rel=1e-5)
