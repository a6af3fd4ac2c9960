"""Training-time augmentation: other machines' contrast, exposure, blur, noise and compression (ml/training/augment.py)."""

import numpy as np
import pytest
from PIL import Image

from ml.decode import decode_image
from ml.training import augment as A

from ..factories import XRAYS


@pytest.fixture(scope="module")
def film():
    return decode_image(XRAYS / "adult-pneumonia-1.jpeg")


def test_it_draws_the_same_view_from_the_same_seed_and_others_from_others(film):
    first = A.augment(film, np.random.default_rng(7))
    again = A.augment(film, np.random.default_rng(7))
    other = A.augment(film, np.random.default_rng(8))
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert first.size != other.size or not np.array_equal(np.asarray(first), np.asarray(other))
    assert first.mode == "L"


def test_it_keeps_most_of_the_film_in_a_crop(film):
    for seed in range(20):
        crop = A.random_resized_crop(film, np.random.default_rng(seed), (0.7, 1.0), (0.85, 1.18))
        assert 0.65 <= crop.size[0] * crop.size[1] / (film.size[0] * film.size[1]) <= 1.0


@pytest.mark.parametrize("step, check", [
    (lambda im, rng: A.gamma(im, rng, (1.5, 1.6)), lambda a, b: b.mean() < a.mean()),  # gamma > 1 darkens
    (lambda im, rng: A.contrast(im, rng, (0.5, 0.55)), lambda a, b: b.std() < a.std()),
    (lambda im, rng: A.blur(im, rng, (1.5, 1.6)), lambda a, b: np.abs(np.diff(b, axis=1)).mean() < np.abs(np.diff(a, axis=1)).mean()),
    (lambda im, rng: A.noise(im, rng, (10, 12)), lambda a, b: np.abs(b - a).mean() > 5),
    (lambda im, rng: A.jpeg(im, rng, (20, 25)), lambda a, b: 0 < np.abs(b - a).mean() < 10),
    (lambda im, rng: A.clahe(im, rng), lambda a, b: np.abs(b - a).mean() > 3),
    (lambda im, rng: A.low_resolution(im, rng, (128, 130)), lambda a, b: np.abs(np.diff(b, axis=1)).mean() < np.abs(np.diff(a, axis=1)).mean()),
])
def test_each_photometric_step_changes_the_film_the_way_its_name_says(film, step, check):
    out = step(film, np.random.default_rng(0))
    assert out.mode == "L" and out.size == film.size
    assert check(np.asarray(film, dtype=np.float64), np.asarray(out, dtype=np.float64))


def test_it_never_mirrors_the_chest():
    # An arrow pointing right stays pointing right: no flips (the heart stays on the left of the film).
    arrow = np.zeros((256, 256), dtype=np.uint8)
    arrow[100:156, 20:200] = 200
    arrow[60:196, 200:236] = 255
    image = Image.fromarray(arrow)
    for seed in range(10):
        out = np.asarray(A.augment(image, np.random.default_rng(seed)), dtype=np.float64)
        half = out.shape[1] // 2
        assert out[:, half:].sum() > out[:, :half].sum()
