import pytest
from django.db import IntegrityError

from diagnosis.models import Prediction

from ..factories import PatientFactory, PredictionFactory

pytestmark = pytest.mark.django_db


def test_it_keeps_mrn_unique_per_owner(clinician, other_clinician):
    PatientFactory(owner=clinician, mrn="M1")
    PatientFactory(owner=other_clinician, mrn="M1")
    with pytest.raises(IntegrityError):
        PatientFactory(owner=clinician, mrn="M1")


def test_it_refuses_to_edit_a_succeeded_prediction():
    prediction = PredictionFactory(succeeded=True)
    prediction.probability = 0.1
    with pytest.raises(ValueError, match="immutable"):
        prediction.save()
    prediction.refresh_from_db()
    assert prediction.probability == pytest.approx(0.91)


def test_it_allows_review_fields_on_a_succeeded_prediction(reviewer):
    from django.utils import timezone

    prediction = PredictionFactory(succeeded=True)
    prediction.review_verdict = Prediction.Verdict.AGREE
    prediction.reviewed_by = reviewer
    prediction.reviewed_at = timezone.now()
    prediction.save()
    prediction.refresh_from_db()
    assert prediction.is_reviewed and prediction.reviewed_by == reviewer


def test_it_computes_confidence_and_model_version():
    prediction = PredictionFactory(succeeded=True, label="NORMAL", probability=0.25)
    assert prediction.confidence == pytest.approx(0.75)
    assert prediction.model_version == "compact-test@" + "ab" * 6
    assert PredictionFactory().confidence is None


def test_it_creates_the_roles_with_their_permissions(clinician, reviewer):
    assert clinician.has_perm("diagnosis.add_study")
    assert not clinician.has_perm("diagnosis.view_all_records")
    assert not clinician.has_perm("diagnosis.review_prediction")
    assert reviewer.has_perm("diagnosis.view_all_records")
    assert reviewer.has_perm("diagnosis.review_prediction")
    assert reviewer.is_staff and not clinician.is_staff
