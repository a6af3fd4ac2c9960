"""One round of the DICOM housekeeping (close quiet studies, queue and send results); for cron or tests."""

from django.core.management.base import BaseCommand

from pacs.housekeeping import tick


class Command(BaseCommand):
    help = "Close quiet DICOM studies, queue their results and send what is due, once."

    def handle(self, *args, **options):
        self.stdout.write(str(tick()))
