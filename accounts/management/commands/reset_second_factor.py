"""``manage.py reset_second_factor <username>``: for a user who lost their authenticator app and recovery codes.

Removes the user's app and recovery codes. Their sessions that had given a code stop counting as
verified at once; at the next sign-in a user who must have a second factor is taken, after the
password, to enrolment (a new QR code, new recovery codes), and one who need not signs in with the
password alone. The removal is on the audit trail. ``--unlock`` also clears axes' lockout of the
username (as ``manage.py axes_reset_username`` does), for a user who locked themselves out guessing.
"""

from axes.handlers.proxy import AxesProxyHandler
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.second_factor import must_use_second_factor, remove_second_factor


class Command(BaseCommand):
    help = "Remove a user's second factor (authenticator app and recovery codes), e.g. after a lost phone."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--unlock", action="store_true", help="Also clear the username's sign-in lockouts.")

    def handle(self, *args, username, unlock, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        removed = remove_second_factor(user)
        then = ("enrol a new one after the password" if must_use_second_factor(user)
                else "sign in with the password alone")
        self.stdout.write(f"Removed {removed} second-factor device(s) of {username!r}; at the next sign-in they {then}.")
        if unlock:
            cleared = AxesProxyHandler.reset_attempts(username=username)
            self.stdout.write(f"Cleared {cleared} lockout record(s) of {username!r}.")
