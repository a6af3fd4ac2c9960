from django.core.management.base import BaseCommand, CommandError

from core.backup import BackupError, restore


class Command(BaseCommand):
    help = ("Restore a backup made by `manage.py backup` onto an EMPTY database and media folder: checks every "
            "checksum first, then each table's rows against the manifest, migrates, and queues the jobs that were "
            "in flight again. Start the worker afterwards.")

    def add_arguments(self, parser):
        parser.add_argument("source", help="the backup folder (holding manifest.json)")

    def handle(self, *args, source, **options):
        try:
            manifest = restore(source)
        except BackupError as error:
            raise CommandError(str(error)) from None
        rows = sum(table["rows"] for table in manifest["tables"].values())
        self.stdout.write(f"Restored {rows} rows in {len(manifest['tables'])} tables and {len(manifest['files'])} "
                          f"files from {source} (taken {manifest['created_at']}); every checksum matched")
