"""Request/response rules that hold for every page and endpoint."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control

log = logging.getLogger(__name__)


class RefuseUndecodableHeaders:
    """400 for a request header whose bytes are not UTF-8 (401 when it is ``Authorization``).

    WSGI hands header values over as Latin-1 text, so any byte arrives; knox decodes the token as
    UTF-8 unguarded and answered such a header with a 500 (the security probe found it). Checking
    every header here, before any authentication class or view reads one, keeps the answer a
    client error on every path. Plain ASCII, which every browser and client sends, always passes.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for key, value in request.META.items():
            if not key.startswith("HTTP_") or not isinstance(value, str) or value.isascii():
                continue
            try:
                value.encode("latin-1").decode("utf-8")
            except UnicodeError:
                name = key[5:].replace("_", "-").title()
                response = bad_request(request, f"The {name} header is not valid UTF-8 text.")
                if key == "HTTP_AUTHORIZATION":
                    response.status_code = 401
                    response["WWW-Authenticate"] = "Token"
                return response
        return self.get_response(request)


class RefuseNulCharacters:
    """400 for a NUL character in the path or the query string.

    No text this application stores or searches may hold one, and PostgreSQL refuses it in a
    query with a server error; refusing it here covers every view, filter and search at once.
    (Form and serializer fields already refuse it in a body: Django's and DRF's CharFields do.)
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query.lower() or "\x00" in query:
            return bad_request(request, "The request contains a NUL character, which no field accepts.")
        return self.get_response(request)


class RefuseRepeatedApiParameters:
    """400 for an API query parameter given twice (``?page=1&page=x``).

    Every API parameter takes one value; Django's QueryDict would silently use the last one, so a
    client could believe it filtered by the first. Refusing covers pagination, filters and search at
    once (schemathesis found ``page`` repeated answered 200).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            repeated = sorted(name for name, values in request.GET.lists() if len(values) > 1)
            if repeated:
                return bad_request(request, f"Give each query parameter once: {', '.join(repeated)}.")
        return self.get_response(request)


def wants_json(request):
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def bad_request(request, message):
    if wants_json(request):
        return JsonResponse({"detail": message}, status=400)
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


class PrivateResponses:
    """``Cache-Control: no-store`` on every dynamic response: pages, API answers and images hold patient data."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        patch_cache_control(response, no_store=True, private=True)
        return response


class DatabaseUnavailable:
    """503 with Retry-After, not 500, while the database cannot be reached: the request can be repeated."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, DATABASE_ERRORS):
            return None
        return database_unavailable(request, exception)


# What a database that cannot be reached raises; a middleware that reads the database itself (the
# session, the user) answers them with database_unavailable too: process_exception sees only views'.
DATABASE_ERRORS = (OperationalError, InterfaceError)


def database_unavailable(request, exception):
    log.error("Database unavailable for %s %s: %s", request.method, request.path, exception)
    message = "The service is briefly unavailable (database). Nothing was saved; please try again shortly."
    if wants_json(request):
        response = JsonResponse({"detail": message}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = "30"
    return response
