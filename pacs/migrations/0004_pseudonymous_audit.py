from django.db import migrations

from audit.pseudonyms import pseudonymise_entries


def pseudonymise_existing_entries(apps, schema_editor):
    """Instance entries written before pseudonyms were named by SOP Instance UID, with UIDs in their changes."""
    Instance = apps.get_model("pacs", "Instance")
    study_of = dict(Instance.objects.values_list("pk", "study_id"))

    def name(pk):
        study = study_of.get(int(pk)) if str(pk).isdigit() else None
        return f"DICOM instance {pk} of study {study or '-'}"

    pseudonymise_entries(apps, "pacs", "instance", mask_fields={"sop_instance_uid", "series_instance_uid", "notes"},
                         name=name, drop_fields={"pixels_sha256"})


class Migration(migrations.Migration):
    dependencies = [
        ("pacs", "0003_record_pixels_sha256"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunPython(pseudonymise_existing_entries, migrations.RunPython.noop)]
