"""The DICOM objects PneumoWeb sends back to a hospital PACS for one AI result on one chest X-ray.

Pure functions (pydicom, highdicom, numpy, PIL; no Django), so they can be tested and reused
outside the web tier. Two objects, both in the SAME study as the source image (same
StudyInstanceUID, Patient and Study modules copied from the source header), each in a series
of its own:

``build_sr`` — a Comprehensive 3D SR (highdicom ``Comprehensive3DSR``) whose content is a
TID 1500 "Imaging Measurement Report" with one TID 1501 Measurement Group:

* observation context: a device observer (PneumoWeb, the model name as device name and model);
* procedure reported: SCT 413815006 "Chest imaging";
* image library (TID 1600) and "Source of Measurement" reference to the source image; the
  source is also listed in CurrentRequestedProcedureEvidenceSequence;
* finding: SCT 233604007 "Pneumonia" (Finding, DCM 121071) and a qualitative evaluation
  Pneumonia = SCT 52101004 "Present" (label PNEUMONIA) / SCT 272519000 "Absent" (label NORMAL),
  or DCM 121059 "Presence Undetermined" when the model refused the image (out of distribution);
* DCM 122157 "Probability" = calibrated P(pneumonia) in 0..1, unit UCUM "1" (no units, NOT %),
  and DCM 122411 "Threshold Value" = the operating point's threshold, same unit. highdicom
  writes NumericValue as a DS of up to 16 characters and adds FloatingPointValue (FD, exact)
  whenever the DS is not exact; :func:`read_probability` prefers FloatingPointValue;
* DCM 111848 "Borderline" = SCT Yes / No; DCM 121405 "Population description" = the population
  of the operating point;
* TID 4019 Algorithm Identification: model name, model version, manufacturer PneumoWeb;
* DCM 121106 "Comment" TEXT items: a one-line summary that says "decision support, not a
  diagnosis", the refusal and its reason (no probability, no threshold when refused), each
  warning, the reviewer's text, "no heatmap is given as evidence" unless a heatmap secondary
  capture accompanies the SR, and "Amended result ..." for an amendment;
* an amendment (``previous`` given) lists the earlier SR in PredecessorDocumentsSequence.

The SR is COMPLETE, UNVERIFIED (nobody accountable signed it) and PRELIMINARY (it is not the
definitive means of communicating the finding: a clinician is).

``build_secondary_capture`` — a Secondary Capture Image (highdicom ``SCImage``, SOP class
1.2.840.10008.5.1.4.1.1.7), RGB 8-bit, of the film — with the heatmap over it only for a PNEUMONIA or
borderline result (the exporter's choice, ``Prediction.shows_heatmap``) — ImageType DERIVED\\SECONDARY,
SourceImageSequence pointing at the source image, with "DECISION SUPPORT - NOT A DIAGNOSIS" burned
into the pixels on a dark band across the top and the result (label, P(pneumonia), threshold, the
population's point, the model, whether a heatmap is shown) on a band across the bottom
(BurnedInAnnotation YES, :func:`result_lines`), so that the capture opened alone in a viewer says
what it is.

Both carry Manufacturer = ``MANUFACTURER`` and our own SeriesDescription, which
:func:`is_our_output` reads: a PACS that routes our objects back to us must not get an AI
result on an AI result (loop guard). Both are ready to save with
``dataset.save_as(path, enforce_file_format=True)`` (file meta set, Explicit VR Little Endian)
or to send with C-STORE, and both use SpecificCharacterSet ISO_IR 192 (UTF-8): the source's
names are decoded by pydicom and written again in UTF-8, and our texts may hold non-ASCII.

``source`` is the source image's header (a pydicom Dataset, PixelData not needed: with or
without it the result is the same). It must hold StudyInstanceUID, SeriesInstanceUID,
SOPInstanceUID and SOPClassUID (ValueError otherwise); every other attribute may be missing:
the type 2 Patient/Study attributes become empty, BodyPartExamined defaults to CHEST.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import (
    Comprehensive3DSRStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import DA, TM

MANUFACTURER = "PneumoWeb"
SERIES_DESCRIPTION_SR = "PneumoWeb AI result (decision support)"
SERIES_DESCRIPTION_SC = "PneumoWeb heatmap (decision support, not a diagnosis)"
OUR_SOP_CLASSES = frozenset({str(Comprehensive3DSRStorage), str(SecondaryCaptureImageStorage)})
OUR_SERIES_DESCRIPTIONS = frozenset({SERIES_DESCRIPTION_SR, SERIES_DESCRIPTION_SC})

BURNED_IN_TEXT = "DECISION SUPPORT - NOT A DIAGNOSIS"
DISCLAIMER = "Decision support, not a diagnosis: a clinician must read the image."
NO_HEATMAP = "No heatmap is given as evidence for this result."
WITH_HEATMAP = (f"A heatmap secondary capture ({SERIES_DESCRIPTION_SC}) accompanies this result. It shows where "
                "the model found evidence for the label, not a lesion outline (see the model card's pointing-game "
                "figure: pneumoweb-v4's peak lies in radiologists' opacity boxes on 67 % of validation films).")
DEFAULT_BODY_PART = "CHEST"
CHARACTER_SET = "ISO_IR 192"  # UTF-8

# Codes. SNOMED CT "Pneumonia" is not in pydicom's dictionary; the others are.
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
PRESENT = codes.SCT.Present  # 52101004
ABSENT = codes.SCT.Absent  # 272519000
UNDETERMINED = codes.DCM.PresenceUndetermined  # 121059
PROBABILITY = codes.DCM.Probability  # 122157
THRESHOLD = codes.DCM.ThresholdValue  # 122411
BORDERLINE = codes.DCM.Borderline  # 111848
POPULATION = codes.DCM.PopulationDescription  # 121405
COMMENT = codes.DCM.Comment  # 121106
NO_UNITS = codes.UCUM.NoUnits  # UCUM "1"
CHEST_IMAGING = codes.SCT.ChestImaging  # 413815006
SOURCE = Code("260753009", "SCT", "Source")  # the image entry of an Image Library (as highdicom writes it)

LABELS = ("PNEUMONIA", "NORMAL")
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData
_TYPE2_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                "StudyDate", "StudyTime", "ReferringPhysicianName")
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


@dataclass(frozen=True)
class Result:
    """One AI result on one image, as the SR reports it."""

    label: str  # "PNEUMONIA" or "NORMAL" ("" when refused as out-of-distribution)
    probability: float | None  # calibrated P(pneumonia) 0..1 (None when refused)
    threshold: float | None  # the operating point's threshold
    population: str  # "pediatric" / "adult" / ""
    borderline: bool
    model_name: str  # e.g. "pneumoweb-v3"
    model_version: str  # e.g. first 12 hex of the weights' sha256
    ood: bool  # refused: the image is not what the model knows
    ood_reason: str
    warnings: tuple[str, ...]
    review: str = ""  # "" or e.g. "Reviewer disagreed: NORMAL — comment" (an amended SR carries it)
    heatmap_shown: bool = False  # whether a secondary capture of the heatmap accompanies this SR
    operating_point: str = ""  # whose point: "site operating point of <date> (#id)" or "the model card's operating point"
    not_assessed: bool = False  # with ood: the image could not be read at all (ood_reason says why); no model ran


def is_our_output(dataset) -> bool:
    """Whether ``dataset`` (a header) is an object PneumoWeb made: never run the model on it.

    True for our SOP classes with our Manufacturer, or for either of our series descriptions.
    """
    get = dataset.get if hasattr(dataset, "get") else (lambda keyword, default=None: getattr(dataset, keyword, default))
    sop_class = str(get("SOPClassUID", "") or "").strip()
    manufacturer = str(get("Manufacturer", "") or "").strip()
    description = str(get("SeriesDescription", "") or "").strip()
    return (sop_class in OUR_SOP_CLASSES and manufacturer == MANUFACTURER) or description in OUR_SERIES_DESCRIPTIONS


# --- the source header -------------------------------------------------------------------------


def _header(source: Dataset) -> Dataset:
    """A copy of the source header without pixels, with the type 2 Patient/Study attributes present.

    highdicom reads ``evidence.AccessionNumber`` and the like as attributes; missing ones become
    empty values here. Values highdicom would refuse (a sex other than M/F/O, an unreadable
    date or time) become empty too: an empty type 2 value is valid, a wrong one is not.
    """
    missing = [keyword for keyword in _REQUIRED_UIDS if not str(source.get(keyword, "") or "").strip()]
    if missing:
        raise ValueError(f"The source header lacks {', '.join(missing)}: it cannot be referenced.")
    header = Dataset()
    for element in source:
        if element.tag not in _PIXEL_TAGS:
            header.add(copy.deepcopy(element))
    for keyword in _TYPE2_EMPTY:
        if keyword not in header:
            setattr(header, keyword, "")
    if str(header.PatientSex or "").strip().upper() not in ("M", "F", "O"):
        header.PatientSex = ""
    for keyword, kind in (("PatientBirthDate", DA), ("StudyDate", DA), ("StudyTime", TM)):
        value = header[keyword].value
        try:
            kind(value) if value else None
        except (ValueError, TypeError, OverflowError):
            setattr(header, keyword, "")
    return header


def _body_part(source: Dataset) -> str:
    return str(source.get("BodyPartExamined", "") or "").strip() or DEFAULT_BODY_PART


class _NameWarnings(warnings.catch_warnings):
    """Silence highdicom's "unlikely person name" warning: names from a PACS are what they are."""

    def __enter__(self):
        result = super().__enter__()
        warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent", category=UserWarning)
        return result


# --- the SR --------------------------------------------------------------------------------------


def _text(value: str, name: Code = COMMENT) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _coded_modality(header: Dataset) -> Code | None:
    modality = str(header.get("Modality", "") or "").strip()
    for keyword in codes.cid29.dir():
        code = getattr(codes.cid29, keyword)
        if code.value == modality and code.scheme_designator == "DCM":
            return code
    return None


def _image_library(header: Dataset) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library listing the source image.

    highdicom's ImageLibrary describes the image from its pixel attributes (Rows, Columns and, for
    radiography, PatientOrientation and ImagerPixelSpacing); a header that lacks them gets the same
    structure with the modality as its only descriptor.
    """
    try:
        return hd.sr.ImageLibrary([header])[0]
    except (AttributeError, KeyError, IndexError, ValueError, TypeError):
        pass
    relation = hd.sr.RelationshipTypeValues
    image = hd.sr.ImageContentItem(name=SOURCE, referenced_sop_class_uid=header.SOPClassUID,
                                   referenced_sop_instance_uid=header.SOPInstanceUID,
                                   relationship_type=relation.CONTAINS)
    modality = _coded_modality(header)
    if modality is not None:
        image.ContentSequence = hd.sr.ContentSequence([hd.sr.CodeContentItem(
            name=codes.DCM.Modality, value=modality, relationship_type=relation.HAS_ACQ_CONTEXT)])
    group = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibraryGroup, relationship_type=relation.CONTAINS)
    group.ContentSequence = hd.sr.ContentSequence([image])
    library = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibrary, relationship_type=relation.CONTAINS)
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


def _check(result: Result) -> None:
    if result.ood:
        return
    if result.label not in LABELS:
        raise ValueError(f"label must be one of {LABELS} for a result that was not refused, not {result.label!r}")
    if result.probability is None or not 0.0 <= float(result.probability) <= 1.0:
        raise ValueError(f"probability must be in 0..1 for a result that was not refused, not {result.probability!r}")
    if result.threshold is not None and not 0.0 <= float(result.threshold) <= 1.0:
        raise ValueError(f"threshold must be in 0..1, not {result.threshold!r}")


def _summary(result: Result) -> str:
    if result.not_assessed:
        return (f"{MANUFACTURER} did not assess this image: {result.ood_reason.strip() or 'no reason given'}. "
                f"No probability is given. {DISCLAIMER}")
    if result.ood:
        reason = result.ood_reason.strip() or "no reason given"
        return (f"{MANUFACTURER} refused this image: it is not what the model knows (out of distribution: "
                f"{reason}). No probability is given. {DISCLAIMER}")
    operating = f" at threshold {result.threshold:.4f}" if result.threshold is not None else ""
    population = f", {result.population} operating point" if result.population else ""
    if result.operating_point:
        population += f": {result.operating_point}"
    borderline = ", borderline" if result.borderline else ""
    return (f"{MANUFACTURER} result: {result.label} (P(pneumonia) = {float(result.probability):.4f}{operating}"
            f"{population}{borderline}). {DISCLAIMER}")


def _previous_reference(previous: Dataset | Mapping[str, Any], header: Dataset, series_instance_uid: str) -> Dataset:
    """The earlier SR as highdicom's previous_versions wants it (Study, Series, SOP Instance and Class UIDs)."""
    get = previous.get
    sop_instance_uid = str(get("SOPInstanceUID", "") or "").strip()
    if not sop_instance_uid:
        raise ValueError("previous must give the earlier SR's SOPInstanceUID")
    reference = Dataset()
    reference.SOPInstanceUID = sop_instance_uid
    reference.SOPClassUID = str(get("SOPClassUID", "") or "").strip() or Comprehensive3DSRStorage
    reference.SeriesInstanceUID = str(get("SeriesInstanceUID", "") or "").strip() or series_instance_uid
    reference.StudyInstanceUID = str(get("StudyInstanceUID", "") or "").strip() or header.StudyInstanceUID
    return reference


def build_sr(*, source: Dataset, result: Result, sop_instance_uid: str, series_instance_uid: str,
             series_number: int = 9001, instance_number: int = 1,
             previous: Dataset | Mapping[str, Any] | None = None) -> hd.sr.Comprehensive3DSR:
    """The Comprehensive 3D SR (TID 1500) that reports ``result`` on ``source``; an amendment of ``previous``.

    ``previous``: the earlier SR (a Dataset, or a mapping with its SOPInstanceUID and, optionally,
    SOPClassUID — default Comprehensive 3D SR —, SeriesInstanceUID — default this SR's series — and
    StudyInstanceUID — default the source's study).
    """
    _check(result)
    header = _header(source)

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[MANUFACTURER, result.model_name, result.model_version]),
        name=result.model_name or MANUFACTURER, manufacturer_name=MANUFACTURER,
        model_name=result.model_name or None)
    observation_context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.cid270.Device,
                                                      observer_identifying_attributes=device))
    algorithm = hd.sr.AlgorithmIdentification(name=result.model_name or MANUFACTURER,
                                              version=result.model_version or "unknown", manufacturer=MANUFACTURER)
    # The same tracking UID for every (amended) result on this image: it tracks one finding.
    tracking = hd.sr.TrackingIdentifier(
        uid=generate_uid(entropy_srcs=[MANUFACTURER, "pneumonia", header.SOPInstanceUID]),
        identifier="PneumoWeb pneumonia screening")

    measurements = []
    if result.ood:
        evaluations = [hd.sr.QualitativeEvaluation(name=PNEUMONIA, value=UNDETERMINED)]
    else:
        measurements.append(hd.sr.Measurement(name=PROBABILITY, value=float(result.probability), unit=NO_UNITS))
        if result.threshold is not None:
            measurements.append(hd.sr.Measurement(name=THRESHOLD, value=float(result.threshold), unit=NO_UNITS))
        presence = PRESENT if result.label == "PNEUMONIA" else ABSENT
        evaluations = [hd.sr.QualitativeEvaluation(name=PNEUMONIA, value=presence),
                       hd.sr.QualitativeEvaluation(name=BORDERLINE,
                                                   value=codes.SCT.Yes if result.borderline else codes.SCT.No)]

    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=PNEUMONIA, algorithm_id=algorithm,
        measurements=measurements, qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup(referenced_sop_class_uid=header.SOPClassUID,
                                                            referenced_sop_instance_uid=header.SOPInstanceUID)])
    texts = []
    if result.population and not result.ood:
        texts.append(_text(result.population, POPULATION))
    texts.append(_text(_summary(result)))
    if result.not_assessed:
        texts.append(_text(f"Not assessed: {result.ood_reason.strip() or 'no reason given'}"))
    elif result.ood:
        texts.append(_text(f"Refused (out of distribution): {result.ood_reason.strip() or 'no reason given'}"))
    texts.extend(_text(f"Warning: {warning}") for warning in result.warnings if str(warning).strip())
    if result.review.strip():
        texts.append(_text(f"Review: {result.review.strip()}"))
    texts.append(_text(WITH_HEATMAP if result.heatmap_shown else NO_HEATMAP))
    predecessor = None
    if previous is not None:
        predecessor = _previous_reference(previous, header, series_instance_uid)
        texts.append(_text(f"Amended result: this report replaces the earlier {MANUFACTURER} report "
                           f"{predecessor.SOPInstanceUID}."))
    group[0].ContentSequence.extend(texts)

    report = hd.sr.MeasurementReport(observation_context=observation_context, procedure_reported=CHEST_IMAGING,
                                     imaging_measurements=[group])
    # The image library goes before Imaging Measurements, as TID 1500 orders them.
    content = report[0].ContentSequence
    content.insert(len(content) - 1, _image_library(header))

    with _NameWarnings():
        sr = hd.sr.Comprehensive3DSR(
            evidence=[header], content=report[0], series_instance_uid=series_instance_uid,
            series_number=series_number, sop_instance_uid=sop_instance_uid, instance_number=instance_number,
            manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
            previous_versions=[predecessor] if predecessor is not None else None,
            series_description=SERIES_DESCRIPTION_SR, manufacturer_model_name=result.model_name or None,
            software_versions=result.model_version or None, specific_character_set=CHARACTER_SET)
    # No BodyPartExamined: the SR document IOD has no module that holds it (dciodvfy warns); the source
    # image the SR references carries it.
    return sr


def _num_value(item: Dataset) -> float | None:
    for measured in item.get("MeasuredValueSequence", None) or []:
        if "FloatingPointValue" in measured:
            return float(measured.FloatingPointValue)
        if measured.get("NumericValue", None) not in (None, ""):
            return float(measured.NumericValue)
    return None


def _walk(items):
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence", None))


def read_probability(sr_dataset: Dataset) -> float | None:
    """The calibrated P(pneumonia) an SR built by :func:`build_sr` reports; None when it reports none (refused)."""
    for item in _walk(sr_dataset.get("ContentSequence", None)):
        if item.get("ValueType", "") != "NUM":
            continue
        names = item.get("ConceptNameCodeSequence", None) or []
        if names and names[0].CodeValue == PROBABILITY.value and names[0].CodingSchemeDesignator == "DCM":
            return _num_value(item)
    return None


# --- the secondary capture ---------------------------------------------------------------------


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # an old Pillow, or one without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def text_band_rows(height: int, lines: int = 1) -> int:
    """Rows of the dark band :func:`burn_in` draws across the top of an image ``height`` rows tall."""
    return min(height, max(12, round(height * 0.07)) * lines)


def _fitted_font(draw, lines, width, band):
    """(font, size): the largest of Pillow's default font whose widest line fits the width, down to 6 px."""
    room = width - 2 * max(2, width // 100)
    size = max(8, int(band / len(lines) * 0.7))
    font = _font(size)
    while size > 6 and max(draw.textlength(line, font=font) for line in lines) > room:
        size -= 1
        font = _font(size)
    return font, size


def _draw_band(draw, lines, font, *, width, top, band):
    """``lines`` in white, centred, on a near-black band of ``band`` rows from row ``top``."""
    draw.rectangle([0, top, width - 1, top + band - 1], fill=(16, 16, 16))
    step = band / len(lines)
    for index, line in enumerate(lines):
        left, upper, right, lower = draw.textbbox((0, 0), line, font=font)
        draw.text(((width - (right - left)) / 2 - left, top + step * (index + 0.5) - (upper + lower) / 2), line,
                  fill=(255, 255, 255), font=font)


def burn_in(overlay_rgb: np.ndarray, text: str = BURNED_IN_TEXT) -> tuple[np.ndarray, int]:
    """``overlay_rgb`` with ``text`` in white on a near-black band across its top, and the band's rows.

    The band is about 7 % of the height (at least 12 rows) per line of text; the font is the
    largest of Pillow's default font that fits the width. When one line would need a font under
    9 px, the text is split in two lines ("DECISION SUPPORT" / "NOT A DIAGNOSIS") on a band twice
    as high.
    """
    image = Image.fromarray(overlay_rgb, mode="RGB")
    width, height = image.size
    draw = ImageDraw.Draw(image)
    for lines in ([text], text.split(" - ", 1)):
        band = text_band_rows(height, len(lines))
        font, size = _fitted_font(draw, lines, width, band)
        if size >= 9:
            break
    _draw_band(draw, lines, font, width=width, top=0, band=band)
    return np.asarray(image, dtype=np.uint8).copy(), band


def result_lines(result: Result) -> list[str]:
    """What a capture says of its result, in short lines a viewer shows legibly (burned in at the bottom)."""
    label = result.label + (" (BORDERLINE)" if result.borderline else "")
    point = f"{result.population} point" if result.population else "operating point"
    lines = [f"AI: {label}"]
    if result.probability is not None:
        threshold = f" / threshold {result.threshold:.3f}" if result.threshold is not None else ""
        lines.append(f"P(pneumonia) {float(result.probability):.2f}{threshold}")
    lines.append(f"{point} - {result.model_name}")
    lines.append("heatmap: where the model saw evidence" if result.heatmap_shown else "no heatmap (not evidence)")
    return lines


def draw_result(image_rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """``image_rgb`` with ``lines`` in white on a near-black band across its bottom (a band per line)."""
    image = Image.fromarray(image_rgb, mode="RGB")
    width, height = image.size
    draw = ImageDraw.Draw(image)
    band = text_band_rows(height, len(lines))
    font, _ = _fitted_font(draw, lines, width, band)
    _draw_band(draw, lines, font, width=width, top=height - band, band=band)
    return np.asarray(image, dtype=np.uint8).copy()


def build_secondary_capture(*, source: Dataset, overlay_rgb: np.ndarray, sop_instance_uid: str,
                            series_instance_uid: str, series_number: int = 9002,
                            instance_number: int = 1, result: Result | None = None) -> hd.sc.SCImage:
    """The film (with the heatmap where it stands for evidence) as an RGB Secondary Capture in the source's
    study: the warning burned in across the top and, with ``result``, the result across the bottom — the
    label, P(pneumonia), the threshold, the population's point and the model — so that the capture opened
    alone in a viewer cannot be read as a finding it is not."""
    overlay = np.asarray(overlay_rgb)
    if overlay.ndim != 3 or overlay.shape[2] != 3 or overlay.dtype != np.uint8:
        raise ValueError(f"overlay_rgb must be a uint8 H×W×3 array, not {overlay.dtype} {overlay.shape}")
    if overlay.shape[0] < 16 or overlay.shape[1] < 16:
        raise ValueError(f"overlay_rgb is too small to carry the burned-in warning: {overlay.shape}")
    header = _header(source)
    pixels, _ = burn_in(np.ascontiguousarray(overlay))
    if result is not None:
        pixels = draw_result(pixels, result_lines(result))

    with _NameWarnings():
        # highdicom wants a patient orientation for a PATIENT image; the real one (or an empty
        # value, which type 2C allows) replaces this placeholder below.
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
            coordinate_system="PATIENT", patient_orientation=("L", "F"),
            series_instance_uid=series_instance_uid, series_number=series_number,
            sop_instance_uid=sop_instance_uid, instance_number=instance_number, manufacturer=MANUFACTURER,
            transfer_syntax_uid=ExplicitVRLittleEndian, series_description=SERIES_DESCRIPTION_SC,
            specific_character_set=CHARACTER_SET)
        sc.copy_patient_and_study_information(header)  # the rest of the modules: issuer, age, study description…
    orientation = header.get("PatientOrientation", None)
    orientation = [] if orientation is None else [orientation] if isinstance(orientation, str) else list(orientation)
    sc.PatientOrientation = orientation if len(orientation) == 2 else ""
    sc.BodyPartExamined = _body_part(source)
    sc.ConversionType = "WSD"  # made by a workstation (software), not captured from a video interface
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = ("; ".join(result_lines(result)) + ". Decision support, not a diagnosis." if result is not None
                        else "Heatmap overlay: decision support, not a diagnosis.")
    sc.DerivationDescription = "AI heatmap (class-activation map) over the source radiograph"
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue = codes.DCM.SourceImageForImageProcessingOperation.value
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = codes.DCM.SourceImageForImageProcessingOperation.meaning
    reference.PurposeOfReferenceCodeSequence = [purpose]
    sc.SourceImageSequence = [reference]
    return sc
