"""DICOM ingest in ml.dicom / ml.preprocessing, on DICOM files built from the real X-rays."""

import numpy as np
import pytest

from ml.decode import ImageDecodeError, decode_image, decode_with_tags, sniff_format
from ml.dicom import parse_age

from ..dicoms import bundled, make_dicom, xray_pixels


def mean_abs_difference(image, reference):
    return float(np.abs(np.asarray(image, dtype=np.float64) - reference.astype(np.float64)).mean())


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("monochrome1", [False, True])
def test_it_reads_the_same_picture_from_8_and_16_bit_monochrome1_and_2(bits, monochrome1):
    image, info = decode_with_tags(make_dicom(bits=bits, monochrome1=monochrome1))
    tags = info.dicom
    reference = xray_pixels()
    assert image.mode == "L" and image.size == (reference.shape[1], reference.shape[0])
    # MONOCHROME1 is inverted back; 12-bit values are rescaled to 8 bits.
    assert mean_abs_difference(image, (reference - reference.min()) * 255.0 / np.ptp(reference)) < 1.0
    assert tags.modality == "DX" and tags.age_years == 4 and tags.sex == "F" and tags.view_position == "PA"


def test_it_applies_the_window():
    reference = xray_pixels().astype(np.float64) * 16 + 7
    image = decode_image(make_dicom(bits=16, window=(1200, 800)))
    # Values below 800 go black and above 1600 white; the window stretches what is between.
    pixels = np.asarray(image)
    assert pixels[reference <= 790].max() == 0 and pixels[reference >= 1610].min() == 255
    inside = (reference > 900) & (reference < 1500)
    assert np.corrcoef(pixels[inside], reference[inside])[0, 1] > 0.99


def test_it_decodes_rle_compressed_pixel_data():
    assert mean_abs_difference(decode_image(make_dicom(rle=True)), np.asarray(decode_image(make_dicom()))) == 0


def test_it_reads_no_age_when_the_file_has_none():
    tags = decode_with_tags(make_dicom(age=None, sex=None))[1].dicom
    assert tags.age_years is None and tags.sex == ""


@pytest.mark.parametrize("value, years", [("045Y", 45), ("006M", 0.5), ("002W", 0.04), ("010D", 0.03),
                                          ("45", None), ("", None), (None, None), ("0x5Y", None)])
def test_it_parses_dicom_age_strings(value, years):
    assert parse_age(value) == years


@pytest.mark.parametrize("name, what", [("CT_small.dcm", "a CT scan"), ("MR_small.dcm", "an MR scan")])
def test_it_refuses_ct_and_mr(name, what):
    with pytest.raises(ImageDecodeError, match=f"{what}, not a radiograph"):
        decode_image(bundled(name))


def test_it_refuses_a_dicom_without_pixel_data():
    with pytest.raises(ImageDecodeError, match="not a radiograph|no image"):
        decode_image(bundled("rtplan.dcm"))


def test_it_refuses_a_truncated_dicom():
    with pytest.raises(ImageDecodeError):
        decode_image(make_dicom()[:2000])


def test_it_refuses_a_dicom_over_the_pixel_limit_before_decoding():
    with pytest.raises(ImageDecodeError, match="the limit is 1,000 pixels"):
        decode_image(make_dicom(), max_pixels=1000)


def test_it_sniffs_dicom_from_the_content():
    assert sniff_format(make_dicom()[:132]) == "DICOM"
    with pytest.raises(ImageDecodeError, match="JPEG, PNG or DICOM"):
        sniff_format(b"\0" * 128 + b"DICX")


@pytest.mark.parametrize("width", ["0", "-5", "0.5"])
def test_it_shows_the_full_range_when_the_window_is_invalid(width):
    from ..dicoms import edited

    image, info = decode_with_tags(edited(make_dicom(bits=16), WindowCenter="1000", WindowWidth=width))
    plain = decode_image(make_dicom(bits=16))
    assert mean_abs_difference(image, np.asarray(plain)) == 0
    assert any("window" in note for note in info.dicom.notes)


def test_it_refuses_a_frame_count_that_is_not_a_number():
    from ..dicoms import edited

    with pytest.raises(ImageDecodeError, match="NumberOfFrames tag is not a whole number"):
        decode_image(edited(make_dicom(), NumberOfFrames="abc"))


@pytest.mark.parametrize("value", ["150Y", "121Y"])
def test_it_ignores_a_dicom_age_over_120_years_and_says_so(value):
    from ..dicoms import edited

    info = decode_with_tags(edited(make_dicom(), PatientAge=value))[1]
    assert info.dicom.age_years is None
    assert any(f"PatientAge ({value}) is not a valid age" in note for note in info.dicom.notes)


def test_it_answers_every_malformed_file_with_an_image_or_a_message():
    from ..dicoms import mutations

    cases = mutations()
    assert len(cases) >= 40
    outcomes = {}
    for name, data in cases:
        try:
            image, _ = decode_with_tags(data)
        except ImageDecodeError as exc:
            assert str(exc) and "Traceback" not in str(exc), name
            outcomes[name] = "refused"
        else:  # anything else escaping would be a server error
            assert image.mode == "L" and min(image.size) >= 1, name
            outcomes[name] = "read"
    assert "refused" in outcomes.values() and "read" in outcomes.values()
