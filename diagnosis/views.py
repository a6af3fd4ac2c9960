import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Q, Value, When
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from audit.trail import record_access
from core import charts

from .forms import PatientForm, ReviewForm, UploadForm
from .media import heatmap_response, image_response, private
from .models import Prediction
from .permissions import can_review, visible_patients, visible_predictions, visible_studies, writable_patients
from .services import MRN_TAKEN, MrnTaken, apply_review, save_patient, submit_studies


def worklist_order(queryset):
    """Pneumonia-positive results first, then unfinished jobs, then the rest; newest first."""
    rank = Case(
        When(label=Prediction.Label.PNEUMONIA, then=Value(0)),
        When(status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING], then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return queryset.annotate(rank=rank).order_by("rank", "-queued_at")


@login_required
def dashboard(request):
    predictions = worklist_order(visible_predictions(request.user))[:50]
    # The page asks the API for studies queued after this instant and offers to show them (worklist-live.js).
    return render(request, "diagnosis/dashboard.html", {"predictions": predictions, "opened_at": timezone.now()})


@login_required
def patient_list(request):
    query = request.GET.get("q", "").strip()
    patients = visible_patients(request.user).select_related("owner")
    if query:
        patients = patients.filter(Q(name__icontains=query) | Q(mrn__icontains=query))
    page = Paginator(patients, 25).get_page(request.GET.get("page"))
    return render(request, "diagnosis/patient_list.html", {"page": page, "query": query})


@login_required
@require_http_methods(["GET", "POST"])
def patient_create(request):
    form = PatientForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            patient = save_patient(form.save)
        except MrnTaken:  # the same MRN saved by a concurrent request, after this form's own check
            form.add_error("mrn", MRN_TAKEN)
        else:
            messages.success(request, f"Patient {patient} created.")
            return redirect(patient)
    return render(request, "diagnosis/patient_form.html", {"form": form})


@login_required
def patient_detail(request, pk):
    patient = get_object_or_404(visible_patients(request.user), pk=pk)
    record_access(request, "view", patient)
    predictions = visible_predictions(request.user).filter(study__patient=patient)
    # Inlined (its titles reach screen readers and hover); trend_svg escapes every text it writes.
    trend = mark_safe(charts.trend_svg(trend_points(request.user, patient), f"{patient.name} ({patient.mrn})"))
    return render(
        request,
        "diagnosis/patient_detail.html",
        {"patient": patient, "predictions": predictions, "can_upload": patient.owner_id == request.user.pk,
         "trend": trend},
    )


@login_required
@require_http_methods(["GET", "POST"])
def upload(request):
    initial = {}
    preselect = request.GET.get("patient", "")
    if preselect.isdecimal():  # ?patient=abc is ignored, not a server error
        initial["patient"] = writable_patients(request.user).filter(pk=int(preselect)).first()
    form = UploadForm(request.POST or None, request.FILES or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        predictions = submit_studies(form.accepted, uploaded_by=request.user, notes=data["notes"],
                                     patient=data["patient"])
        if len(predictions) == 1 and not form.refused:
            return redirect(predictions[0])
        # Post/Redirect/Get: reloading the results must not upload the batch again.
        return redirect("upload_results", key=remember_batch(request, data["patient"], predictions, form.refused))
    return render(request, "diagnosis/upload.html", {"form": form})


BATCHES_KEPT = 20  # a session remembers the results of this many batch uploads


def remember_batch(request, patient, predictions, refused):
    """Keep a batch's outcome in the session under a new key (for its results page); returns the key."""
    key = secrets.token_urlsafe(9)
    batches = request.session.get("upload_batches", {})
    batches[key] = {"patient": patient.pk, "predictions": [p.pk for p in predictions],
                    "refused": [[name, list(messages)] for name, messages in refused]}
    request.session["upload_batches"] = dict(list(batches.items())[-BATCHES_KEPT:])
    return key


@login_required
def upload_results(request, key):
    batch = request.session.get("upload_batches", {}).get(key)
    if batch is None:
        raise Http404("These upload results are no longer available; the studies are in the patient's history.")
    patient = get_object_or_404(writable_patients(request.user), pk=batch["patient"])
    predictions = list(visible_predictions(request.user).filter(pk__in=batch["predictions"])
                       .select_related("study").order_by("pk"))
    # Three groups, each with its reason: assessed, refused by the model's checks (or failed), and still
    # running (the page reloads itself as they finish: static/js/batch-poll.js); refused at upload is the batch's.
    groups = {"assessed": [p for p in predictions if p.status == Prediction.Status.SUCCEEDED],
              "refused": [p for p in predictions if p.status in (Prediction.Status.REJECTED, Prediction.Status.FAILED,
                                                                  Prediction.Status.CANCELLED)],
              "running": [p for p in predictions if not p.is_finished]}
    return render(request, "diagnosis/upload_results.html",
                  {"patient": patient, "predictions": predictions, "groups": groups, "refused": batch["refused"]})


@login_required
def prediction_detail(request, pk):
    prediction = get_object_or_404(visible_predictions(request.user), pk=pk)
    record_access(request, "view", prediction)
    return render(request, "diagnosis/prediction_detail.html",
                  {"prediction": prediction, "review_form": review_form_for(request.user, prediction)})


def review_form_for(user, prediction, data=None):
    """The review form when this user may review this prediction now, else None."""
    if not can_review(user) or prediction.status not in Prediction.OUTCOMES:
        return None
    initial = {f: getattr(prediction, f) for f in ("review_verdict", "review_label", "review_comment")}
    return ReviewForm(data, initial=initial)


@login_required
@require_http_methods(["POST"])
def prediction_review(request, pk):
    """Record a reviewer's verdict from the result page (the admin and the API use the same rules)."""
    prediction = get_object_or_404(visible_predictions(request.user), pk=pk)
    form = review_form_for(request.user, prediction, request.POST)
    if form is None:
        raise PermissionDenied("Only reviewers can record a verdict, and only on a finished result.")
    if not form.is_valid():
        return render(request, "diagnosis/prediction_detail.html", {"prediction": prediction, "review_form": form},
                      status=400)
    data = form.cleaned_data
    apply_review(prediction, verdict=data["review_verdict"], label=data["review_label"],
                 comment=data["review_comment"], reviewer=request.user)
    prediction.save()  # the audit trail records the change; the next report request writes a new version
    messages.success(request, f"Review of prediction {prediction.pk} recorded.")
    # A study of the random sample leads to the next one of the sample: that queue is worked through apart.
    following = review_queue(request.user, random_sample=prediction.review_sample).exclude(pk=prediction.pk).first()
    return redirect(following or prediction)


def review_queue(user, *, random_sample=False):
    """Finished results nobody reviewed yet: borderline first, then PNEUMONIA, then the rest; oldest first.

    ``random_sample``: only the studies drawn at upload into the random review sample
    (``services.drawn_for_review``), oldest first, in no order of the model's making: their reviews are
    the ones site calibration can take as standing for every study (diagnosis/site_points.py).
    """
    if random_sample:
        return (visible_predictions(user).filter(status=Prediction.Status.SUCCEEDED, review_verdict="",
                                                 review_sample=True).order_by("queued_at"))
    rank = Case(
        When(borderline=True, then=Value(0)),
        When(label=Prediction.Label.PNEUMONIA, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return (visible_predictions(user).filter(status__in=Prediction.OUTCOMES, review_verdict="")
            .annotate(rank=rank).order_by("rank", "queued_at"))


@login_required
def review_list(request):
    if not can_review(request.user):
        raise PermissionDenied
    random_sample = request.GET.get("queue") == "sample"
    page = Paginator(review_queue(request.user, random_sample=random_sample), 25).get_page(request.GET.get("page"))
    waiting = review_queue(request.user, random_sample=True).count()
    return render(request, "diagnosis/review_queue.html", {"page": page, "predictions": page.object_list,
                                                           "random_sample": random_sample, "sample_waiting": waiting})


@login_required
def study_image(request, pk):
    study = get_object_or_404(visible_studies(request.user), pk=pk)
    record_access(request, "download", study, what="X-ray image")
    return image_response(study)


@login_required
def prediction_heatmap(request, pk, branch):
    prediction = get_object_or_404(visible_predictions(request.user), pk=pk)
    record_access(request, "download", prediction, what=f"{branch} heatmap")
    return heatmap_response(prediction, branch)


@login_required
def study_thumbnail(request, pk):
    return image_response(get_object_or_404(visible_studies(request.user), pk=pk), thumbnail=True)


def trend_points(user, patient):
    finished = visible_predictions(user).filter(study__patient=patient, status=Prediction.Status.SUCCEEDED)
    return [(timezone.localtime(p.study.uploaded_at), p.probability, p.threshold, p.label)
            for p in finished.order_by("study__uploaded_at")]


@login_required
def patient_trend(request, pk):
    """The trend chart alone, as an SVG file (the patient page inlines the same drawing)."""
    patient = get_object_or_404(visible_patients(request.user), pk=pk)
    svg = charts.trend_svg(trend_points(request.user, patient), f"{patient.name} ({patient.mrn})")
    return private(HttpResponse(svg, content_type="image/svg+xml"))
