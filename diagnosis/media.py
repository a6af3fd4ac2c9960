"""Serving stored files — X-rays, thumbnails, heatmaps, report PDFs — only through views that have checked ownership.

Every file is opened through ``integrity.open_verified``: a missing file is a 404, and a file that
is not the one stored is never served — ``StoredFileChanged`` (logged and audited where it was
found) becomes a 409 with a message that names no path or digest (:class:`AnswerChangedFiles`,
one place for pages and the API alike, and for reports drawn from a changed X-ray or heatmap).
"""

import io
import mimetypes

from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import patch_cache_control

from core.middleware import wants_json
from ml.decode import decode_image

from .integrity import StoredFileChanged, open_verified
from .models import Prediction

THUMBNAIL_SIZE = (160, 160)


def heatmap_response(prediction, branch):
    """One of a prediction's heatmap PNGs (``combined``, ``cnn`` or ``vit``); 404 when there is none."""
    field = Prediction.HEATMAP_BRANCHES.get(branch)
    if not field or not getattr(prediction, field):
        raise Http404("This prediction has no such heatmap.")
    return private(FileResponse(open_stored(prediction, field, missing="The heatmap file is missing."),
                                content_type="image/png"))


def pdf_response(report):
    """A report version's PDF, as a download."""
    return private(FileResponse(open_stored(report, "pdf", missing="The report file is missing."),
                                content_type="application/pdf",
                                filename=f"pneumoweb-prediction-{report.prediction_id}-v{report.version}.pdf"))


def private(response):
    # Patient images must not be kept by any cache (PrivateResponses says so too, for every response).
    patch_cache_control(response, private=True, no_store=True)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def image_response(study, *, thumbnail=False):
    fh = open_stored(study, "image", missing="The image file is missing.")
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


def open_stored(instance, field_name, *, missing):
    """The checked file, open; 404 with ``missing`` when it is gone (a changed one raises StoredFileChanged)."""
    try:
        return open_verified(instance, field_name)
    except FileNotFoundError:
        raise Http404(missing) from None


class AnswerChangedFiles:
    """409 for a request that met a stored file which failed its integrity check: JSON for API clients, a page for people.

    409 Conflict, not 500: the request was fine and nothing is broken in the code; what is on disk
    contradicts the record. Retrying will not help until an administrator has restored the file.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, StoredFileChanged):
            return None
        return changed_file_response(request)


def changed_file_response(request):
    message = StoredFileChanged.MESSAGE
    if wants_json(request):
        return private(JsonResponse({"detail": message}, status=409))
    return private(render(request, "409.html", {"message": message}, status=409))
