from django.core.management.base import BaseCommand, CommandError

from core.backup import BackupError, restore


class Command(BaseCommand):
    help = ("Restore a backup made by `manage.py backup` onto an EMPTY database and media folder: checks every "
            "checksum first, then each table's rows against the manifest, migrates, re-applies the erasures made "
            "since the backup, ends every session and API token, and queues the jobs that were in flight again. "
            "Start the worker afterwards.")

    def add_arguments(self, parser):
        parser.add_argument("source", help="the backup folder (holding manifest.json)")
        erasures = parser.add_mutually_exclusive_group()
        erasures.add_argument("--erasure-log", metavar="PATH",
                              help="the erasure log kept beside the backups (default: PNEUMOWEB_ERASURE_LOG, "
                                   "when that file exists); its erasures are applied again")
        erasures.add_argument("--no-erasures-since-backup", action="store_true",
                              help="restore without an erasure log: you state that no patient was erased since "
                                   "the backup (printed back as a warning)")

    def handle(self, *args, source, erasure_log=None, no_erasures_since_backup=False, **options):
        try:
            manifest = restore(source, options={"erasure_log": erasure_log,
                                                "no_erasures_since_backup": no_erasures_since_backup})
        except BackupError as error:
            raise CommandError(str(error)) from None
        rows = sum(table["rows"] for table in manifest["tables"].values())
        self.stdout.write(f"Restored {rows} rows in {len(manifest['tables'])} tables and {len(manifest['files'])} "
                          f"files from {source} (taken {manifest['created_at']}); every checksum matched")
        for sentence in manifest["said"]:  # what the restore did besides: the operator reads it here
            self.stdout.write(sentence)
