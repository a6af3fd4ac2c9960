from django.conf import settings
from django.core.management.base import BaseCommand

from audit.seals import export_seals, read_anchor, seal_due


class Command(BaseCommand):
    help = ("Seal the audit entries older than PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS into the hash chain and append "
            "the new seals to PNEUMOWEB_AUDIT_SEAL_FILE. The worker does this every minute; safe to run at any time.")

    def handle(self, *args, **options):
        made = seal_due()
        export_seals()  # also the seals a crash left unexported
        entries = sum(seal.count for seal in made)
        self.stdout.write(f"{len(made)} new seal(s) covering {entries} entries; "
                          f"{settings.PNEUMOWEB_AUDIT_SEAL_FILE} holds {len(read_anchor())} seal(s)")
