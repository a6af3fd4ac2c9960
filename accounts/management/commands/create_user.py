"""Create a user in one of the roles (accounts/roles.py), or reset their password, and print the credentials.

    manage.py create_user alice --role clinician
    manage.py create_user orthanc --role pacs        # a PACS's sending account: prints an API token too
"""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from accounts import sender_tokens
from accounts.roles import ADMIN, CLINICIAN, GROUP, PACS_SENDER, REVIEWER, ROLES


class Command(BaseCommand):
    help = "Create (or reset the password of) a clinician, reviewer, administrator or PACS sender and print it."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, default=CLINICIAN)
        parser.add_argument("--password", help="Default: a new random password, printed once.")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, password, email, **options):
        try:
            group = Group.objects.get(name=GROUP[role])
        except Group.DoesNotExist:
            raise CommandError(f"Group {GROUP[role]!r} is missing: run `manage.py migrate` first.") from None
        password = password or secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
        user.set_password(password)
        # Reviewers audit predictions in the admin site, which needs staff status.
        user.is_staff = role in (REVIEWER, ADMIN)
        user.is_superuser = role == ADMIN
        user.save()
        # One role at a time: a reviewer made a PACS sender (or the reverse) keeps nothing of the old one.
        user.groups.remove(*Group.objects.filter(name__in=set(GROUP.values()) - {group.name}))
        user.groups.add(group)
        verb = "Created" if created else "Reset password of"
        self.stdout.write(f"{verb} {role} {username!r} with password {password!r}")
        if role == PACS_SENDER:
            # A sending system signs in nowhere: it sends this token, which lasts a sender's lifetime
            # (accounts/sender_tokens.py; `manage.py sender_token` rotates and revokes it).
            row, token = sender_tokens.issue(user)
            self.stdout.write(f"API token for STOW-RS (Authorization: Token …): {token}")
            self.stdout.write(f"It ends on {row.expiry:%Y-%m-%d %H:%M} UTC.")
