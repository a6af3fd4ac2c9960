"""Real DICOM files built with pydicom from the fixture X-rays (and pydicom's bundled CT/MR files)."""

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from .factories import XRAYS

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
IDENTIFYING = {"PatientName": "Doe^Jane", "PatientID": "HOSP-123456", "PatientBirthDate": "20200101",
               "InstitutionName": "St Example", "ReferringPhysicianName": "House^Gregory"}


def xray_pixels(name="pneumonia-1.jpeg"):
    return np.asarray(Image.open(XRAYS / name).convert("L"))


def make_dicom(name="pneumonia-1.jpeg", *, bits=16, monochrome1=False, age="004Y", sex="F", modality="DX",
               view="PA", window=None, rle=False, pixels=None):
    """DICOM Part 10 bytes of a fixture X-ray: 8- or 16-bit (12 stored), MONOCHROME1/2, optional RLE."""
    gray = xray_pixels(name) if pixels is None else pixels
    if bits == 16:
        stored = gray.astype(np.uint16) * 16 + 7  # 12-bit range, as a DX detector writes
    else:
        stored = gray.astype(np.uint8)
    if monochrome1:
        stored = stored.max() + stored.min() - stored  # the same picture, lowest value = white
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for keyword, value in IDENTIFYING.items():
        setattr(ds, keyword, value)
    if modality is not None:
        ds.Modality = modality
    if age is not None:
        ds.PatientAge = age
    if sex is not None:
        ds.PatientSex = sex
    if view is not None:
        ds.ViewPosition = view
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.tobytes()
    if rle:
        ds.compress(RLELossless, stored)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def bundled(name):
    """A test file that ships inside pydicom (CT_small.dcm, MR_small.dcm, rtplan.dcm)."""
    from pydicom.data import get_testdata_file

    return open(get_testdata_file(name, download=False), "rb").read()


def edited(data, **tags):
    """The DICOM ``data`` with tags set to raw values (written as-is: malformed ones included)."""
    import pydicom
    from pydicom import config

    ds = pydicom.dcmread(io.BytesIO(data))
    before = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.settings.writing_validation_mode = config.IGNORE
    try:
        for keyword, value in tags.items():
            if value is None:
                delattr(ds, keyword)
                continue
            try:
                setattr(ds, keyword, value)
            except ValueError:  # not a value of the tag's VR: written as text, as a broken writer would
                from pydicom.datadict import tag_for_keyword

                ds.add_new(tag_for_keyword(keyword), "LO", str(value))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = before
    return buffer.getvalue()


def mutations(seed=0):
    """(name, bytes) of malformed DICOM files: bad tag values, truncations and flipped bytes."""
    import random

    base = make_dicom(bits=16)
    out = []
    for keyword, values in {
        "WindowWidth": ["0", "-5", "0.5", "abc", ""],
        "WindowCenter": ["abc", "1e400", "nan"],
        "NumberOfFrames": ["abc", "0", "-1", "2"],
        "Rows": [0, 1, 65535],
        "Columns": [0, 3],
        "BitsAllocated": [0, 7, 64],
        "BitsStored": [0, 17],
        "PixelRepresentation": [2],
        "SamplesPerPixel": [0, 3],
        "PhotometricInterpretation": ["", "PALETTE COLOR", "YBR_FULL"],
        "RescaleSlope": ["abc", "0", "1e308"],
        "RescaleIntercept": ["nan"],
        "PatientAge": ["150Y", "999D", "12", "abcd"],
        "Modality": ["", "XX"],
    }.items():
        for value in values:
            try:
                out.append((f"{keyword}={value!r}", edited(base, **{keyword: value})))
            except Exception:  # noqa: BLE001 - pydicom refuses to write some values: nothing to test then
                continue
    rng = random.Random(seed)
    for cut in (140, 200, 400, len(base) // 2, len(base) - 10):
        out.append((f"truncated at {cut}", base[:cut]))
    for i in range(10):
        corrupt = bytearray(base)
        for _ in range(8):
            corrupt[rng.randrange(132, 600)] = rng.randrange(256)
        out.append((f"header bytes flipped #{i}", bytes(corrupt)))
    return out
