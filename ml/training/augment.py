"""Training-time augmentation that mimics other hospitals' machines and films.

Geometric: a random resized crop (framing and field of view), a small rotation and shift. No
flips: a mirrored chest puts the heart on the right. Photometric, each with its own
probability: contrast, brightness, gamma (exposure and detector response), Gaussian blur
(focus, resampling), Gaussian noise (dose), JPEG re-encoding (export quality), a lower
resolution resampled back up (older digitisers) and CLAHE (the local contrast enhancement
some sites apply before export). CLAHE is only an augmentation here: serving never applies it,
so the model sees films with and without it.

Every function takes and returns an 8-bit grayscale PIL image and draws from a NumPy
``Generator``, so one seed reproduces an epoch.
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from skimage.exposure import equalize_adapthist


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple = (0.70, 1.0)  # fraction of the film's area kept
    crop_ratio: tuple = (0.85, 1.18)  # width / height of the crop
    rotate_degrees: float = 8.0
    p_contrast: float = 0.8
    contrast: tuple = (0.65, 1.45)
    p_brightness: float = 0.5
    brightness: float = 0.12  # ± fraction of full scale
    p_gamma: float = 0.6
    gamma: tuple = (0.6, 1.6)
    p_blur: float = 0.3
    blur_radius: tuple = (0.3, 1.6)  # pixels at 512 px; scaled to the image
    p_noise: float = 0.3
    noise_sigma: tuple = (2.0, 12.0)  # gray levels
    p_jpeg: float = 0.5
    jpeg_quality: tuple = (25, 95)
    p_lowres: float = 0.2
    lowres_side: tuple = (128, 256)
    p_clahe: float = 0.2


def crop_box(size, rng, scale, ratio):
    """(left, top, right, bottom) of a random crop of an image of ``size``, or None after 10 misses."""
    width, height = size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w, h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    return None


def random_resized_crop(image, rng, scale, ratio):
    box = crop_box(image.size, rng, scale, ratio)
    return image.crop(box) if box else image


def rotate(image, rng, degrees):
    angle = rng.uniform(-degrees, degrees)
    return image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)


def _lut(image, function):
    table = np.clip(np.rint(function(np.arange(256, dtype=np.float64))), 0, 255).astype(np.uint8)
    return image.point(table.tolist())


def contrast(image, rng, low_high):
    factor, mean = rng.uniform(*low_high), float(np.asarray(image).mean())
    return _lut(image, lambda x: mean + factor * (x - mean))


def brightness(image, rng, amount):
    shift = 255.0 * rng.uniform(-amount, amount)
    return _lut(image, lambda x: x + shift)


def gamma(image, rng, low_high):
    g = np.exp(rng.uniform(np.log(low_high[0]), np.log(low_high[1])))
    return _lut(image, lambda x: 255.0 * (x / 255.0) ** g)


def blur(image, rng, radius):
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(*radius) * max(image.size) / 512))


def noise(image, rng, sigma):
    array = np.asarray(image, dtype=np.float32)
    array = array + rng.normal(0.0, rng.uniform(*sigma), array.shape)
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def jpeg(image, rng, quality):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(quality[0], quality[1] + 1)))
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def low_resolution(image, rng, side):
    size = image.size
    target = int(rng.integers(side[0], side[1] + 1))
    if target >= min(size):
        return image
    small = image.resize((target, max(1, round(target * size[1] / size[0]))), Image.Resampling.BILINEAR)
    return small.resize(size, Image.Resampling.BILINEAR)


def clahe(image, rng):
    limit = rng.uniform(0.005, 0.02)
    out = equalize_adapthist(np.asarray(image), clip_limit=limit)
    return Image.fromarray(np.clip(np.rint(out * 255), 0, 255).astype(np.uint8), mode="L")


def augment(image, rng, config=AugmentConfig()):
    """One random view of a grayscale film (geometry first, then the photometric chain in random order)."""
    image = image.convert("L")
    image = random_resized_crop(image, rng, config.crop_scale, config.crop_ratio)
    image = rotate(image, rng, config.rotate_degrees)
    steps = [
        (config.p_contrast, lambda im: contrast(im, rng, config.contrast)),
        (config.p_brightness, lambda im: brightness(im, rng, config.brightness)),
        (config.p_gamma, lambda im: gamma(im, rng, config.gamma)),
        (config.p_clahe, lambda im: clahe(im, rng)),
        (config.p_blur, lambda im: blur(im, rng, config.blur_radius)),
        (config.p_lowres, lambda im: low_resolution(im, rng, config.lowres_side)),
    ]
    for index in rng.permutation(len(steps)):
        probability, step = steps[index]
        if rng.random() < probability:
            image = step(image)
    # Sensor noise and export compression come last, as on a real film's way out of the machine.
    if rng.random() < config.p_noise:
        image = noise(image, rng, config.noise_sigma)
    if rng.random() < config.p_jpeg:
        image = jpeg(image, rng, config.jpeg_quality)
    return image
