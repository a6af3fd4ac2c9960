"""API answers that DRF has no class for."""

from rest_framework import status
from rest_framework.exceptions import APIException


class Conflict(APIException):
    """409: the request contradicts what is on record (e.g. an MRN given with another patient's name)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request contradicts the record."
    default_code = "conflict"
