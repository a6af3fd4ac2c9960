from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from diagnosis.erasure import ErasureRefused, request_erasure
from diagnosis.models import Erasure, Patient


class Command(BaseCommand):
    help = ("Erase one patient's data (studies, files, predictions, reports, PACS records) where the law requires "
            "it, as the admin action does; refused while a study is running. With PNEUMOWEB_ERASURE_TWO_PERSON "
            "this only requests it: another administrator approves in the admin.")

    def add_arguments(self, parser):
        parser.add_argument("patient", type=int, help="the patient's id")
        parser.add_argument("--reason", required=True, help="why the erasure is required (no personal data)")
        parser.add_argument("--by", required=True, help="the administrator's username")

    def handle(self, *args, patient, reason, by, **options):
        admin = get_user_model().objects.filter(username=by, is_superuser=True, is_active=True).first()
        if admin is None:
            raise CommandError(f"{by!r} is not an active administrator")
        record = Patient.objects.filter(pk=patient).first()
        if record is None:
            raise CommandError(f"There is no patient {patient}")
        try:
            erasure = request_erasure(record, by=admin, reason=reason)
        except ErasureRefused as refused:
            raise CommandError(str(refused)) from None
        if erasure.status == Erasure.Status.DONE:
            self.stdout.write(f"Erased patient {erasure.patient_pseudonym}: {len(erasure.erased['studies'])} studies, "
                              f"{len(erasure.erased['predictions'])} predictions, {len(erasure.erased['reports'])} "
                              f"reports, {erasure.erased['files']} files (erasure {erasure.pk})")
        else:
            self.stdout.write(f"Erasure {erasure.pk} of patient {erasure.patient_pseudonym} requested: "
                              "a second administrator must approve it")
