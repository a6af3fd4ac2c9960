import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

# An administrator is a reviewer who is also a superuser: the audit trail and user management are theirs.
ROLES = ("clinician", "reviewer", "admin")


class Command(BaseCommand):
    help = "Create (or reset the password of) a clinician, reviewer or administrator and print the credentials."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, default="clinician")
        parser.add_argument("--password", help="Default: a new random password, printed once.")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, password, email, **options):
        try:
            group = Group.objects.get(name="reviewer" if role == "admin" else role)
        except Group.DoesNotExist:
            raise CommandError(f"Group {role!r} is missing: run `manage.py migrate` first.") from None
        password = password or secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
        user.set_password(password)
        # Reviewers audit predictions in the admin site, which needs staff status.
        user.is_staff = role in ("reviewer", "admin")
        user.is_superuser = role == "admin"
        user.save()
        user.groups.add(group)
        verb = "Created" if created else "Reset password of"
        self.stdout.write(f"{verb} {role} {username!r} with password {password!r}")
