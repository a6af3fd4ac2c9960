"""manage.py verify_files: every stored file against the sha256 on its row, and files that no row names."""

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import models

from diagnosis.integrity import models_with_checked_files
from diagnosis.models import Prediction, Study
from diagnosis.reports import current_report
from pacs.ingest import receive
from pacs.models import Instance
from tests.dicom_files import chest

from ..base import tamper_with
from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db
PROJECT_APPS = {"core", "audit", "diagnosis", "monitoring", "pacs", "accounts"}


def run(*args):
    """(exit status, the lines it printed)."""
    out = io.StringIO()
    try:
        call_command("verify_files", *args, stdout=out)
        status = 0
    except CommandError as exc:
        status = exc.returncode
    return status, out.getvalue().splitlines()


@pytest.fixture
def stored(patient):
    """One of each stored file: an X-ray, its heatmaps, a report PDF, and a held PACS image."""
    prediction = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    report = current_report(prediction)
    held = receive(chest(), received_from="x").instance
    return prediction, report, held


def test_it_says_all_is_well_and_exits_0_when_every_file_is_the_one_recorded(stored):
    status, lines = run()
    # An X-ray, three heatmap fields, a PDF, a held image (named by rows; the files are checked once each).
    assert (status, lines) == (0, ["6 stored file(s) named by rows; 0 missing, 0 changed, 0 unrecorded, 0 orphaned"])


def test_it_reports_a_missing_file_and_exits_1(stored):
    prediction, report, held = stored
    name = report.pdf.name
    report.pdf.delete(save=False)
    status, lines = run()
    assert status == 1
    assert lines == [f"missing diagnosis.report {report.pk} pdf {name}",
                     "6 stored file(s) named by rows; 1 missing, 0 changed, 0 unrecorded, 0 orphaned"]


def test_it_reports_a_changed_file_with_both_digests_and_exits_1(stored):
    prediction, report, held = stored
    actual = hashlib.sha256(tamper_with(prediction.study.image)).hexdigest()
    held_actual = hashlib.sha256(tamper_with(held.pixels)).hexdigest()
    status, lines = run()
    assert status == 1
    assert lines == [
        f"changed diagnosis.study {prediction.study_id} image {prediction.study.image.name} "
        f"expected={prediction.study.image_sha256} actual={actual}",
        f"changed pacs.instance {held.pk} pixels {held.pixels.name} expected={held.pixels_sha256} actual={held_actual}",
        "6 stored file(s) named by rows; 0 missing, 2 changed, 0 unrecorded, 0 orphaned",
    ]


def test_it_reports_an_orphaned_file_once_it_is_older_than_the_grace(stored, settings):
    orphan = Path(settings.MEDIA_ROOT) / "heatmaps" / "2020" / "01" / "left-behind.png"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"\x89PNG not named by any row")
    assert run()[0] == 0  # just written: its row may be on its way
    os.utime(orphan, (orphan.stat().st_atime, orphan.stat().st_mtime - 120))
    status, lines = run()
    assert status == 1
    assert lines == ["orphaned heatmaps/2020/01/left-behind.png",
                     "6 stored file(s) named by rows; 0 missing, 0 changed, 0 unrecorded, 1 orphaned"]
    assert run("--grace", "0")[0] == 1


def test_it_reports_a_file_without_a_recorded_digest_and_records_it_when_told(stored):
    prediction, report, held = stored
    Prediction.objects.filter(pk=prediction.pk).update(heatmap_vit_sha256="")
    actual = hashlib.sha256(prediction.heatmap_vit.read()).hexdigest()
    expected = f"unrecorded diagnosis.prediction {prediction.pk} heatmap_vit {prediction.heatmap_vit.name} actual={actual}"
    status, lines = run()
    assert (status, lines[0]) == (1, expected)
    status, lines = run("--record")
    assert status == 1 and lines[0] == expected and lines[-1].endswith("; recorded 1 digest(s)")
    assert Prediction.objects.get(pk=prediction.pk).heatmap_vit_sha256 == actual
    assert run()[0] == 0


def test_it_gives_machines_one_json_document(stored):
    prediction, report, held = stored
    name = report.pdf.name
    report.pdf.delete(save=False)
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("verify_files", "--json", stdout=out)
    assert failed.value.returncode == 1
    body = json.loads(out.getvalue())
    assert body["ok"] is False and body["named"] == 6 and body["missing"] == 1 and body["changed"] == 0
    assert body["problems"] == [{"kind": "missing", "path": name, "model": "diagnosis.report", "pk": report.pk,
                                 "field": "pdf", "expected": report.pdf_sha256, "actual": ""}]


def test_it_takes_a_dropped_held_image_for_no_problem(stored, django_capture_on_commit_callbacks):
    prediction, report, held = stored
    Instance.objects.filter(pk=held.pk).update(pixels="")  # submitted meanwhile: the row let go of it
    held.pixels.delete(save=False)
    status, lines = run()
    assert (status, lines) == (0, ["5 stored file(s) named by rows; 0 missing, 0 changed, 0 unrecorded, 0 orphaned"])


def test_it_checks_every_file_field_of_the_project():
    # A new FileField without its <name>_sha256 would be neither checked when served nor by verify_files.
    file_fields = {(model._meta.label, field.name) for model in apps.get_models()
                   if model._meta.app_label in PROJECT_APPS
                   for field in model._meta.concrete_fields if isinstance(field, models.FileField)}
    checked = {(model._meta.label, name) for model, names in models_with_checked_files() for name in names}
    assert file_fields == checked
    assert {("diagnosis.Study", "image"), ("diagnosis.Prediction", "heatmap"), ("diagnosis.Report", "pdf"),
            ("pacs.Instance", "pixels")} <= checked
    assert Study._meta.get_field("image_sha256")  # the upload path has always recorded it
