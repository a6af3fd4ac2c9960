"""Check every stored file against the sha256 on its row, and find files that no row names.

One line per problem, then a summary; exit status 0 when every file is the one recorded, 1 otherwise:

    missing <model> <pk> <field> <path>                        the row names a file that is not there
    changed <model> <pk> <field> <path> expected=<..> actual=<..>  the file is not the one stored
    unrecorded <model> <pk> <field> <path> actual=<..>         the row keeps no digest for its file
    orphaned <path>                                            a file under MEDIA_ROOT that no row names

Read-only, except ``--record``, which records the digest of each unrecorded file as it is now.
The rules and where the same check runs on every read: diagnosis/integrity.py.
"""

import json
from collections import Counter
from dataclasses import asdict

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from diagnosis.integrity import StoredFilesCheck, record_digest

KINDS = ("missing", "changed", "unrecorded", "orphaned")


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
        parser.add_argument("--grace", type=float, default=60, metavar="SECONDS",
                            help="leave out unnamed files younger than this: their rows may be being written "
                                 "(default 60)")
        parser.add_argument("--record", action="store_true",
                            help="record the sha256 of each unrecorded file as it is now (judge the files first)")

    def handle(self, *args, **options):
        check = StoredFilesCheck(settings.MEDIA_ROOT, grace=options["grace"])
        counts, problems, recorded = Counter(), [], 0
        for problem in check.problems():
            counts[problem.kind] += 1
            if options["json"]:
                problems.append(asdict(problem))
            else:
                self.stdout.write(str(problem))
            if options["record"] and problem.kind == "unrecorded":
                recorded += record_digest(problem)
        summary = {"named": check.named, **{kind: counts[kind] for kind in KINDS}, "recorded": recorded}
        if options["json"]:
            self.stdout.write(json.dumps({"ok": not counts, **summary, "problems": problems}, indent=2, default=str))
        else:
            self.stdout.write(f"{check.named} stored file(s) named by rows; "
                              + ", ".join(f"{counts[kind]} {kind}" for kind in KINDS)
                              + (f"; recorded {recorded} digest(s)" if options["record"] else ""))
        if counts:
            raise CommandError(f"{counts.total()} problem(s) with stored files", returncode=1)
