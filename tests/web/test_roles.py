"""The roles (accounts/roles.py): their groups' permissions, create_user, and the PACS sender role."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts import roles
from accounts.second_factor import must_use_second_factor
from tests.dicom_files import chest, multipart_related, to_bytes

pytestmark = pytest.mark.django_db


def create_user(*args):
    out = io.StringIO()
    call_command("create_user", *args, stdout=out)
    return out.getvalue()


def test_it_gives_each_roles_group_exactly_the_permissions_roles_py_lists():
    # The migration copies the lists (a migration must not change with the code): the two agree.
    for group, wanted in roles.PERMISSIONS.items():
        found = {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=group).permissions.all()}
        assert found == set(wanted), group
    assert set(roles.GROUP.values()) == set(roles.PERMISSIONS)


def test_it_creates_a_pacs_sender_that_stores_studies_with_the_token_it_prints(settings):
    settings.PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS = True  # every person needs a code; a sending system does not
    said = create_user("orthanc", "--role", "pacs")
    assert re.search(r"Created pacs 'orthanc' with password '[^']+'", said)
    token = re.search(r"API token for STOW-RS \(Authorization: Token …\): (\S+)", said)[1]
    user = get_user_model().objects.get(username="orthanc")
    assert user.has_perm(roles.SENDS_DICOM) and roles.is_pacs_sender(user)
    assert not user.is_staff and not user.has_perm(roles.SEES_EVERY_RECORD)
    assert not must_use_second_factor(user)
    body, content_type = multipart_related(to_bytes(chest()))
    response = Client().generic("POST", "/dicom-web/studies", body, content_type=content_type,
                                HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200, response.content
    # A token only: the same account cannot open the record pages.
    assert Client().get(reverse("patient_list"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 302


def test_a_pacs_sender_cannot_sign_in_to_pages():
    password = re.search(r"with password '([^']+)'", create_user("orthanc", "--role", "pacs"))[1]
    client = Client()
    page = client.post(reverse("login"), {"username": "orthanc", "password": password})
    assert page.status_code == 200
    assert "This account sends studies from a PACS: it cannot sign in to pages." in page.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_clinician_created_by_the_command_holds_no_pacs_permission():
    create_user("carla", "--role", "clinician")
    carla = get_user_model().objects.get(username="carla")
    assert not carla.has_perm(roles.SENDS_DICOM) and not roles.is_pacs_sender(carla)


def test_it_refuses_an_unknown_role_naming_the_known_ones():
    with pytest.raises(CommandError, match="invalid choice: 'nurse' \\(choose from 'clinician', 'reviewer', 'admin', 'pacs'\\)"):
        create_user("nina", "--role", "nurse")


def test_a_new_role_replaces_the_old_one_and_a_privileged_sender_is_never_exempt():
    create_user("rita", "--role", "reviewer")
    create_user("rita", "--role", "pacs")  # the reviewer's account becomes a sending system's
    rita = get_user_model().objects.get(username="rita")
    assert set(rita.groups.values_list("name", flat=True)) == {"pacs-sender"}
    assert not rita.is_staff and not rita.has_perm(roles.SEES_EVERY_RECORD)
    # Made a sender by hand beside being an administrator: the second factor still applies.
    rita.is_superuser = rita.is_staff = True
    rita.save()
    assert must_use_second_factor(get_user_model().objects.get(username="rita"))
