"""The roles' groups with exactly their permissions (accounts/roles.py), and the new PACS sender role.

The clinician and reviewer groups were made by diagnosis/0002_roles; this migration owns them from
now on (the same permissions, set again) and adds ``pacs-sender`` with ``pacs.add_instance``. The
lists are copied here, as a migration must not change when the code does.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSIONS = {
    "clinician": ["diagnosis.add_patient", "diagnosis.change_patient", "diagnosis.view_patient",
                  "diagnosis.add_study", "diagnosis.view_study", "diagnosis.add_prediction",
                  "diagnosis.view_prediction"],
    "reviewer": ["diagnosis.view_patient", "diagnosis.view_study", "diagnosis.view_prediction",
                 "diagnosis.change_prediction", "diagnosis.view_all_records", "diagnosis.review_prediction"],
    "pacs-sender": ["pacs.add_instance"],
}


def set_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; these groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, labels in PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [label.split(".") for label in labels]
        found = [Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in wanted]
        group.permissions.set(found)


def remove_pacs_sender(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="pacs-sender").delete()


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_signed_in_session"),
        # After core gave up SignedInSession: create_permissions would otherwise make core's copy again.
        ("core", "0003_signed_in_session_moved_to_accounts"),
        ("diagnosis", "0016_erasure_and_pseudonymous_audit"),
        ("pacs", "0004_pseudonymous_audit"),
    ]

    operations = [migrations.RunPython(set_roles, remove_pacs_sender)]
