"""manage.py erase_patient: the admin action's erasure from the command line."""

import io

import pytest
from django.core.management import CommandError, call_command

from diagnosis.models import Erasure, Patient, Prediction

from ..base import make_admin
from ..factories import PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user():
    return make_admin()


def run(*args):
    out = io.StringIO()
    call_command("erase_patient", *args, stdout=out)
    return out.getvalue()


def test_it_erases_and_says_what(admin_user, patient, django_capture_on_commit_callbacks):
    PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
    with django_capture_on_commit_callbacks(execute=True):
        said = run(str(patient.pk), "--reason", "request 12", "--by", admin_user.username)
    assert said.startswith("Erased patient P-") and "1 studies, 1 predictions" in said
    assert not Patient.objects.filter(pk=patient.pk).exists()
    assert Erasure.objects.get().status == Erasure.Status.DONE


def test_it_refuses_while_running(admin_user, patient):
    PredictionFactory(study=StudyFactory(patient=patient), status=Prediction.Status.QUEUED)
    with pytest.raises(CommandError, match="still being assessed"):
        run(str(patient.pk), "--reason", "request 12", "--by", admin_user.username)
    assert Patient.objects.filter(pk=patient.pk).exists()


def test_it_takes_only_an_administrator(reviewer, patient):
    with pytest.raises(CommandError, match="not an active administrator"):
        run(str(patient.pk), "--reason", "x", "--by", reviewer.username)


def test_it_says_when_there_is_no_such_patient(admin_user):
    with pytest.raises(CommandError, match="no patient 999"):
        run("999", "--reason", "x", "--by", admin_user.username)


def test_it_only_requests_under_the_two_person_rule(settings, admin_user, patient):
    settings.PNEUMOWEB_ERASURE_TWO_PERSON = True
    said = run(str(patient.pk), "--reason", "request 12", "--by", admin_user.username)
    assert "requested: a second administrator must approve it" in said
    assert Patient.objects.filter(pk=patient.pk).exists()
