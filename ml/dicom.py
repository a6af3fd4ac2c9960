"""DICOM ingest: a radiograph's pixel data → the same 8-bit grayscale image a JPEG/PNG gives. No torch.

Modality LUT, then VOI LUT or window, then MONOCHROME1 inverted, then scaled to 0–255.
Only the tags a record needs leave this module (age, sex, view, modality); the caller
stores the derived image, never the DICOM file with its identifying tags.

Every DICOM file is untrusted input: any tag may be missing, malformed or contradict the
pixel data. Whatever goes wrong while reading one becomes a :class:`DicomError` with a
message for people (a 400 for the web tier), never another exception type.
"""

import datetime
import io
import logging
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .constants import AGE_MAX_YEARS
from .pixels import colourfulness, rescale_to_uint8

log = logging.getLogger(__name__)

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
    study_date: datetime.date = None  # the DICOM StudyDate (else AcquisitionDate), when valid


def is_dicom(head):
    """True for a DICOM Part 10 file (128-byte preamble, then "DICM")."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def parse_age(value):
    """DICOM Age String ("045Y", "006M", "010W", "003D") → years; None when absent, malformed or over 120 years."""
    match = _AGE.match(str(value or "").strip().upper())
    if not match:
        return None
    years = round(int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)], 2)
    return years if years <= AGE_MAX_YEARS else None


def parse_date(value):
    """DICOM Date String ("20240131") → date; None when absent or not a valid date."""
    text = str(value or "").strip()
    try:
        return datetime.datetime.strptime(text, "%Y%m%d").date() if len(text) == 8 else None
    except ValueError:
        return None


def _text(dataset, keyword):
    try:
        return str(dataset.get(keyword, "") or "").strip().upper()
    except Exception:  # noqa: BLE001 - a malformed element raises on access
        return ""


def _integer(dataset, keyword, default):
    """An integer tag, or DicomError naming the tag when it holds something else."""
    try:
        value = dataset.get(keyword, default)
        return default if value in (None, "") else int(str(value).strip())
    except (TypeError, ValueError) as exc:
        raise DicomError(f"The DICOM {keyword} tag is not a whole number.") from exc
    except Exception as exc:  # noqa: BLE001 - a malformed element raises on access
        raise DicomError(f"The DICOM {keyword} tag cannot be read.") from exc


def read_dicom(source, *, max_pixels, min_side):
    """Read a DICOM radiograph from bytes or a binary file; :class:`DicomError` for anything else."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        return _read(source, max_pixels=max_pixels, min_side=min_side)
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - last line of defence: a parser of untrusted files
        log.info("Unreadable DICOM upload: %s: %s", type(exc).__name__, exc)
        raise DicomError("The DICOM file is damaged or malformed and cannot be read.") from exc


def _read(source, *, max_pixels, min_side):
    # pydicom loads with the first DICOM file: the web tier sniffs every upload with this
    # module, and a JPEG or PNG needs no DICOM parser in the process.
    import pydicom

    try:
        dataset = pydicom.dcmread(source)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for junk input
        raise DicomError("File is not a readable DICOM file.") from exc

    modality = _text(dataset, "Modality")
    if modality and modality not in RADIOGRAPHY:
        what = MODALITY_NAMES.get(modality, f"modality {modality}")
        raise DicomError(f"This DICOM file is {what}, not a radiograph (CR/DX): upload a chest X-ray.")
    if "PixelData" not in dataset:
        raise DicomError("This DICOM file holds no image (no pixel data).")
    rows, columns = _integer(dataset, "Rows", 0), _integer(dataset, "Columns", 0)
    _check_size(rows, columns, max_pixels=max_pixels, min_side=min_side)
    if _integer(dataset, "NumberOfFrames", 1) > 1:
        raise DicomError("Multi-frame DICOM files are not accepted: upload one radiograph.")

    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for missing decoders and bad data
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "its transfer syntax")
        raise DicomError(f"The DICOM pixel data ({name}) could not be decoded on this server.") from exc
    colour = pixels.ndim == 3 and pixels.shape[-1] in (3, 4)
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and not colour):
        raise DicomError("The DICOM pixel data is not a single 2-D image: upload one radiograph.")
    _check_size(*pixels.shape[:2], max_pixels=max_pixels, min_side=min_side)

    notes = []
    colour_score = 0.0
    if colour:  # a radiograph is grayscale; keep the luminance and say so
        notes.append("The DICOM image was in colour and was converted to grayscale.")
        rgb = Image.fromarray(rescale_to_uint8(pixels[..., :3]))
        colour_score = colourfulness(rgb)
        pixels = np.asarray(rgb.convert("L"))
    else:
        pixels = _apply_luts(pixels, dataset, notes)
    if not modality:
        notes.append("The DICOM file does not record its modality.")

    age_text = _text(dataset, "PatientAge")
    age = parse_age(age_text)
    if age_text and age is None:
        notes.append(f"The DICOM PatientAge ({age_text}) is not a valid age (0–{AGE_MAX_YEARS:g} years) "
                     "and was ignored.")
    image = rescale_to_uint8(pixels, invert=_text(dataset, "PhotometricInterpretation") == "MONOCHROME1")
    return DicomImage(
        image=Image.fromarray(image, mode="L"),
        modality=modality,
        age_years=age,
        sex=_text(dataset, "PatientSex")[:1],
        view_position=_text(dataset, "ViewPosition"),
        body_part=_text(dataset, "BodyPartExamined"),
        colourfulness=colour_score,
        notes=notes,
        study_date=parse_date(_text(dataset, "StudyDate")) or parse_date(_text(dataset, "AcquisitionDate")),
    )


def _check_size(rows, columns, *, max_pixels, min_side):
    if rows * columns > max_pixels:
        raise DicomError(f"Image is {columns}×{rows} pixels; the limit is {max_pixels:,} pixels.")
    if min(rows, columns) < min_side:
        raise DicomError(f"Image is {columns}×{rows} pixels; both sides must be at least {min_side}.")


def _apply_luts(pixels, dataset, notes):
    """Modality LUT, then the VOI LUT or window; a LUT or window that cannot apply is skipped with a note."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut  # loaded with the first DICOM file (see _read)

    try:
        pixels = apply_modality_lut(pixels, dataset)
    except Exception:  # noqa: BLE001 - a malformed rescale slope/intercept or LUT
        notes.append("The DICOM modality LUT (rescale) is invalid and was not applied.")
    try:
        return apply_voi_lut(pixels, dataset)
    except Exception:  # noqa: BLE001 - e.g. WindowWidth 0 or negative, a truncated VOI LUT
        notes.append("The DICOM window (WindowCenter/WindowWidth or VOI LUT) is invalid and was not applied: "
                     "the image is shown over its full range.")
        return pixels
