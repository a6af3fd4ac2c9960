"""The data migrations that record the sha256 of files stored before digests were kept (diagnosis 0015, pacs 0003)."""

import hashlib
import importlib

import pytest
from django.apps import apps

from diagnosis.models import Prediction, Report
from diagnosis.reports import current_report
from pacs.ingest import receive
from pacs.models import Instance
from tests.dicom_files import chest

from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db

DIAGNOSIS = importlib.import_module("diagnosis.migrations.0015_record_file_sha256")
PACS = importlib.import_module("pacs.migrations.0003_record_pixels_sha256")
HEATMAPS = list(Prediction.HEATMAP_BRANCHES.values())


def digest(stored):
    with stored.open("rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_it_records_the_digest_of_every_file_there_and_leaves_a_missing_one_blank(patient):
    finished = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    report = current_report(finished)
    gone = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    gone.heatmap_vit.delete(save=False)
    # As before 0014: files on rows, no digests (a finished prediction takes only a queryset update).
    Prediction.objects.update(**{f"{field}_sha256": "" for field in HEATMAPS})
    Report.objects.update(pdf_sha256="")

    DIAGNOSIS.record_digests(apps, None)

    finished.refresh_from_db()
    assert all(getattr(finished, f"{field}_sha256") == digest(getattr(finished, field)) for field in HEATMAPS)
    assert Report.objects.get(pk=report.pk).pdf_sha256 == digest(report.pdf)
    gone = Prediction.objects.get(pk=gone.pk)
    assert gone.heatmap_vit_sha256 == "" and gone.heatmap_sha256 == digest(gone.heatmap)


def test_it_leaves_a_digest_already_recorded_as_it_is(patient):
    finished = with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True))
    Prediction.objects.filter(pk=finished.pk).update(heatmap_sha256="0" * 64)
    DIAGNOSIS.record_digests(apps, None)
    assert Prediction.objects.get(pk=finished.pk).heatmap_sha256 == "0" * 64


def test_it_records_the_digest_of_each_held_pacs_image():
    held = receive(chest(), received_from="x").instance
    Instance.objects.update(pixels_sha256="")
    PACS.record_digests(apps, None)
    assert Instance.objects.get(pk=held.pk).pixels_sha256 == digest(held.pixels)
