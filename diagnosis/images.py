"""Validation of uploaded X-ray files, shared by the upload form and the API."""

import hashlib
import io
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.template.defaultfilters import filesizeformat

from ml.decode import SNIFF_BYTES, ImageDecodeError, decode_with_tags, sniff_format

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}
# DICOM ViewPosition values → the study's view.
DICOM_VIEWS = {"PA": "PA", "AP": "AP", "LL": "LAT", "RL": "LAT", "LATERAL": "LAT", "LAT": "LAT"}


class CheckedImage:
    """An upload that decoded cleanly, with what the record keeps about it.

    A DICOM upload is stored as the derived 8-bit PNG, never as the DICOM file: its
    identifying tags (name, ids, dates, institution) stay out of the media store.
    ``dicom`` holds the few tags the record uses (age, sex, view, modality).
    """

    def __init__(self, upload, image, info):
        self.upload = upload
        self.image = image
        self.source_format = info.format
        self.dicom = dicom = info.dicom
        self.width, self.height = image.size
        if dicom is not None:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            self.file = ContentFile(buffer.getvalue())
            self.format = "PNG"
        else:
            self.file = upload
            self.format = info.format
        self.file.seek(0)
        self.sha256 = hashlib.file_digest(self.file, "sha256").hexdigest()
        self.file.seek(0)

    @property
    def extension(self):
        return EXTENSIONS[self.format]


def check_upload(upload):
    """Return a :class:`CheckedImage` or raise ``ValidationError`` with a message for people."""
    if upload is None:
        raise ValidationError("No image file was submitted.", code="required")
    limit = settings.PNEUMOWEB_MAX_UPLOAD_BYTES
    if upload.size == 0:
        raise ValidationError("The submitted file is empty.", code="empty")
    if upload.size > limit:
        raise ValidationError(
            f"Image file is {filesizeformat(upload.size)}; the limit is {filesizeformat(limit)}.", code="too_large"
        )
    upload.seek(0)
    try:
        sniff_format(upload.read(SNIFF_BYTES))
        upload.seek(0)
        image, info = decode_with_tags(
            upload,
            max_pixels=settings.PNEUMOWEB_MAX_IMAGE_PIXELS,
            min_side=settings.PNEUMOWEB_MIN_IMAGE_SIDE,
        )
    except ImageDecodeError as exc:
        raise ValidationError(str(exc), code="invalid_image") from exc
    return CheckedImage(upload, image, info)


def study_fields(checked, *, age, view):
    """(age, view, notes) for a study: a typed age and the chosen view win over the DICOM's tags.

    The age may be left out only when the DICOM file records one. Disagreements between
    what was typed and what the file says become notes shown with the study.
    """
    dicom = checked.dicom
    notes = []
    if dicom is None:
        if age is None:
            raise ValidationError({"age": "Enter the age at acquisition."})
        return age, view, notes
    notes.append(f"Read from a DICOM file ({dicom.modality or 'modality not recorded'}); "
                 "stored as a de-identified PNG.")
    notes.extend(dicom.notes)
    if age is None:
        if dicom.age_years is None:
            raise ValidationError({"age": "Enter the age at acquisition: this DICOM file records none."})
        age = Decimal(str(dicom.age_years))
        notes.append(f"Age {age} years taken from the DICOM PatientAge.")
    elif dicom.age_years is not None and abs(float(age) - dicom.age_years) >= 0.5:
        notes.append(f"Age typed ({age} years) differs from the DICOM PatientAge ({dicom.age_years} years); "
                     "the typed age is used.")
    dicom_view = DICOM_VIEWS.get(dicom.view_position)
    if dicom_view == "LAT" and view != "LAT":
        # A lateral film is a fact about the image, whatever the form's default said.
        notes.append(f"The DICOM ViewPosition ({dicom.view_position}) is lateral: the study is recorded as lateral.")
        view = "LAT"
    elif dicom.view_position and dicom_view != view:
        notes.append(f"The DICOM ViewPosition is {dicom.view_position}; the view given ({view}) is used.")
    return age, view, notes


def check_each(uploads, *, age, view):
    """Check several uploads for one patient, each on its own: (accepted, refused).

    accepted: [(CheckedImage, age, view, notes)] ready for ``submit_study``; refused: [(file name,
    [messages])]. One bad file never refuses the others.
    """
    accepted, refused = [], []
    for upload in uploads:
        name = getattr(upload, "name", "") or "file"
        try:
            checked = check_upload(upload)
            accepted.append((checked, *study_fields(checked, age=age, view=view)))
        except ValidationError as exc:
            refused.append((name, exc.messages))
    return accepted, refused
