"""Request bodies sent with ``Transfer-Encoding: chunked`` (no Content-Length), read whole. A WSGI wrapper.

gunicorn de-chunks such a body into ``wsgi.input`` but sets no CONTENT_LENGTH, and Django reads a
body only up to CONTENT_LENGTH (0 when missing): the body looked empty. Orthanc's DICOMweb client
sends STOW-RS that way by default (``ChunkedTransfers: true``), as does ``dicomweb-client`` and any
client that streams a file. This wrapper reads such a body up to ``limit`` bytes, then hands Django a
request with the length set; a longer one is answered 413 here, with the limit, before Django reads it
(a body with a Content-Length over the limit gets the same answer from the views: Django's own
``DATA_UPLOAD_MAX_MEMORY_SIZE`` check).
"""

import io
import json


def too_large_message(limit):
    return (f"The request body is larger than this server accepts ({limit:,} bytes); "
            "send fewer or smaller files per request.")


def read_chunked_bodies(app, limit):
    """``app`` with chunked request bodies read into memory (at most ``limit`` bytes)."""

    def wrapped(environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                payload = json.dumps({"detail": too_large_message(limit)}).encode()
                start_response("413 Request Entity Too Large", [
                    ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                    ("Connection", "close")])  # the rest of the body is not read: the connection cannot be reused
                return [payload]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return wrapped
