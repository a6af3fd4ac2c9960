"""The monitoring page and its chart (reviewers and administrators)."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from accounts import sender_tokens
from core import charts
from diagnosis.media import private
from diagnosis.models import Prediction
from diagnosis.permissions import can_monitor

from .filters import MonitoringFilter
from .summary import monitor

CELLS = ("refusal_rate", "reviewed_fraction", "agreement", "sensitivity", "specificity", "ppv", "npv")


@login_required
def monitoring(request):
    """Performance in use per model version and population."""
    if not can_monitor(request.user):
        raise PermissionDenied
    filters = MonitoringFilter(request.GET, queryset=Prediction.objects.all())
    groups = monitor(filters.qs) if filters.is_valid() else []
    query = request.GET.urlencode()
    for group in groups:
        group["cells"] = [group[key] for key in CELLS]
        group["chart"] = "?" + urlencode({**request.GET.dict(), "model": group["model"]["name"],
                                          "sha": group["model"]["weights_sha256"],
                                          "population": group["population"] or ""})
    return render(request, "monitoring/monitoring.html", {"filters": filters, "groups": groups, "query": query,
                                                          "sender_tokens": sender_tokens.ending_soon()})


@login_required
def monitoring_chart(request):
    if not can_monitor(request.user):
        raise PermissionDenied
    filters = MonitoringFilter({k: v for k, v in request.GET.items() if k not in ("sha", "population")},
                               queryset=Prediction.objects.all())
    if not filters.is_valid():
        return HttpResponseBadRequest("Invalid filters.")
    # One group exactly: its version and its population ("" for a model without populations).
    rows = filters.qs.filter(model_sha256=request.GET.get("sha", ""), population=request.GET.get("population", ""))
    groups = monitor(rows)
    if not groups:
        raise Http404("No predictions of this model version and population in the period.")
    group = groups[0]
    title = f"{group['model']['name']} · {group['population'] or 'single operating point'}"
    return private(HttpResponse(charts.distribution_png(group["probability_histogram"], title), content_type="image/png"))
