from django.urls import path
from rest_framework.routers import DefaultRouter

from accounts.api import ObtainToken, RevokeToken

from .views import PatientViewSet, PredictBatchView, PredictionViewSet, PredictView, StudyViewSet

# Included under the "api" namespace by pneumoweb/urls.py, beside monitoring's endpoint.

router = DefaultRouter()
router.include_format_suffixes = False
router.register("patients", PatientViewSet, basename="patient")
router.register("studies", StudyViewSet, basename="study")
router.register("predictions", PredictionViewSet, basename="prediction")

urlpatterns = [
    path("predict/", PredictView.as_view(), name="predict"),
    path("predict/batch/", PredictBatchView.as_view(), name="predict-batch"),
    path("auth/token/", ObtainToken.as_view(), name="token"),
    path("auth/revoke/", RevokeToken.as_view(), name="token-revoke"),
    *router.urls,
]
