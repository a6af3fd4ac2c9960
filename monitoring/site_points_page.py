"""The site operating points page: each population's proposal, its history, and how each point did in use.

Reviewers see it; only administrators apply, approve or revert (``diagnosis/site_points.py`` decides and
refuses; this page only shows and asks). An apply posts back the instant its figures were computed at,
so the point applied is the one whose figures the administrator confirmed: reviews made after the page
was shown do not count.
"""

from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from diagnosis import site_points
from diagnosis.models import Prediction, SiteOperatingPoint, confirmed_label
from diagnosis.permissions import can_monitor

from .summary import confusion_key, rate


def in_use(rows):
    """Recall and specificity (Wilson 95 %) of reviewed predictions against the reviewers' labels."""
    c = {"tp": 0, "fn": 0, "tn": 0, "fp": 0}
    for label, verdict, corrected in rows:
        truth = confirmed_label(label, verdict, corrected)
        if truth:
            c[confusion_key(label, truth)] += 1
    recall, specificity = rate(c["tp"], c["tp"] + c["fn"]), rate(c["tn"], c["tn"] + c["fp"])
    return {"recall": recall, "specificity": specificity, "figures": [recall, specificity], "reviewed": sum(c.values())}


def reviewed(**filters):
    return (Prediction.objects.filter(status=Prediction.Status.SUCCEEDED, **filters).exclude(review_verdict="")
            .values_list("label", "review_verdict", "review_label"))


def population_view(card, population):
    """What the page shows of one population: the proposal, and every point's figures in use, newest first."""
    proposal = site_points.propose(population)
    history = [{"point": None, "name": "the model card's operating point", "threshold": card.points[population].threshold,
                "in_use": in_use(reviewed(population=population, model_sha256=card.weights_sha256,
                                          site_point__isnull=True))}]
    for point in SiteOperatingPoint.objects.filter(population=population, model_sha256=card.weights_sha256) \
            .select_related("proposed_by", "approved_by", "ended_by").order_by("proposed_at"):
        history.append({"point": point, "name": point.described, "threshold": point.threshold,
                        "in_use": in_use(reviewed(site_point=point))})
    return {"population": population, "proposal": proposal, "lines": site_points.summary_lines(proposal.figures),
            "history": list(reversed(history))}


@login_required
@require_http_methods(["GET", "POST"])
def site_points_page(request):
    if not can_monitor(request.user):
        raise PermissionDenied
    return act(request) if request.method == "POST" else page(request)


def page(request, status=200):
    try:
        card = site_points.served_card()
    except site_points.CalibrationRefused as refused:
        return render(request, "monitoring/site_points.html", {"problem": str(refused)}, status=status)
    populations = [population_view(card, population) for population in card.points]
    return render(request, "monitoring/site_points.html", {
        "card": card, "populations": populations, "is_admin": request.user.is_superuser,
        "waiting": SiteOperatingPoint.objects.filter(status=SiteOperatingPoint.Status.PROPOSED,
                                                     model_sha256=card.weights_sha256)}, status=status)


def act(request):
    # Administrators only: a reviewer's POST is refused before anything is read.
    if not request.user.is_superuser:
        raise PermissionDenied
    action = request.POST.get("action")
    try:
        if action == "apply":
            if request.POST.get("confirm") != "yes":
                raise site_points.CalibrationRefused("Tick the box to confirm you have read the figures.")
            point = site_points.apply(request.POST.get("population", ""), by=request.user,
                                      now=shown_at(request.POST.get("evidence_until", "")))
            if point.status == SiteOperatingPoint.Status.ACTIVE:
                messages.success(request, f"The {point.population} point is now the {point.described}.")
            else:
                messages.success(request, f"Site point #{point.pk} waits for a second administrator's approval.")
        elif action == "approve":
            point = get_object_or_404(SiteOperatingPoint, pk=_pk(request.POST.get("point")))
            site_points.approve(point, by=request.user)
            messages.success(request, f"The {point.population} point is now the {point.described}.")
        elif action == "revert":
            population = request.POST.get("population", "")
            site_points.revert(population, by=request.user)
            messages.success(request, f"The {population} point is the model card's again.")
        else:
            raise site_points.CalibrationRefused("Unknown action.")
    except site_points.CalibrationRefused as refused:
        messages.error(request, str(refused))
        return page(request, status=400)
    return redirect("site_points")


def _pk(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise site_points.CalibrationRefused("Name the site point to approve.") from None


def shown_at(value):
    """The instant the confirmed figures were computed at (an ISO time from the page); never in the future."""
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise site_points.CalibrationRefused("The confirmation lost its time: load the page again.") from None
    if timezone.is_naive(instant):
        raise site_points.CalibrationRefused("The confirmation lost its time zone: load the page again.")
    return min(instant, timezone.now())
