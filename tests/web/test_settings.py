"""Settings come from the environment; with none, the embedded defaults need no server."""

import json
import subprocess
import sys
from pathlib import Path

from pneumoweb.var_dir import prepare

REPO = Path(__file__).resolve().parent.parent.parent
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "from pneumoweb.celery import app; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']), "
    "'broker': app.conf.broker_url, 'cors': s.CORS_ALLOWED_ORIGINS, 'debug': s.DEBUG, 'queue': app.conf.task_default_queue}))"
)


def probe(tmp_path, **env):
    prepare(tmp_path)  # what bin/run does before anything reads the settings
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", "PNEUMOWEB_VAR_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env={**base, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_it_defaults_to_sqlite_and_a_filesystem_broker(tmp_path):
    found = probe(tmp_path)
    assert found["engine"] == "django.db.backends.sqlite3"
    assert found["name"] == str(tmp_path / "db.sqlite3")
    assert found["broker"].startswith("filesystem://")
    assert (tmp_path / "broker" / "queue").is_dir()
    assert found["cors"] == [] and found["debug"] is False
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_reading_the_settings_writes_nothing_and_asks_for_a_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", "PNEUMOWEB_VAR_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "python -m pneumoweb.var_dir" in out.stderr
    assert list(tmp_path.iterdir()) == []
    keyed = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, capture_output=True,
                           env={**env, "DJANGO_SECRET_KEY": "k" * 60}, text=True)
    assert keyed.returncode == 0, keyed.stderr
    assert list(tmp_path.iterdir()) == []


def test_preparing_the_var_folder_twice_keeps_its_key(tmp_path):
    prepare(tmp_path)
    key = (tmp_path / "secret_key").read_text()
    prepare(tmp_path)
    assert (tmp_path / "secret_key").read_text() == key and len(key) > 40
    assert all((tmp_path / "broker" / sub).is_dir() for sub in ("queue", "processed", "control"))


def test_it_switches_to_postgres_and_redis_from_the_environment(tmp_path):
    found = probe(
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/pneumoweb",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
        CORS_ALLOWED_ORIGINS="https://a.example,https://b.example",
        CELERY_QUEUE="q1",
    )
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["name"] == "pneumoweb"
    assert found["broker"] == "redis://127.0.0.1:6379/3"
    assert found["cors"] == ["https://a.example", "https://b.example"]
    assert found["queue"] == "q1"


def test_a_key_without_a_prepared_folder_names_the_command_not_a_database_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", "DJANGO_SECRET_KEY": "k" * 60,
           "PNEUMOWEB_VAR_DIR": str(tmp_path / "not-yet")}
    out = subprocess.run([sys.executable, "manage.py", "migrate"], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "python -m pneumoweb.var_dir" in out.stderr


def test_first_starts_at_once_share_one_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: prepare(tmp_path), range(16)))
    assert len((tmp_path / "secret_key").read_text()) > 40
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".secret_key-")] == []


# --- unknown PNEUMOWEB_* names: a system check, tested in-process ---------------------------------


def test_it_warns_of_a_pneumoweb_variable_no_setting_reads_naming_the_closest(monkeypatch):
    from django.core.management import call_command

    from core.checks import check_unknown_environment
    from pneumoweb.env import unknown_names

    monkeypatch.setenv("PNEUMOWEB_RECONCILE_SECOND", "3")  # a typo: the default would stay in force
    monkeypatch.setenv("PNEUMOWEB_ZZZ_QQQ", "1")
    monkeypatch.setenv("PNEUMOWEB_TEST_POSTGRES_URL", "postgres://x")  # the test suite's own: not a setting
    found = dict(unknown_names())
    assert found == {"PNEUMOWEB_RECONCILE_SECOND": "PNEUMOWEB_RECONCILE_SECONDS", "PNEUMOWEB_ZZZ_QQQ": None}

    from django.test import override_settings

    with override_settings(PNEUMOWEB_UNKNOWN_ENVIRONMENT=unknown_names()):
        warnings = check_unknown_environment()
        assert [w.id for w in warnings] == ["pneumoweb.W001", "pneumoweb.W001"]
        assert warnings[0].msg == ("PNEUMOWEB_RECONCILE_SECOND is set, but PneumoWeb has no such setting: "
                                   "it changes nothing.")
        assert warnings[0].hint == "Did you mean PNEUMOWEB_RECONCILE_SECONDS?"
        assert warnings[1].hint == "See the settings table in README.md."
        call_command("check")  # a warning: the check command still passes


def test_it_warns_of_nothing_when_every_variable_is_a_setting():
    from core.checks import check_unknown_environment

    assert check_unknown_environment() == []
