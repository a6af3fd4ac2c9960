from django.core.management.base import BaseCommand, CommandError

from core.backup import BackupError, backup


class Command(BaseCommand):
    help = ("Back up the database (one consistent snapshot) and every stored file its rows name into a new folder, "
            "with manifest.json (row counts and checksums per table, a checksum per file). Safe while users work.")

    def add_arguments(self, parser):
        parser.add_argument("dest", help="a new (or empty) folder for this backup")

    def handle(self, *args, dest, **options):
        try:
            manifest = backup(dest)
        except BackupError as error:
            raise CommandError(str(error)) from None
        rows = sum(table["rows"] for table in manifest["tables"].values())
        self.stdout.write(f"Backed up {rows} rows in {len(manifest['tables'])} tables and "
                          f"{len(manifest['files'])} files to {dest}")
        if manifest["missing_files"]:
            # The backup is still whole for everything else; the operator must see what was already lost.
            for missing in manifest["missing_files"][:20]:
                self.stderr.write(f"missing before the backup: {missing['file']} ({missing['table']} {missing['pk']})")
            raise CommandError(f"{len(manifest['missing_files'])} stored file(s) were missing (listed in the manifest)",
                               returncode=2)
