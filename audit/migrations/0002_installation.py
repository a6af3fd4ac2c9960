"""This installation's identity for its sealed-digest file (audit.models.Installation): one row, a new uuid."""

import uuid

from django.db import migrations, models


def name_this_installation(apps, schema_editor):
    Installation = apps.get_model("audit", "Installation")
    if not Installation.objects.exists():
        Installation.objects.create(uuid=uuid.uuid4())


class Migration(migrations.Migration):

    dependencies = [("audit", "0001_seals")]

    operations = [
        migrations.CreateModel(
            name="Installation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("uuid", models.UUIDField(unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.RunPython(name_this_installation, migrations.RunPython.noop),
    ]
