"""This site's own operating points: refit on its reviewed studies, applied, audited, reverted. No torch.

Contract
- ``propose(population)``: the refit (``ml.site_calibration``) of the served model's point for that
  population on **evidence**: succeeded predictions of these weights and this population that a
  reviewer confirmed (agree: the label stands; disagree: the corrected label), reviewed before now.
  Refused studies have no label and are not evidence. Returns a :class:`Proposal` whose ``figures``
  say how many reviews came from the random review sample (drawn at upload, ``services.drawn_for_review``)
  and what the others may bias. Nothing is written.
- ``apply(population, by=)``: an administrator turns the proposal into a point. Refused
  (:class:`CalibrationRefused`, a sentence for people) when the proposal is. With the two-person rule
  (``PNEUMOWEB_ERASURE_TWO_PERSON``, the setting erasure uses) the point waits for ``approve()`` by
  another administrator; the figures approved are those proposed (reviews after the proposal do not
  count). Otherwise it is active at once and the previous site point, if any, is superseded.
- ``revert(population, by=)``: the active site point ends (and a proposal waiting, if any, is
  withdrawn); the model card's point serves again.
- ``active_points(sha256)`` / ``overrides(card_points, active)``: what the worker passes to
  ``Predictor.assess_batch`` (diagnosis/jobs/predictor.py). A prediction records the point it used
  (``Prediction.site_point``) and never changes afterwards.

Every change is one transaction and on the audit trail (the model is registered in diagnosis/apps.py).
"""

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from auditlog.context import set_actor
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ml import site_calibration
from ml.card import ModelCard, card_path

from .models import Prediction, SiteOperatingPoint, confirmed_label

BIAS = ("Reviews outside the random sample were chosen by reviewers, who open flagged and borderline studies first: "
        "they over-represent studies near the threshold, so recall and specificity measured on them can be lower, "
        "and the refit threshold can sit elsewhere, than on all studies.")


class CalibrationRefused(Exception):
    """Why a site point cannot be proposed, applied, approved or reverted now; the message is for people."""


@dataclass
class Proposal:
    population: str
    model_name: str
    model_sha256: str
    evidence_until: object  # datetime
    figures: dict  # ml.site_calibration.Proposal.to_dict() and the counts of where the reviews came from
    card_threshold: float

    @property
    def refused(self):
        return bool(self.figures["refusals"])


@lru_cache(maxsize=4)
def _read_card(path, mtime):
    return ModelCard.read(path)


def read_served_card():
    """The served checkpoint's ``ml.card.ModelCard``, read once per version of the file (monitoring reads it
    too). Raises what ``ModelCard.read`` raises: FileNotFoundError, OSError, ValueError."""
    path = card_path(settings.PNEUMOWEB_MODEL_PATH)
    return _read_card(str(path), path.stat().st_mtime)


def served_card():
    """The served checkpoint's model card; CalibrationRefused when there is none, or none to refit."""
    path = card_path(settings.PNEUMOWEB_MODEL_PATH)
    try:
        card = read_served_card()
    except FileNotFoundError:
        raise CalibrationRefused(f"The served model has no card at {path}: there is no operating point to refit.") from None
    except (OSError, ValueError) as exc:
        raise CalibrationRefused(f"The served model's card {path} cannot be read: {exc}") from None
    if not card.weights_sha256:
        raise CalibrationRefused("The served model's card names no weights: an untrained model has no point to refit.")
    return card


def card_point(card, population):
    try:
        return card.points[population]
    except KeyError:
        raise CalibrationRefused(f"Unknown population {population!r}: the served model's points are "
                                 f"{', '.join(card.points)}.") from None


def active_points(model_sha256):
    """{population: the active SiteOperatingPoint} of these weights."""
    return {point.population: point for point in SiteOperatingPoint.objects.filter(
        model_sha256=model_sha256, status=SiteOperatingPoint.Status.ACTIVE)}


def overrides(card_points, active):
    """The card's ``ml.populations.OperatingPoint`` of each population with an active site point, with the
    site's threshold and band (temperature and age band stay the card's)."""
    return {population: dataclasses.replace(card_points[population], threshold=site.threshold,
                                            band=(site.band_low, site.band_high))
            for population, site in active.items() if population in card_points}


def evidence(population, model_sha256, until):
    """(patients, truth, probabilities, from the random sample) of the reviewed studies, reviewed before ``until``."""
    rows = (Prediction.objects.filter(status=Prediction.Status.SUCCEEDED, population=population,
                                      model_sha256=model_sha256, probability__isnull=False, reviewed_at__lt=until)
            .exclude(review_verdict="")
            .values_list("study__patient_id", "label", "review_verdict", "review_label", "probability", "review_sample"))
    patients, truth, probabilities, sampled = [], [], [], []
    for patient, label, verdict, corrected, probability, in_sample in rows:
        confirmed = confirmed_label(label, verdict, corrected)
        if not confirmed:
            continue
        patients.append(patient)
        truth.append(int(confirmed == Prediction.Label.PNEUMONIA))
        probabilities.append(probability)
        sampled.append(in_sample)
    return patients, truth, probabilities, sampled


def propose(population, *, now=None):
    """The refit proposal for ``population`` of the served model (nothing written)."""
    card = served_card()
    point = card_point(card, population)
    now = now or timezone.now()
    active = active_points(card.weights_sha256).get(population)
    patients, truth, probabilities, sampled = evidence(population, card.weights_sha256, now)
    refit = site_calibration.propose(
        patients, truth, probabilities, population=population, min_recall=point.min_recall or 0.98,
        current_threshold=active.threshold if active else point.threshold,
        min_per_class=settings.PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS,
        max_shortfall=settings.PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL)
    from_sample = sum(sampled)
    figures = {
        **refit.to_dict(),
        "current_is": active.described if active else "the model card's operating point",
        "card_threshold": point.threshold,
        "reviewed_films_from_random_sample": from_sample,
        "reviewed_films_chosen_by_reviewers": len(sampled) - from_sample,
        "bias": BIAS if len(sampled) > from_sample else "Every review came from the random sample.",
        "min_per_class": settings.PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS,
        "max_shortfall": settings.PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL,
    }
    return Proposal(population, card.name, card.weights_sha256, now, figures, point.threshold)


def require_administrator(user):
    if not (user and user.is_active and user.is_superuser):
        raise CalibrationRefused("Only an administrator may change this site's operating points.")


def apply(population, *, by, now=None):
    """Make the proposal a site point (active, or waiting for approval under the two-person rule); returns it."""
    require_administrator(by)
    proposal = propose(population, now=now)
    if proposal.refused:
        raise CalibrationRefused(" ".join(proposal.figures["refusals"]))
    figures = proposal.figures
    point = SiteOperatingPoint(
        population=population, model_name=proposal.model_name or "", model_sha256=proposal.model_sha256,
        threshold=figures["threshold"], band_low=figures["band"][0], band_high=figures["band"][1],
        card_threshold=proposal.card_threshold, min_recall=figures["min_recall"],
        evidence_until=proposal.evidence_until, figures=figures, proposed_by=by,
        proposed_at=proposal.evidence_until, status=SiteOperatingPoint.Status.PROPOSED)
    try:
        with set_actor(by), transaction.atomic():
            point.save()
            if not settings.PNEUMOWEB_ERASURE_TWO_PERSON:
                _activate(point, approved_by=by)
    except IntegrityError:
        raise CalibrationRefused(f"A {population} site point is already waiting for a second administrator: "
                                 "approve it or revert first.") from None
    return point


def approve(point, *, by):
    """Activate a point waiting for approval; under the two-person rule, not by the administrator who proposed it."""
    require_administrator(by)
    if settings.PNEUMOWEB_ERASURE_TWO_PERSON and by.pk == point.proposed_by_id:
        raise CalibrationRefused("A second administrator must approve a site point they did not propose.")
    with set_actor(by), transaction.atomic():
        _activate(point, approved_by=by)
    return point


def _activate(point, *, approved_by):
    # Rows locked, then each change saved (not a bulk UPDATE) so that the audit trail records it.
    locked = SiteOperatingPoint.objects.select_for_update().filter(population=point.population,
                                                                   model_sha256=point.model_sha256)
    fresh = locked.filter(pk=point.pk).first()
    if fresh is None or fresh.status != SiteOperatingPoint.Status.PROPOSED:
        raise CalibrationRefused("This site point is not waiting for approval.")
    now = timezone.now()
    for older in locked.filter(status=SiteOperatingPoint.Status.ACTIVE):
        _end(older, SiteOperatingPoint.Status.SUPERSEDED, by=approved_by, at=now)
    fresh.status, fresh.approved_by, fresh.active_from = SiteOperatingPoint.Status.ACTIVE, approved_by, now
    fresh.save(update_fields=["status", "approved_by", "active_from"])
    point.refresh_from_db()


def _end(point, status, *, by, at):
    point.status, point.ended_by, point.ended_at = status, by, at
    point.save(update_fields=["status", "ended_by", "ended_at"])


def revert(population, *, by):
    """End the active site point of the served weights (and withdraw one waiting); returns the points ended."""
    require_administrator(by)
    card = served_card()
    card_point(card, population)
    now = timezone.now()
    ending = {SiteOperatingPoint.Status.ACTIVE: SiteOperatingPoint.Status.REVERTED,
              SiteOperatingPoint.Status.PROPOSED: SiteOperatingPoint.Status.WITHDRAWN}
    with set_actor(by), transaction.atomic():
        ended = list(SiteOperatingPoint.objects.select_for_update().filter(
            population=population, model_sha256=card.weights_sha256, status__in=list(ending)))
        for point in ended:
            _end(point, ending[point.status], by=by, at=now)
    if not ended:
        raise CalibrationRefused(f"The {population} point is already the model card's: nothing to revert.")
    return ended


def _pct(value):
    return "–" if value is None else f"{value * 100:.1f} %"


def _figure(entry):
    if not entry or entry.get("value") is None:
        return "–"
    ci = entry.get("ci95")
    return _pct(entry["value"]) + (f" ({_pct(ci[0])}–{_pct(ci[1])})" if ci else "")


def summary_lines(figures):
    """The proposal in plain lines (the command prints them; the page shows the same figures as a table)."""
    f = figures
    lines = [
        f"{f['population']}: {f['films']} reviewed films of {f['patients']} patients "
        f"({f['positive_patients']} confirmed PNEUMONIA, {f['negative_patients']} confirmed NORMAL); "
        f"{f['reviewed_films_from_random_sample']} from the random review sample, "
        f"{f['reviewed_films_chosen_by_reviewers']} chosen by reviewers.",
        f"current threshold {f['current_threshold']:.4f} ({f['current_is']}): recall {_figure(f['current'].get('recall'))}, "
        f"specificity {_figure(f['current'].get('specificity'))}",
    ]
    if f.get("threshold") is not None:
        lines += [
            f"proposed threshold {f['threshold']:.4f} (recall floor {f['min_recall']:g}, borderline band "
            f"{f['band'][0]:.4f}–{f['band'][1]:.4f}): recall {_figure(f['proposed'].get('recall'))}, "
            f"specificity {_figure(f['proposed'].get('specificity'))}",
            "on patients left out of each refit (what to expect on new patients): recall "
            f"{_pct(f['left_out']['recall']['median'])} {_interval(f['left_out']['recall']['ci95'])}, specificity "
            f"{_pct(f['left_out']['specificity']['median'])} {_interval(f['left_out']['specificity']['ci95'])}",
        ]
    lines.append("intervals: 95 % bootstrap over patients (a patient's films drawn together)")
    lines.append(f["bias"])
    return lines


def _interval(ci):
    return f"({_pct(ci[0])}–{_pct(ci[1])})" if ci else ""
