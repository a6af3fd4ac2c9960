"""A patient's erasure reaches the PACS rows too: their identity, imaging studies, instances and export log.

Connected to ``diagnosis.erasure.patient_erasing`` (sent inside the erasure's transaction); returns
the held pixel files to delete once it commits. What was already sent to a PACS stays there: that
copy is the PACS's to erase (docs/OPERATIONS.md says so).
"""

from diagnosis.erasure import rename_in_admin_log

from .models import Export, ImagingStudy, Instance, PacsPatient


def erase_pacs_rows(sender, *, patient, studies, **kwargs):
    instances = Instance.objects.filter(imaging_study__patient=patient)
    files = [name for name in instances.values_list("pixels", flat=True) if name]
    rename_in_admin_log(Instance, list(instances.values_list("pk", flat=True)))
    rename_in_admin_log(ImagingStudy, list(ImagingStudy.objects.filter(patient=patient).values_list("pk", flat=True)))
    rename_in_admin_log(PacsPatient, list(PacsPatient.objects.filter(patient=patient).values_list("pk", flat=True)))
    Export.objects.filter(instance__in=instances).delete()
    Export.objects.filter(prediction__study__in=studies).delete()
    instances.delete()
    ImagingStudy.objects.filter(patient=patient).delete()
    PacsPatient.objects.filter(patient=patient).delete()
    return files
