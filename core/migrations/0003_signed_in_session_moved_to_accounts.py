"""SignedInSession now belongs to accounts (accounts/migrations/0001): removed from core's state only."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0002_periodic_job"),
        ("accounts", "0001_signed_in_session"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="SignedInSession")],
                                            database_operations=[]),
    ]
