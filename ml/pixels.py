"""Pixel helpers shared by the JPEG/PNG decoder and the DICOM reader (PIL and NumPy only)."""

import numpy as np
from PIL import Image, ImageOps

COLOUR_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "PA")


def colourfulness(image):
    """Hasler & Süsstrunk (2003) colourfulness of a PIL image: 0 for gray, ~15+ for visibly coloured."""
    if image.mode not in COLOUR_MODES:
        return 0.0
    small = image.convert("RGB")
    small.thumbnail((256, 256))
    r, g, b = np.moveaxis(np.asarray(small, dtype=np.float64), -1, 0)
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def rescale_to_uint8(pixels, *, invert=False):
    """Any numeric array → 0–255 over its own range (a constant array → black); ``invert`` for MONOCHROME1."""
    pixels = np.asarray(pixels, dtype=np.float64)
    finite = np.isfinite(pixels)
    if not finite.all():  # a NaN or an infinity from a bad LUT must not poison the whole scale
        pixels = np.where(finite, pixels, pixels[finite].min() if finite.any() else 0.0)
    lo, hi = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    scaled = (pixels - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(pixels)
    if invert:  # the lowest value is white
        scaled = 255.0 - scaled
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_grayscale(image):
    """8-bit single-channel view of any decoded image (16-bit PNGs are rescaled, alpha on black)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(rescale_to_uint8(np.asarray(image)), mode="L")
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("L")
