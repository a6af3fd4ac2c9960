"""DICOM instances for tests, built from the attributed real X-rays in tests/fixtures/xrays."""

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

XRAYS = Path(__file__).parent / "fixtures" / "xrays"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def chest(*, study_uid=None, patient_id="PACS-001", issuer="", modality="DX", view="PA", body_part="CHEST",
          age="034Y", birth_date="", study_date="20261201", sop_class=DX_FOR_PRESENTATION,
          xray="adult-pneumonia-1.jpeg", name="Doe^Jane", size=256):
    """A DICOM instance with a real film's pixels (MONOCHROME2, 8-bit), its tags as given."""
    pixels = np.asarray(Image.open(XRAYS / xray).convert("L").resize((size, size)), dtype=np.uint8)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientSex = name, patient_id, "F"
    if issuer:
        ds.IssuerOfPatientID = issuer
    if age:
        ds.PatientAge = age
    if birth_date:
        ds.PatientBirthDate = birth_date
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study_date, "101500", "ACC1"
    ds.ReferringPhysicianName, ds.StudyID = "", "1"
    ds.Modality = modality
    if view:
        ds.ViewPosition = view
    if body_part:
        ds.BodyPartExamined = body_part
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    return ds


def to_bytes(dataset):
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart_related(*parts, boundary="pneumoweb-test-boundary", part_type="application/dicom"):
    """(body, Content-Type) of a STOW-RS request holding ``parts`` (bytes)."""
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
