"""Pages and API answers cost a constant number of database queries, however many rows they show."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ..base import api_client_for
from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db


def queries(call):
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code == 200
    return len(captured)


def add_predictions(patient, reviewer, count):
    for i in range(count):
        prediction = PredictionFactory(study=StudyFactory(patient=patient), succeeded=True)
        with_heatmaps(prediction)
        if i % 2:
            prediction.__class__.objects.filter(pk=prediction.pk).update(review_verdict="agree", reviewed_by=reviewer)


@pytest.mark.parametrize("url", [reverse("api:prediction-list"), reverse("api:study-list"),
                                 reverse("api:patient-list")])
def test_an_api_list_costs_the_same_for_one_row_and_twenty(clinician, patient, reviewer, url):
    api = api_client_for(clinician)
    add_predictions(patient, reviewer, 1)
    one = queries(lambda: api.get(url))
    add_predictions(patient, reviewer, 19)
    assert queries(lambda: api.get(url)) == one


def test_a_prediction_costs_a_few_queries(clinician, patient, reviewer):
    api = api_client_for(clinician)
    add_predictions(patient, reviewer, 2)
    prediction = patient.studies.first().predictions.first()
    # The token and its owner, knox's sweep of expired tokens, the two permission lookups, the row, and
    # the audit trail's entry for the view.
    assert queries(lambda: api.get(reverse("api:prediction-detail", args=[prediction.pk]))) <= 6


@pytest.mark.parametrize("name", ["dashboard", "patient_detail"])
def test_a_page_costs_the_same_for_one_row_and_twenty(logged_in, patient, reviewer, name):
    url = reverse(name, args=[patient.pk]) if name == "patient_detail" else reverse(name)
    add_predictions(patient, reviewer, 1)
    one = queries(lambda: logged_in.get(url))
    add_predictions(patient, reviewer, 19)
    assert queries(lambda: logged_in.get(url)) == one
