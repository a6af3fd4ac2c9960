import pytest
from django.urls import reverse

from ..factories import StudyFactory

pytestmark = pytest.mark.django_db


def test_it_shows_a_study_to_a_reviewer_with_its_image_behind_login(reviewer_client, patient):
    study = StudyFactory(patient=patient)
    response = reviewer_client.get(reverse("admin:diagnosis_study_change", args=[study.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'src="{reverse("study_image", args=[study.pk])}"' in html
    assert "/media/" not in html  # never a public URL for the stored file


def test_it_lists_studies_for_a_reviewer(reviewer_client, patient):
    StudyFactory(patient=patient)
    assert reviewer_client.get(reverse("admin:diagnosis_study_changelist")).status_code == 200


def test_it_adds_no_study_from_the_admin(reviewer_client):
    assert reviewer_client.get(reverse("admin:diagnosis_study_add")).status_code == 403
