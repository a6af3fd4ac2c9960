from django.urls import path

from . import views

# Included at the root by pneumoweb/urls.py, before django.contrib.auth's URLs and the admin's:
# the login page and the admin's login are replaced by the two-step sign-in.
urlpatterns = [
    path("accounts/login/", views.PasswordStep.as_view(), name="login"),
    path("accounts/code/", views.code_step, name="second_factor_code"),
    path("account/second-factor/", views.second_factor, name="second_factor"),
    path("account/second-factor/enrol/", views.enrol, name="second_factor_enrol"),
    path("admin/login/", views.admin_login, name="admin_login"),
]
