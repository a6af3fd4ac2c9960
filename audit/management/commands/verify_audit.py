import json

from django.core.management.base import BaseCommand, CommandError

from audit.seals import foreign_file, installation, read_anchor, verify


class Command(BaseCommand):
    help = ("Check the audit trail against its seals and the sealed-digest file: names the first entry changed, "
            "removed, inserted or missing from the end. Exit status 0 when intact, 1 when not, 2 when the file "
            "belongs to another installation.")

    def add_arguments(self, parser):
        parser.add_argument("--seals", metavar="FILE",
                            help="the sealed-digest file from the external store (default PNEUMOWEB_AUDIT_SEAL_FILE)")
        parser.add_argument("--json", action="store_true", help="print the verdict as JSON")

    def handle(self, *args, seals=None, **options):
        foreign = foreign_file(read_anchor(seals))
        if foreign:
            # No line names this installation: another site's file. Comparing would report every seal
            # as tampered with. (A changed installation row in this database looks the same: exit 2
            # with the file known to be the right one is an alarm too.)
            raise CommandError(
                f"{seals or 'The sealed-digest file'} holds the seals of another installation "
                f"({', '.join(foreign)}), not of this one ({installation()}): it is not this audit trail's "
                "anchor. Give the file this installation exported: its lines name this installation.",
                returncode=2)
        verdict = verify(anchor_path=seals)
        if options["json"]:
            self.stdout.write(json.dumps({
                "ok": verdict.ok, "seals": verdict.seals, "sealed_entries": verdict.sealed_entries,
                "unsealed_entries": verdict.unsealed_entries, "anchored_seals": verdict.anchored_seals,
                "problems": [vars(problem) for problem in verdict.problems],
            }, indent=2))
        else:
            self.stdout.write(f"{verdict.seals} seal(s), {verdict.sealed_entries} sealed entries, "
                              f"{verdict.unsealed_entries} not sealed yet, {verdict.anchored_seals} seal(s) in the file")
            for problem in verdict.problems[:50]:
                self.stdout.write(str(problem))
            if len(verdict.problems) > 50:
                self.stdout.write(f"… and {len(verdict.problems) - 50} more")
        if not verdict.ok:
            raise CommandError(f"The audit trail is not intact: first problem: {verdict.first}", returncode=1)
        if not options["json"]:
            self.stdout.write("The audit trail is intact.")
