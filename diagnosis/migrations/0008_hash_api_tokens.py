"""API tokens move from DRF's plain-text table to knox's hashed ones; the plain-text table is dropped.

Each existing token keeps working (knox looks a token up by its first characters and compares
the SHA-512 of the whole), now with an expiry of PNEUMOWEB_TOKEN_TTL_HOURS from this migration.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

PLAIN_TEXT_TABLE = "authtoken_token"


def hash_existing_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS, knox_settings

    connection = schema_editor.connection
    if PLAIN_TEXT_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {PLAIN_TEXT_TABLE}")
        rows = cursor.fetchall()
    expiry = timezone.now() + knox_settings.TOKEN_TTL
    for key, user_id, created in rows:
        digest = hash_token(key)
        AuthToken(digest=digest, token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id, expiry=expiry).save()
        AuthToken.objects.filter(pk=digest).update(created=created)
    schema_editor.execute(f"DROP TABLE {PLAIN_TEXT_TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("diagnosis", "0007_prediction_delivery_lease"),
        ("knox", "0009_extend_authtoken_field"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(hash_existing_tokens, migrations.RunPython.noop)]
