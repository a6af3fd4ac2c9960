"""Error handlers: JSON for API clients, the site's own pages for people; and the favicon's usual address."""

from django.http import JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.views.decorators.http import require_safe
from django.views.defaults import bad_request as default_bad_request
from django.views.defaults import page_not_found, permission_denied, server_error

from .middleware import wants_json


def not_found(request, exception=None):
    """404: JSON for API clients (under /api/, or asking for JSON), the styled templates/404.html for people."""
    if wants_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def server_error_view(request):
    """500: JSON for API clients, the static templates/500.html for people.

    Django has logged the exception (``django.request``) before it calls this, so nothing is logged here.
    The page is rendered without context processors: it must not need the database or the user.
    """
    if wants_json(request):
        return JsonResponse({"detail": "Server error: the request could not be completed. It has been logged; "
                                       "please try again later."}, status=500)
    return server_error(request)


def bad_request_view(request, exception=None):
    """400 raised outside a DRF view (a suspicious request, an unknown host, a body too large)."""
    if wants_json(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return default_bad_request(request, exception)


def permission_denied_view(request, exception=None):
    """403 raised outside a DRF view (``PermissionDenied`` in a page or in the admin)."""
    if wants_json(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return permission_denied(request, exception)


@require_safe
def favicon(request):
    """``/favicon.ico``, which browsers and tools ask for by themselves: the static icon (base.html links it too)."""
    return redirect(static("favicon.png"), permanent=True)
