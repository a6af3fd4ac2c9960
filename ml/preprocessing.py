"""The one preprocessing path shared by training, evaluation and serving.

decode (JPEG, PNG or DICOM) → grayscale → 3 channels → resize to the model size → normalise.
"""

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .config import AGE_MAX_YEARS
from .dicom import DicomError, is_dicom, read_dicom

ALLOWED_FORMATS = {"JPEG", "PNG"}
SNIFF_BYTES = 132  # a DICOM file says "DICM" after a 128-byte preamble
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MIN_SIDE = 64


class ImageDecodeError(ValueError):
    """The bytes are not an image this product accepts; the message is for people."""


def sniff_format(head):
    """"JPEG", "PNG" or "DICOM" from the first SNIFF_BYTES of a file; ImageDecodeError for anything else."""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    if is_dicom(head):
        return "DICOM"
    raise ImageDecodeError("File is not a JPEG, PNG or DICOM image.")


@dataclass
class SourceInfo:
    """What decoding learnt about the file beyond its grayscale pixels."""

    format: str  # JPEG, PNG or DICOM
    colourfulness: float = 0.0  # Hasler–Süsstrunk; 0 for a grayscale source
    dicom: object = None  # ml.dicom.DicomImage for a DICOM file


def colourfulness(image):
    """Hasler & Süsstrunk (2003) colourfulness of a PIL image: 0 for gray, ~15+ for visibly coloured."""
    if image.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "PA"):
        return 0.0
    small = image.convert("RGB")
    small.thumbnail((256, 256))
    r, g, b = np.moveaxis(np.asarray(small, dtype=np.float64), -1, 0)
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def decode_image(source, **limits):
    """Open ``source`` (path, bytes or binary file) and return a fully decoded grayscale image."""
    return decode_with_tags(source, **limits)[0]


def decode_with_tags(source, *, max_pixels=DEFAULT_MAX_PIXELS, min_side=DEFAULT_MIN_SIDE, draft_size=None):
    """(grayscale image, :class:`SourceInfo`) from a path, bytes or binary file.

    Checks the format from the content (never the file name) and the pixel
    count from the header before any pixel is decoded, so a decompression
    bomb is refused without allocating it. ``draft_size`` lets a JPEG decode at a reduced
    scale (thumbnails) instead of full resolution. DICOM files also give their tags.
    """
    opened_here = isinstance(source, (str, Path))
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif opened_here:
        source = open(source, "rb")  # noqa: SIM115 - closed in the finally below
    try:
        start = source.tell()
        head = source.read(SNIFF_BYTES)
        source.seek(start)
        if is_dicom(head):
            try:
                dicom = read_dicom(source, max_pixels=max_pixels, min_side=min_side)
            except DicomError as exc:
                raise ImageDecodeError(str(exc)) from exc
            return dicom.image, SourceInfo("DICOM", dicom.colourfulness, dicom)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(source, formats=sorted(ALLOWED_FORMATS))
            except Image.DecompressionBombError as exc:
                raise ImageDecodeError("Image has too many pixels.") from exc
            except Image.DecompressionBombWarning as exc:
                raise ImageDecodeError("Image has too many pixels.") from exc
            except Exception as exc:  # Pillow raises several types for junk input
                raise ImageDecodeError("File is not a readable JPEG, PNG or DICOM image.") from exc
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"Image is {width}×{height} pixels; the limit is {max_pixels:,} pixels."
                )
            if min(width, height) < min_side:
                raise ImageDecodeError(
                    f"Image is {width}×{height} pixels; both sides must be at least {min_side}."
                )
            if draft_size is not None and image.format == "JPEG":
                image.draft("L", draft_size)
            try:
                image.load()
            except Exception as exc:
                raise ImageDecodeError("Image data is truncated or corrupt.") from exc
    finally:
        if opened_here:
            source.close()
    return to_grayscale(image), SourceInfo(image.format, colourfulness(image))


def to_grayscale(image):
    """8-bit single-channel view of any decoded image (16-bit PNGs are rescaled)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        lo, hi = float(array.min()), float(array.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(((array - lo) * scale).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("L")


def image_to_tensor(image, config):
    """Grayscale PIL image → normalised float tensor of shape (3, size, size)."""
    if image.mode != "L":
        image = to_grayscale(image)
    size = config.image_size
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    tensor = array.unsqueeze(0).expand(3, size, size)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (tensor - mean) / std


def normalize_age(age):
    """Years → (value in [0, 1], missing flag). Missing or invalid ages set the flag."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return 0.0, 1.0
    if not np.isfinite(years) or years < 0 or years > AGE_MAX_YEARS:
        return 0.0, 1.0
    return years / AGE_MAX_YEARS, 0.0


def age_to_tensor(ages):
    """List of ages (years or None) → tensor of shape (n, 2): [normalised age, missing]."""
    return torch.tensor([normalize_age(a) for a in ages], dtype=torch.float32)
