"""DICOM ingest: a radiograph's pixel data → the same 8-bit grayscale image a JPEG/PNG gives.

Modality LUT, then VOI LUT or window, then MONOCHROME1 inverted, then scaled to 0–255.
Only the tags a record needs leave this module (age, sex, view, modality); the caller
stores the derived image, never the DICOM file with its identifying tags.
"""

import io
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# Radiographs: computed and digital radiography. Everything else is refused by name.
RADIOGRAPHY = {"CR", "DX"}
MODALITY_NAMES = {
    "CT": "a CT scan", "MR": "an MR scan", "US": "an ultrasound", "NM": "a nuclear-medicine study",
    "PT": "a PET scan", "MG": "a mammogram", "XA": "an angiogram", "RF": "a fluoroscopy study",
    "OT": "an 'other' modality image", "SC": "a secondary capture", "RTPLAN": "a radiotherapy plan",
}
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


class DicomError(ValueError):
    """Not a DICOM radiograph this product accepts; the message is for people."""


@dataclass
class DicomImage:
    image: Image.Image  # mode "L"
    modality: str = ""
    age_years: float = None
    sex: str = ""
    view_position: str = ""  # the DICOM ViewPosition: PA, AP, LL, RL, LATERAL, ...
    body_part: str = ""
    colourfulness: float = 0.0
    notes: list = field(default_factory=list)


def is_dicom(head):
    """True for a DICOM Part 10 file (128-byte preamble, then "DICM")."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def parse_age(value):
    """DICOM Age String ("045Y", "006M", "010W", "003D") → years; None when absent or malformed."""
    match = _AGE.match(str(value or "").strip().upper())
    if not match:
        return None
    return round(int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)], 2)


def _text(dataset, keyword):
    return str(dataset.get(keyword, "") or "").strip().upper()


def read_dicom(source, *, max_pixels, min_side):
    """Read a DICOM radiograph from bytes or a binary file; :class:`DicomError` for anything else."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        dataset = pydicom.dcmread(source)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as exc:
        raise DicomError("File is not a readable DICOM file.") from exc

    modality = _text(dataset, "Modality")
    if modality and modality not in RADIOGRAPHY:
        what = MODALITY_NAMES.get(modality, f"modality {modality}")
        raise DicomError(f"This DICOM file is {what}, not a radiograph (CR/DX): upload a chest X-ray.")
    if "PixelData" not in dataset:
        raise DicomError("This DICOM file holds no image (no pixel data).")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * columns > max_pixels:
        raise DicomError(f"Image is {columns}×{rows} pixels; the limit is {max_pixels:,} pixels.")
    if min(rows, columns) < min_side:
        raise DicomError(f"Image is {columns}×{rows} pixels; both sides must be at least {min_side}.")
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomError("Multi-frame DICOM files are not accepted: upload one radiograph.")

    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for missing decoders and bad data
        syntax = getattr(dataset.file_meta, "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "its transfer syntax")
        raise DicomError(f"The DICOM pixel data ({name}) could not be decoded on this server.") from exc

    from .preprocessing import colourfulness

    notes = []
    colour = 0.0
    photometric = _text(dataset, "PhotometricInterpretation")
    if pixels.ndim == 3:  # colour: a radiograph is grayscale; keep the luminance and say so
        notes.append("The DICOM image was in colour and was converted to grayscale.")
        rgb = Image.fromarray(pixels.astype(np.uint8))
        colour = colourfulness(rgb)
        pixels = np.asarray(rgb.convert("L"))
    else:
        pixels = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset)
    if not modality:
        notes.append("The DICOM file does not record its modality.")

    image = _to_uint8(pixels, invert=photometric == "MONOCHROME1")
    return DicomImage(
        image=Image.fromarray(image, mode="L"),
        modality=modality,
        age_years=parse_age(dataset.get("PatientAge")),
        sex=_text(dataset, "PatientSex")[:1],
        view_position=_text(dataset, "ViewPosition"),
        body_part=_text(dataset, "BodyPartExamined"),
        colourfulness=colour,
        notes=notes,
    )


def _to_uint8(pixels, *, invert):
    pixels = np.asarray(pixels, dtype=np.float64)
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(pixels)
    if invert:  # MONOCHROME1: the lowest value is white
        scaled = 255.0 - scaled
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
