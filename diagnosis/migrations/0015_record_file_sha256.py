"""Record the sha256 of every heatmap and report PDF stored before digests were kept (0014).

A file that is missing is skipped: its digest stays blank and ``manage.py verify_files`` reports
it. Rows are read in primary-key pages and written with queryset ``update()``: a finished
prediction refuses changes through ``save()``, and SQLite gives no isolation between a cursor
still being read and writes to its table. Self-contained (no app code): a migration must keep
working as the code moves on.
"""

import hashlib

from django.db import migrations

FIELDS = {"prediction": ("heatmap", "heatmap_cnn", "heatmap_vit"), "report": ("pdf",)}
PAGE = 500


def digest_of(storage, name):
    try:
        with storage.open(name, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        return ""


def record_digests(apps, schema_editor):
    for model_name, fields in FIELDS.items():
        model = apps.get_model("diagnosis", model_name)
        for field in fields:
            digest_field = f"{field}_sha256"
            storage = model._meta.get_field(field).storage
            unrecorded = model.objects.exclude(**{field: ""}).filter(**{digest_field: ""}).order_by("pk")
            last = 0
            while page := list(unrecorded.filter(pk__gt=last).values_list("pk", field)[:PAGE]):
                for pk, name in page:
                    if digest := digest_of(storage, name):
                        model.objects.filter(pk=pk).update(**{digest_field: digest})
                last = page[-1][0]


class Migration(migrations.Migration):

    dependencies = [
        ("diagnosis", "0014_file_sha256"),
    ]

    operations = [
        migrations.RunPython(record_digests, migrations.RunPython.noop, elidable=True),
    ]
