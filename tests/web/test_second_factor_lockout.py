"""Wrong one-time codes count with wrong passwords: django-axes locks the username + address out (AXES_*)."""

import pytest
from axes.models import AccessAttempt
from django.urls import reverse
from django.utils import timezone

from ..base import enrol_totp, totp_code
from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN, CODE = reverse("login"), reverse("second_factor_code")
ADDRESS = "10.0.0.7"


@pytest.fixture
def lockouts(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5


@pytest.fixture
def device(reviewer):
    return enrol_totp(reviewer)


def password_step(client, user, address=ADDRESS):
    return client.post(LOGIN, {"username": user.username, "password": PASSWORD}, REMOTE_ADDR=address)


def wrong(device):
    return f"{(int(totp_code(device)) + 500_000) % 1_000_000:06d}"


def test_it_locks_out_code_guessing_at_the_limit_even_for_the_right_code(client, reviewer, device, lockouts):
    assert password_step(client, reviewer)["Location"] == CODE
    answers = [client.post(CODE, {"otp_token": wrong(device)}, REMOTE_ADDR=ADDRESS).status_code for _ in range(6)]
    assert answers[:4] == [200] * 4 and set(answers[4:]) == {429}
    locked = client.post(CODE, {"otp_token": totp_code(device)}, REMOTE_ADDR=ADDRESS)
    assert locked.status_code == 429 and "Too many wrong" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # The password step is locked too: a new half sign-in cannot restart the count.
    assert password_step(client, reviewer).status_code == 429
    # No code is written into axes' records: the field is masked.
    [attempt] = AccessAttempt.objects.filter(username=reviewer.username, path_info=CODE)
    assert attempt.post_data.startswith("otp_token=****") and wrong(device) not in attempt.post_data


def test_wrong_passwords_and_wrong_codes_add_up(client, reviewer, device, lockouts):
    for i in range(3):
        client.post(LOGIN, {"username": reviewer.username, "password": f"guess-{i}"}, REMOTE_ADDR=ADDRESS)
    password_step(client, reviewer)  # the right password does not clear the count: a code is still owed
    assert client.post(CODE, {"otp_token": wrong(device)}, REMOTE_ADDR=ADDRESS).status_code == 200
    assert client.post(CODE, {"otp_token": wrong(device)}, REMOTE_ADDR=ADDRESS).status_code == 429


def test_another_address_is_not_locked_and_the_cool_off_ends_it(client, reviewer, device, lockouts):
    password_step(client, reviewer)
    for _ in range(5):
        client.post(CODE, {"otp_token": wrong(device)}, REMOTE_ADDR=ADDRESS)
    assert password_step(client, reviewer).status_code == 429
    assert password_step(type(client)(), reviewer, address="10.0.0.8")["Location"] == CODE
    AccessAttempt.objects.update(attempt_time=timezone.now() - timezone.timedelta(minutes=16))
    device.throttle_reset()  # django-otp's own wait after wrong codes, separate from axes
    password_step(client, reviewer)
    response = client.post(CODE, {"otp_token": totp_code(device)}, REMOTE_ADDR=ADDRESS)
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(reviewer.pk)
    assert not AccessAttempt.objects.filter(username=reviewer.username).exists()  # a full sign-in clears it


def test_django_otp_throttles_codes_after_a_wrong_one(client, reviewer, device):
    # Apart from axes (off here): after a wrong code even the right one waits (1 s, then 2, 4 ...).
    password_step(client, reviewer)
    client.post(CODE, {"otp_token": wrong(device)})
    assert client.post(CODE, {"otp_token": totp_code(device)}).status_code == 200
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
