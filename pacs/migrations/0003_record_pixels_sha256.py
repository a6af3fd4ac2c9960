"""Record the sha256 of every held PNG received before digests were kept (0002).

A file that is missing is skipped: its digest stays blank and ``manage.py verify_files`` reports
it. Rows are read in primary-key pages and written with queryset ``update()`` (SQLite gives no
isolation between a cursor still being read and writes to its table). Self-contained (no app
code): a migration must keep working as the code moves on.
"""

import hashlib

from django.db import migrations

PAGE = 500


def digest_of(storage, name):
    try:
        with storage.open(name, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        return ""


def record_digests(apps, schema_editor):
    instance = apps.get_model("pacs", "Instance")
    storage = instance._meta.get_field("pixels").storage
    unrecorded = instance.objects.exclude(pixels="").filter(pixels_sha256="").order_by("pk")
    last = 0
    while page := list(unrecorded.filter(pk__gt=last).values_list("pk", "pixels")[:PAGE]):
        for pk, name in page:
            if digest := digest_of(storage, name):
                instance.objects.filter(pk=pk).update(pixels_sha256=digest)
        last = page[-1][0]


class Migration(migrations.Migration):

    dependencies = [
        ("pacs", "0002_instance_pixels_sha256"),
    ]

    operations = [
        migrations.RunPython(record_digests, migrations.RunPython.noop, elidable=True),
    ]
