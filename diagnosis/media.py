"""Serving stored X-rays: only through views that have already checked ownership."""

import io
import mimetypes

from django.http import FileResponse, Http404, HttpResponse
from django.views.decorators.cache import patch_cache_control

from ml.decode import decode_image

from .models import Prediction

THUMBNAIL_SIZE = (160, 160)


def heatmap_response(prediction, branch):
    """One of a prediction's heatmap PNGs (``combined``, ``cnn`` or ``vit``); 404 when there is none."""
    field = Prediction.HEATMAP_BRANCHES.get(branch)
    stored = getattr(prediction, field) if field else None
    if not stored:
        raise Http404("This prediction has no such heatmap.")
    try:
        response = FileResponse(stored.open("rb"), content_type="image/png")
    except FileNotFoundError:
        raise Http404("The heatmap file is missing.") from None
    return private(response)


def private(response):
    # Patient images must not be kept by any cache (PrivateResponses says so too, for every response).
    patch_cache_control(response, private=True, no_store=True)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def image_response(study, *, thumbnail=False):
    try:
        fh = study.image.open("rb")
    except FileNotFoundError:
        raise Http404("The image file is missing.") from None
    if thumbnail:
        with fh:
            # Validated at upload; a JPEG decodes at reduced scale, which the worklist needs many of.
            image = decode_image(fh, max_pixels=10**9, min_side=1, draft_size=THUMBNAIL_SIZE)
        image.thumbnail(THUMBNAIL_SIZE)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        response = HttpResponse(buffer.getvalue(), content_type="image/png")
    else:
        content_type = mimetypes.guess_type(study.image.name)[0] or "application/octet-stream"
        response = FileResponse(fh, content_type=content_type)
    return private(response)
