from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from .views import PatientViewSet, PredictionViewSet, PredictView, StudyViewSet

app_name = "api"

router = DefaultRouter()
router.register("patients", PatientViewSet, basename="patient")
router.register("studies", StudyViewSet, basename="study")
router.register("predictions", PredictionViewSet, basename="prediction")

urlpatterns = [
    path("predict/", PredictView.as_view(), name="predict"),
    path("auth/token/", obtain_auth_token, name="token"),
    *router.urls,
]
