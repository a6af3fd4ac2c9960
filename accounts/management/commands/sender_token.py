"""Issue, rotate or revoke a PACS sender's API token, and show when its tokens end (accounts/sender_tokens.py).

    manage.py sender_token orthanc              # its live tokens' expiries
    manage.py sender_token orthanc --rotate     # a new token (printed once); the old ones end in a day
    manage.py sender_token orthanc --revoke     # every token ends now
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts import sender_tokens
from accounts.roles import is_pacs_sender


class Command(BaseCommand):
    help = "Show, rotate or revoke the API tokens of a PACS sender (role pacs)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rotate", action="store_true", help="issue a new token; the old ones end in a day")
        action.add_argument("--revoke", action="store_true", help="end every token of this sender now")

    def handle(self, *args, username, rotate, revoke, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        if not is_pacs_sender(user):
            raise CommandError(f"{username!r} is not a PACS sender (create_user {username} --role pacs makes one); "
                               "people get their tokens by signing in.")
        if revoke:
            count = sender_tokens.revoke(user)
            self.stdout.write(f"Revoked {count} token(s) of {username!r}: its pushes are refused until it has a new one.")
            return
        if rotate:
            row, token = sender_tokens.rotate(user)
            self.stdout.write(f"API token for STOW-RS (Authorization: Token …): {token}")
            self.stdout.write(f"It ends on {row.expiry:%Y-%m-%d %H:%M} UTC; the older ones end within a day.")
            return
        tokens = list(sender_tokens.live_tokens(user))
        if not tokens:
            self.stdout.write(f"{username!r} has no valid token: --rotate issues one.")
        for row in tokens:
            self.stdout.write(f"token {row.token_key}… ends {row.expiry:%Y-%m-%d %H:%M} UTC")
