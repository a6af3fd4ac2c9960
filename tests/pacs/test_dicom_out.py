"""pacs.dicom_out: the SR and the heatmap secondary capture PneumoWeb sends back to a PACS.

Every object is written as a Part 10 file, read back with pydicom and checked with dicom3tools'
``dciodvfy`` (no line may start with "Error"; warnings are allowed). A missing dciodvfy skips
that check locally and fails it under CI=true.
"""

import io
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage, generate_uid

from pacs.dicom_out import (
    BURNED_IN_TEXT,
    MANUFACTURER,
    NO_HEATMAP,
    SERIES_DESCRIPTION_SC,
    SERIES_DESCRIPTION_SR,
    Result,
    build_secondary_capture,
    build_sr,
    is_our_output,
    read_probability,
    text_band_rows,
)

from ..servers import in_ci

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def source_header(*, full=True):
    """A DX chest PA header as the platform keeps it (no PixelData); ``full=False`` drops the optional tags."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = "HOSP-123456"
    ds.PatientBirthDate = "20180304"
    ds.PatientSex = "M"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101112", "S1"
    ds.Modality = "DX"
    ds.Manufacturer = "Acme Detectors"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows, ds.Columns = 2048, 1680
    if full:
        ds.IssuerOfPatientID = "St Example"
        ds.AccessionNumber = "ACC-0001"
        ds.ReferringPhysicianName = "House^Gregory"
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.PatientOrientation = ["L", "F"]
        ds.ImagerPixelSpacing = [0.139, 0.139]
    # Through a file and back, as the platform's stored header is: raw elements, Latin-1 names.
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True)


def result(**overrides):
    values = dict(label="PNEUMONIA", probability=0.8312345678, threshold=0.4213, population="pediatric",
                  borderline=False, model_name="pneumoweb-v3", model_version="0123456789ab", ood=False,
                  ood_reason="", warnings=("Low contrast: the image may be under-exposed",))
    values.update(overrides)
    return Result(**values)


def saved(dataset, tmp_path, name):
    """``dataset`` written as a Part 10 file and read back: the path and the dataset as a receiver sees it."""
    path = tmp_path / f"{name}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path, pydicom.dcmread(path)


def assert_dciodvfy_accepts(path):
    exe = shutil.which("dciodvfy")
    if exe is None:
        message = "dciodvfy (dicom3tools) is not on PATH"
        if in_ci():
            pytest.fail(f"{message} (CI=true: a missing validator is a failure)", pytrace=False)
        pytest.skip(message)
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    problems = [line for line in output.splitlines() if line.startswith(("Error", "Warning"))]
    assert not problems, f"dciodvfy {path.name}:\n{output}"
    return output


def walk(items):
    for item in items or []:
        yield item
        yield from walk(item.get("ContentSequence", None))


def texts(sr):
    return [item.TextValue for item in walk(sr.ContentSequence) if item.ValueType == "TEXT"]


def coded(sr, name):
    """The CODE items' values named ``name`` (a CodeMeaning) anywhere in the SR content."""
    return [item.ConceptCodeSequence[0].CodeMeaning for item in walk(sr.ContentSequence)
            if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeMeaning == name]


def referenced_instances(sr):
    """SOP Instance UIDs the SR content references (IMAGE items)."""
    return {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in walk(sr.ContentSequence)
            if item.ValueType == "IMAGE"}


def evidence(sr):
    return [(study.StudyInstanceUID, series.SeriesInstanceUID, instance.ReferencedSOPInstanceUID)
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for instance in series.ReferencedSOPSequence]


def test_it_builds_an_sr_in_the_source_study_that_dciodvfy_accepts(tmp_path):
    source = source_header()
    uid, series = generate_uid(), generate_uid()
    path, sr = saved(build_sr(source=source, result=result(), sop_instance_uid=uid, series_instance_uid=series),
                     tmp_path, "sr")

    assert sr.SOPClassUID == Comprehensive3DSRStorage and sr.file_meta.MediaStorageSOPClassUID == sr.SOPClassUID
    assert (sr.SOPInstanceUID, sr.SeriesInstanceUID, sr.SeriesNumber, sr.Modality) == (uid, series, 9001, "SR")
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert (sr.PatientID, sr.IssuerOfPatientID, str(sr.PatientName)) == ("HOSP-123456", "St Example", "Müller^Jörg")
    assert (sr.AccessionNumber, sr.StudyDate, sr.PatientSex) == ("ACC-0001", "20240102", "M")
    assert (sr.Manufacturer, sr.SeriesDescription) == (MANUFACTURER, SERIES_DESCRIPTION_SR)
    assert "BodyPartExamined" not in sr  # not in the SR IOD: dciodvfy warned
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("COMPLETE", "UNVERIFIED", "PRELIMINARY")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    # The source image: evidence, image library entry and measurement source.
    assert evidence(sr) == [(source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)]
    assert referenced_instances(sr) == {source.SOPInstanceUID}
    # The finding and the numbers.
    assert read_probability(sr) == pytest.approx(0.8312345678, abs=1e-6)
    probability = next(item for item in walk(sr.ContentSequence) if item.ValueType == "NUM"
                       and item.ConceptNameCodeSequence[0].CodeValue == "122157")
    assert probability.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "1"
    finding = [item.ConceptCodeSequence[0] for item in walk(sr.ContentSequence) if item.ValueType == "CODE"
               and item.ConceptNameCodeSequence[0].CodeMeaning == "Finding"]
    assert [(code.CodeValue, code.CodingSchemeDesignator) for code in finding] == [("233604007", "SCT")]
    assert coded(sr, "Pneumonia") == ["Present"]
    assert coded(sr, "Borderline") == ["No"]
    threshold = next(item for item in walk(sr.ContentSequence) if item.ValueType == "NUM"
                     and item.ConceptNameCodeSequence[0].CodeMeaning == "Threshold Value")
    assert float(threshold.MeasuredValueSequence[0].NumericValue) == pytest.approx(0.4213)
    algorithm = {item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue for item in walk(sr.ContentSequence)
                 if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning.startswith("Algorithm")}
    assert algorithm == {"Algorithm Name": "pneumoweb-v3", "Algorithm Version": "0123456789ab",
                         "Algorithm Manufacturer": MANUFACTURER}
    content = texts(sr)
    assert "pediatric" in content and NO_HEATMAP in content
    assert any("decision support, not a diagnosis" in text.lower() for text in content)
    assert "Warning: Low contrast: the image may be under-exposed" in content
    assert is_our_output(sr)
    assert "PredecessorDocumentsSequence" not in sr
    assert_dciodvfy_accepts(path)


def test_it_builds_a_valid_sr_from_a_header_without_the_optional_attributes(tmp_path):
    source = source_header(full=False)
    report = result(label="NORMAL", probability=1 / 3, borderline=True, warnings=(), heatmap_shown=True,
                    review="Reviewer disagreed: PNEUMONIA — consolidation in the right lower lobe")
    path, sr = saved(build_sr(source=source, result=report, sop_instance_uid=generate_uid(),
                              series_instance_uid=generate_uid(), series_number=42, instance_number=3),
                     tmp_path, "sr-minimal")

    assert (sr.AccessionNumber, sr.ReferringPhysicianName) == ("", "")
    assert "IssuerOfPatientID" not in sr and (sr.SeriesNumber, sr.InstanceNumber) == (42, 3)
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    # 1/3 has no exact 16-character DS: the FD value carries it.
    assert read_probability(sr) == pytest.approx(1 / 3, abs=1e-9)
    assert coded(sr, "Pneumonia") == ["Absent"] and coded(sr, "Borderline") == ["Yes"]
    content = texts(sr)
    assert "Review: Reviewer disagreed: PNEUMONIA — consolidation in the right lower lobe" in content
    assert NO_HEATMAP not in content and any(SERIES_DESCRIPTION_SC in text for text in content)
    assert referenced_instances(sr) == {source.SOPInstanceUID}
    assert_dciodvfy_accepts(path)


def test_it_reports_an_ood_refusal_without_a_probability(tmp_path):
    source = source_header()
    reason = "not a chest radiograph (OOD score 7.9 above 3.1)"
    refused = result(label="", probability=None, threshold=None, population="", ood=True, ood_reason=reason,
                     warnings=())
    path, sr = saved(build_sr(source=source, result=refused, sop_instance_uid=generate_uid(),
                              series_instance_uid=generate_uid()), tmp_path, "sr-ood")

    assert read_probability(sr) is None
    assert not [item for item in walk(sr.ContentSequence) if item.ValueType == "NUM"
                and item.ConceptNameCodeSequence[0].CodeMeaning in ("Probability", "Threshold Value")]
    assert coded(sr, "Pneumonia") == ["Presence Undetermined"]
    assert any(reason in text and "refused" in text.lower() for text in texts(sr))
    assert sr.StudyInstanceUID == source.StudyInstanceUID and is_our_output(sr)
    assert_dciodvfy_accepts(path)


def test_it_amends_an_earlier_sr_with_a_predecessor_reference(tmp_path):
    source = source_header()
    series = generate_uid()
    first = build_sr(source=source, result=result(), sop_instance_uid=generate_uid(), series_instance_uid=series)
    amended = result(review="Reviewer disagreed: NORMAL — no consolidation")
    path, sr = saved(build_sr(source=source, result=amended, sop_instance_uid=generate_uid(),
                              series_instance_uid=series, instance_number=2, previous=first), tmp_path, "sr-amended")

    (study,) = sr.PredecessorDocumentsSequence
    (series_item,) = study.ReferencedSeriesSequence
    (instance,) = series_item.ReferencedSOPSequence
    assert (study.StudyInstanceUID, series_item.SeriesInstanceUID) == (first.StudyInstanceUID, series)
    assert (instance.ReferencedSOPInstanceUID, instance.ReferencedSOPClassUID) == (
        first.SOPInstanceUID, Comprehensive3DSRStorage)
    assert any(first.SOPInstanceUID in text and "amended" in text.lower() for text in texts(sr))
    assert "Review: Reviewer disagreed: NORMAL — no consolidation" in texts(sr)
    assert read_probability(sr) == pytest.approx(0.8312345678, abs=1e-6)

    # The earlier SR given by its UIDs only (the platform keeps those, not the object).
    by_uids = build_sr(source=source, result=amended, sop_instance_uid=generate_uid(), series_instance_uid=series,
                       previous={"SOPInstanceUID": first.SOPInstanceUID, "SOPClassUID": first.SOPClassUID})
    reference = by_uids.PredecessorDocumentsSequence[0]
    assert reference.StudyInstanceUID == source.StudyInstanceUID
    assert reference.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        first.SOPInstanceUID)
    assert_dciodvfy_accepts(path)


def test_it_builds_a_secondary_capture_with_the_warning_burned_in(tmp_path):
    source = source_header()
    rng = np.random.default_rng(7)
    overlay = rng.integers(40, 256, size=(320, 256, 3), dtype=np.uint8)
    path, sc = saved(build_secondary_capture(source=source, overlay_rgb=overlay, sop_instance_uid=generate_uid(),
                                             series_instance_uid=generate_uid()), tmp_path, "sc")

    assert sc.SOPClassUID == SecondaryCaptureImageStorage and sc.SeriesNumber == 9002
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.PatientID == source.PatientID
    assert str(sc.PatientName) == "Müller^Jörg" and sc.AccessionNumber == "ACC-0001"
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BitsAllocated) == ("RGB", 3, 8)
    assert "DERIVED" in sc.ImageType and "SECONDARY" in sc.ImageType
    assert (sc.BurnedInAnnotation, sc.Manufacturer, sc.SeriesDescription, sc.BodyPartExamined) == (
        "YES", MANUFACTURER, SERIES_DESCRIPTION_SC, "CHEST")
    assert list(sc.PatientOrientation) == ["L", "F"]
    (reference,) = sc.SourceImageSequence
    assert (reference.ReferencedSOPInstanceUID, reference.ReferencedSOPClassUID) == (
        source.SOPInstanceUID, DX_FOR_PRESENTATION)
    pixels = sc.pixel_array
    assert pixels.shape == overlay.shape and pixels.dtype == np.uint8
    band = text_band_rows(overlay.shape[0])
    # The band is dark with light text in it; the rest of the overlay is untouched.
    assert (pixels[:band] != overlay[:band]).any(axis=2).mean() > 0.9
    assert pixels[:band].max() >= 200 and np.median(pixels[:band]) < 40
    np.testing.assert_array_equal(pixels[band:], overlay[band:])
    assert is_our_output(sc)
    assert_dciodvfy_accepts(path)


def test_it_burns_the_warning_into_a_small_overlay_from_a_minimal_header(tmp_path):
    source = source_header(full=False)
    overlay = np.full((64, 64, 3), 180, dtype=np.uint8)
    path, sc = saved(build_secondary_capture(source=source, overlay_rgb=overlay, sop_instance_uid=generate_uid(),
                                             series_instance_uid=generate_uid(), series_number=7), tmp_path, "sc-small")

    assert (sc.BodyPartExamined, sc.AccessionNumber, sc.SeriesNumber) == ("CHEST", "", 7)
    assert sc.PatientOrientation == "" or list(sc.PatientOrientation) == []
    pixels = sc.pixel_array
    band = text_band_rows(64, lines=2)  # too narrow for one line: "DECISION SUPPORT" / "NOT A DIAGNOSIS"
    assert pixels[:band].max() >= 150 and np.median(pixels[:band]) < 40  # small, anti-aliased glyphs
    np.testing.assert_array_equal(pixels[band:], overlay[band:])
    assert BURNED_IN_TEXT == "DECISION SUPPORT - NOT A DIAGNOSIS"
    assert_dciodvfy_accepts(path)


def test_it_tells_our_output_from_the_hospitals():
    source = source_header()
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False), stop_before_pixels=True)
    assert not is_our_output(source)
    assert not is_our_output(ct)
    # Our SOP class alone is not enough (a hospital's secondary capture), nor our name on another class.
    hospital_sc = Dataset()
    hospital_sc.SOPClassUID, hospital_sc.Manufacturer = SecondaryCaptureImageStorage, "Acme"
    assert not is_our_output(hospital_sc)
    ct.Manufacturer = MANUFACTURER
    assert not is_our_output(ct)
    # Our series description alone is (a router that rewrote Manufacturer).
    rewritten = Dataset()
    rewritten.SOPClassUID, rewritten.Manufacturer = Comprehensive3DSRStorage, "Router"
    rewritten.SeriesDescription = SERIES_DESCRIPTION_SR
    assert is_our_output(rewritten)


def test_it_refuses_a_source_it_cannot_reference_and_an_incoherent_result():
    source = source_header()
    del source.SOPInstanceUID
    with pytest.raises(ValueError, match="SOPInstanceUID"):
        build_sr(source=source, result=result(), sop_instance_uid=generate_uid(), series_instance_uid=generate_uid())
    with pytest.raises(ValueError, match="probability"):
        build_sr(source=source_header(), result=result(probability=None), sop_instance_uid=generate_uid(),
                 series_instance_uid=generate_uid())
    with pytest.raises(ValueError, match="overlay_rgb"):
        build_secondary_capture(source=source_header(), overlay_rgb=np.zeros((64, 64), np.uint8),
                                sop_instance_uid=generate_uid(), series_instance_uid=generate_uid())


def test_a_capture_with_its_result_says_label_probability_threshold_point_and_model_at_the_bottom(tmp_path):
    from pacs.dicom_out import result_lines

    source = source_header()
    film = np.full((512, 512, 3), 90, dtype=np.uint8)
    report = result(label="NORMAL", probability=0.075, threshold=0.069, heatmap_shown=False)
    path, sc = saved(build_secondary_capture(source=source, overlay_rgb=film, sop_instance_uid=generate_uid(),
                                             series_instance_uid=generate_uid(), result=report), tmp_path, "sc-result")
    lines = result_lines(report)
    assert lines == ["AI: NORMAL", "P(pneumonia) 0.07 / threshold 0.069", "pediatric point - pneumoweb-v3",
                     "no heatmap (not evidence)"]
    for line in lines:
        assert line in sc.ImageComments
    assert "not a diagnosis" in sc.ImageComments
    pixels, band = sc.pixel_array, text_band_rows(512, len(lines))
    bottom = pixels[512 - band:]
    assert np.median(bottom) < 40 and bottom.max() >= 200  # white text on a dark band
    assert band >= 4 * 30  # at 512 px, each line ≥ 30 px high: legible at a viewer's size
    np.testing.assert_array_equal(pixels[text_band_rows(512): 512 - band], film[text_band_rows(512): 512 - band])
    assert_dciodvfy_accepts(path)


def test_a_borderline_result_is_said_so_on_its_capture():
    from pacs.dicom_out import result_lines

    lines = result_lines(result(label="NORMAL", borderline=True, heatmap_shown=True))
    assert lines[0] == "AI: NORMAL (BORDERLINE)" and lines[-1] == "heatmap: where the model saw evidence"
