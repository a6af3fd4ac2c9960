"""Validation of uploaded X-ray files, shared by the upload form and the API."""

import hashlib
import io
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

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


AGE_TOLERANCE_YEARS = Decimal(1)  # a typed age may differ this much from the birth date's (late entry, rounding)


def age_on(date_of_birth, day):
    """Age in whole days / 365.25, in years with two decimals, on ``day``."""
    return Decimal(str(round((day - date_of_birth).days / 365.25, 2)))


def study_fields(checked, *, age, view, date_of_birth=None):
    """(age, view, notes) for a study: the age typed, else the patient's birth date on record, else the DICOM's.

    With a birth date on record, a typed age more than a year away from it is refused (one of them
    is wrong); a DICOM PatientAge that contradicts it is noted and the record wins (headers are often
    wrong). With no age at all the study is accepted: the worker uses the most sensitive operating
    point and warns. The study date is the DICOM StudyDate where there is one, else today. The chosen
    view wins over the DICOM's, except that a lateral film stays lateral. Disagreements become notes.
    """
    dicom = checked.dicom
    notes = []
    study_day = (dicom.study_date if dicom is not None else None) or timezone.localdate()
    from_birth = age_on(date_of_birth, study_day) if date_of_birth and date_of_birth <= study_day else None
    if age is not None and from_birth is not None and abs(age - from_birth) > AGE_TOLERANCE_YEARS:
        raise ValidationError({"age": f"Age {age} years contradicts the birth date on record ({date_of_birth}: "
                                      f"{from_birth} years on {study_day}). Correct the age or the patient record."})
    if dicom is not None:
        notes.append(f"Read from a DICOM file ({dicom.modality or 'modality not recorded'}); "
                     "stored as a de-identified PNG.")
        notes.extend(dicom.notes)
    dicom_age = dicom.age_years if dicom is not None else None
    if age is None and from_birth is not None:
        age = from_birth
        notes.append(f"Age {age} years from the birth date on record ({date_of_birth}) on {study_day}.")
        if dicom_age is not None and abs(float(age) - dicom_age) > AGE_TOLERANCE_YEARS:
            notes.append(f"The DICOM PatientAge ({dicom_age} years) contradicts the birth date on record; "
                         "the record's age is used.")
    elif age is None and dicom_age is not None:
        age = Decimal(str(dicom_age))
        notes.append(f"Age {age} years taken from the DICOM PatientAge.")
    elif age is None:
        # Never contradict the record: a birth date on record after the study day (one kept from before
        # impossible dates were refused) is named, not denied.
        why = (f"the birth date on record ({date_of_birth}) is after the study day ({study_day})" if date_of_birth
               else "none typed, none in the file and no birth date on record")
        notes.append(f"No age: {why}. The most sensitive operating point is used; give the age for the point "
                     "validated on the patient's population.")
    elif dicom_age is not None and abs(float(age) - dicom_age) >= 0.5:
        notes.append(f"Age typed ({age} years) differs from the DICOM PatientAge ({dicom_age} years); "
                     "the typed age is used.")
    if dicom is not None:
        dicom_view = DICOM_VIEWS.get(dicom.view_position)
        if dicom_view == "LAT" and view != "LAT":
            # A lateral film is a fact about the image, whatever the form's default said.
            notes.append(f"The DICOM ViewPosition ({dicom.view_position}) is lateral: the study is recorded as lateral.")
            view = "LAT"
        elif dicom.view_position and dicom_view != view:
            notes.append(f"The DICOM ViewPosition is {dicom.view_position}; the view given ({view}) is used.")
    return age, view, notes


def check_each(uploads, *, age, view, date_of_birth=None):
    """Check several uploads for one patient, each on its own: (accepted, refused).

    accepted: [(CheckedImage, age, view, notes)] ready for ``submit_study``; refused: [(file name,
    [messages])]. One bad file never refuses the others.
    """
    accepted, refused = [], []
    for upload in uploads:
        name = getattr(upload, "name", "") or "file"
        try:
            checked = check_upload(upload)
            accepted.append((checked, *study_fields(checked, age=age, view=view, date_of_birth=date_of_birth)))
        except ValidationError as exc:
            refused.append((name, exc.messages))
    return accepted, refused
