from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import session_views
from accounts import views as account_views
from core import views as core_views
from diagnosis import views
from diagnosis.api import urls as diagnosis_api
from monitoring import site_points_page
from monitoring import views as monitoring_views
from monitoring.api import MonitoringView
from pacs.stow import StowView

# One "api" namespace for the records' endpoints and monitoring's (which sits above diagnosis).
api = [path("monitoring/", MonitoringView.as_view(), name="monitoring"), *diagnosis_api.urlpatterns]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    # First: its sign-in (password, then a one-time code) replaces Django's login page and the admin's.
    path("", include("accounts.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("account/token/", account_views.api_token, name="api_token"),
    # Idle sign-out's time left / "Stay signed in", and sign-out everywhere (accounts/idle.py, accounts/sessions.py).
    path("account/session/", session_views.session_activity, name="session_activity"),
    path("account/sign-out-everywhere/", session_views.sign_out_everywhere_view, name="sign_out_everywhere"),
    path("patients/", views.patient_list, name="patient_list"),
    path("patients/new/", views.patient_create, name="patient_create"),
    path("patients/<int:pk>/", views.patient_detail, name="patient_detail"),
    path("patients/<int:pk>/trend.svg", views.patient_trend, name="patient_trend"),
    path("monitoring/", monitoring_views.monitoring, name="monitoring"),
    path("monitoring/chart.png", monitoring_views.monitoring_chart, name="monitoring_chart"),
    path("monitoring/site-points/", site_points_page.site_points_page, name="site_points"),
    path("upload/", views.upload, name="upload"),
    path("upload/results/<str:key>/", views.upload_results, name="upload_results"),
    path("predictions/<int:pk>/", views.prediction_detail, name="prediction_detail"),
    path("predictions/<int:pk>/review/", views.prediction_review, name="prediction_review"),
    path("review/", views.review_list, name="review_queue"),
    path("studies/<int:pk>/image/", views.study_image, name="study_image"),
    path("studies/<int:pk>/thumbnail/", views.study_thumbnail, name="study_thumbnail"),
    path("predictions/<int:pk>/heatmap/<str:branch>.png", views.prediction_heatmap, name="prediction_heatmap"),
    path("favicon.ico", core_views.favicon, name="favicon"),  # browsers ask for it by themselves
    path("admin/", admin.site.urls),
    path("api/", include((api, "api"))),
    path("dicom-web/studies", StowView.as_view(), name="stow_rs"),  # DICOMweb's path has no trailing slash
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script from a URL: no inline script, so the CSP holds on the docs too.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api_docs"),
]

# JSON for API clients (core.middleware.wants_json), the site's pages for people.
handler400 = "core.views.bad_request_view"
handler403 = "core.views.permission_denied_view"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error_view"
