"""Validation of uploaded X-ray files, shared by the upload form and the API."""

import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat

from ml.preprocessing import ImageDecodeError, decode_image, sniff_format

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}


class CheckedImage:
    """An upload that decoded cleanly, with what the record keeps about it."""

    def __init__(self, upload, image, image_format):
        self.upload = upload
        self.image = image
        self.format = image_format
        self.width, self.height = image.size
        upload.seek(0)
        self.sha256 = hashlib.file_digest(upload, "sha256").hexdigest()
        upload.seek(0)

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
        image_format = sniff_format(upload.read(8))
        upload.seek(0)
        image = decode_image(
            upload,
            max_pixels=settings.PNEUMOWEB_MAX_IMAGE_PIXELS,
            min_side=settings.PNEUMOWEB_MIN_IMAGE_SIDE,
        )
    except ImageDecodeError as exc:
        raise ValidationError(str(exc), code="invalid_image") from exc
    return CheckedImage(upload, image, image_format)

