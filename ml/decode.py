"""Reading an uploaded file into a grayscale image: format sniffing, limits, full decode. No torch.

The web tier validates uploads with this module and the worker decodes stored studies with
it, so both see exactly the same pixels; ``ml.preprocessing`` turns them into tensors.
"""

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .constants import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE
from .dicom import DicomError, is_dicom, read_dicom
from .pixels import colourfulness, to_grayscale

ALLOWED_FORMATS = {"JPEG", "PNG"}
SNIFF_BYTES = 132  # a DICOM file says "DICM" after a 128-byte preamble
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


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


def decode_image(source, **limits):
    """Open ``source`` (path, bytes or binary file) and return a fully decoded grayscale image."""
    return decode_with_tags(source, **limits)[0]


def decode_with_tags(source, *, max_pixels=MAX_IMAGE_PIXELS, min_side=MIN_IMAGE_SIDE, draft_size=None):
    """(grayscale image, :class:`SourceInfo`) from a path, bytes or binary file.

    Checks the format from the content (never the file name) and the pixel
    count from the header before any pixel is decoded, so a decompression
    bomb is refused without allocating it. ``draft_size`` lets a JPEG decode at a reduced
    scale (thumbnails) instead of full resolution. DICOM files also give their tags.
    """
    with contextlib.ExitStack() as opened:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        elif isinstance(source, (str, Path)):
            source = opened.enter_context(open(source, "rb"))  # a caller's file object stays open
        start = source.tell()
        head = source.read(SNIFF_BYTES)
        source.seek(start)
        if is_dicom(head):
            try:
                dicom = read_dicom(source, max_pixels=max_pixels, min_side=min_side)
            except DicomError as exc:
                raise ImageDecodeError(str(exc)) from exc
            return dicom.image, SourceInfo("DICOM", dicom.colourfulness, dicom)
        image = _open_checked(source, max_pixels=max_pixels, min_side=min_side)
        if draft_size is not None and image.format == "JPEG":
            image.draft("L", draft_size)
        try:
            image.load()
            gray = to_grayscale(image)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data
            raise ImageDecodeError("Image data is truncated or corrupt.") from exc
    return gray, SourceInfo(image.format, colourfulness(image))


def _open_checked(source, *, max_pixels, min_side):
    """Pillow's lazy open (header only) with the format and size limits applied."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(source, formats=sorted(ALLOWED_FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError("Image has too many pixels.") from exc
        except Exception as exc:  # noqa: BLE001 - Pillow raises several types for junk input
            raise ImageDecodeError("File is not a readable JPEG, PNG or DICOM image.") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(f"Image is {width}×{height} pixels; the limit is {max_pixels:,} pixels.")
    if min(width, height) < min_side:
        raise ImageDecodeError(f"Image is {width}×{height} pixels; both sides must be at least {min_side}.")
    return image
