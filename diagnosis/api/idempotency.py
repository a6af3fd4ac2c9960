"""``Idempotency-Key`` on the upload endpoints: a client that retries after a timeout gets the first answer.

Contract (POST /api/predict/ and /api/predict/batch/; the header is optional, 1–255 printable characters):

- the same key, user and request (path, fields and file bytes) → the first answer again, with
  ``Idempotent-Replayed: true``, and no new study;
- the same key with a different request → 422;
- the same key while the first request is still being handled → 409 (try again shortly);
- only an accepted request is remembered: one refused (4xx) or failed is forgotten at once, so the
  client may correct it and send it again with the same key;
- keys are remembered ``PNEUMOWEB_IDEMPOTENCY_TTL_HOURS`` (24 h by default); the reconciler deletes
  older ones (``IdempotentRequest.forget_expired``).

The claim is one INSERT on a unique (user, key) constraint: of concurrent requests with one key,
exactly one runs.
"""

import functools
import hashlib

from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response

from ..models import IdempotentRequest
from .exceptions import Conflict

HEADER = "Idempotency-Key"
PARAMETER = OpenApiParameter(
    HEADER, str, location=OpenApiParameter.HEADER, required=False,
    description="Retry safely: the same key with the same request gives the first answer again (no new study); "
                "with another request 422; while the first is still handled 409. Kept 24 h.")


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used for a different request."
    default_code = "idempotency_key_reused"


def fingerprint(request):
    """sha256 of the path, every field and every file's bytes, in a fixed order."""
    digest = hashlib.sha256(request.path.encode())
    data = request.data
    for name in sorted(data.keys()):
        values = data.getlist(name) if hasattr(data, "getlist") else [data[name]]
        for value in values:
            digest.update(b"\0" + name.encode() + b"=")
            if hasattr(value, "chunks"):
                value.seek(0)
                for chunk in value.chunks():
                    digest.update(chunk)
                value.seek(0)
            else:
                digest.update(str(value).encode())
    return digest.hexdigest()


def claim(user, key, path, print_):
    """(True, row) when this request is the key's first; (False, existing row) otherwise."""
    for _ in range(2):  # a second try after deleting an expired row
        try:
            with transaction.atomic():
                return True, IdempotentRequest.objects.create(user=user, key=key, path=path, fingerprint=print_)
        except IntegrityError:
            existing = IdempotentRequest.objects.filter(user=user, key=key).first()
            if existing is None:
                continue  # deleted in between (failed, or expired): claim it again
            if existing.created_at >= IdempotentRequest.expired_before():
                return False, existing
            IdempotentRequest.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
    raise Conflict("A request with this Idempotency-Key is being handled; try again shortly.")


def idempotent(post):
    """Wrap an APIView's ``post`` with the contract above."""

    @functools.wraps(post)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return post(view, request, *args, **kwargs)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise ValidationError({HEADER: ["Give 1 to 255 printable characters."]})
        print_ = fingerprint(request)
        first, record = claim(request.user, key, request.path, print_)
        if not first:
            if (record.path, record.fingerprint) != (request.path, print_):
                raise KeyReused()
            if record.status_code is None:
                raise Conflict("A request with this Idempotency-Key is still being handled; try again shortly.")
            headers = {"Idempotent-Replayed": "true", **({"Location": record.location} if record.location else {})}
            return Response(record.response, status=record.status_code, headers=headers)
        try:
            response = post(view, request, *args, **kwargs)
        except BaseException:
            record.delete()  # refused or failed: the key may be used again for the corrected request
            raise
        if response.status_code >= 300:
            record.delete()
            return response
        IdempotentRequest.objects.filter(pk=record.pk).update(
            status_code=response.status_code, response=response.data, location=response.get("Location", ""))
        return response

    return wrapper
