"""Send results again: failed exports (after fixing a destination), or those of one study."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from pacs.models import Export


class Command(BaseCommand):
    help = ("Queue exports to be sent again: every failed one (default), one by id (--export), or every "
            "export of a StudyInstanceUID (--study). The housekeeping sends them within a round.")

    def add_arguments(self, parser):
        parser.add_argument("--export", type=int, action="append", default=[], help="export id (repeatable)")
        parser.add_argument("--study", help="StudyInstanceUID: every export of its instances")
        parser.add_argument("--destination", help="only exports to this destination (its name)")

    def handle(self, *args, export, study, destination, **options):
        exports = Export.objects.all()
        if export:
            exports = exports.filter(pk__in=export)
        elif study:
            exports = exports.filter(instance__imaging_study__study_instance_uid=study)
        else:
            exports = exports.filter(status=Export.Status.FAILED)
        if destination:
            exports = exports.filter(destination__name=destination)
        if (export or study) and not exports.exists():
            raise CommandError("No export matches.")
        count = exports.update(status=Export.Status.PENDING, attempts=0, last_error="",
                               next_attempt_at=timezone.now(), sent_at=None)
        self.stdout.write(f"{count} export(s) queued to be sent again.")
