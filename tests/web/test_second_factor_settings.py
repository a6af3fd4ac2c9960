"""PNEUMOWEB_OTP_REQUIRED and _FOR_CLINICIANS: read strictly, and switched off by the embedded demo (bin/run) only."""

import json
import re
import subprocess
import sys
from pathlib import Path

from pneumoweb.var_dir import prepare

REPO = Path(__file__).resolve().parent.parent.parent
PROBE = ("import json, django; django.setup(); from django.conf import settings as s; "
         "print(json.dumps([s.PNEUMOWEB_OTP_REQUIRED, s.PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS]))")


def read_settings(tmp_path, **env):
    prepare(tmp_path)
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", "PNEUMOWEB_VAR_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**base, **env}, capture_output=True, text=True)


def test_it_requires_it_of_staff_by_default_and_of_clinicians_on_request(tmp_path):
    assert json.loads(read_settings(tmp_path).stdout.splitlines()[-1]) == [True, False]
    both = read_settings(tmp_path, PNEUMOWEB_OTP_REQUIRED_FOR_CLINICIANS="true")
    assert json.loads(both.stdout.splitlines()[-1]) == [True, True]


def test_it_refuses_a_typo_at_start(tmp_path):
    # A contradiction between the two settings is a system check (tests/web/test_configuration_checks.py).
    typo = read_settings(tmp_path, PNEUMOWEB_OTP_REQUIRED="flase")
    assert typo.returncode != 0 and "PNEUMOWEB_OTP_REQUIRED='flase'" in typo.stderr


def bin_run_second_factor_block():
    """The lines of bin/run that decide the demo's setting (from its comment to the closing ``fi``)."""
    text = (REPO / "bin" / "run").read_text()
    return re.search(r"^# The demo's users have no authenticator app yet.*?^fi$", text, re.S | re.M)[0]


def run_block(**env):
    script = bin_run_second_factor_block() + '\necho "$PNEUMOWEB_OTP_REQUIRED"\necho "$otp_note"\n'
    out = subprocess.run(["bash", "-euc", script], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.splitlines()


def test_bin_run_switches_it_off_for_the_demo_and_says_how_to_turn_it_on():
    value, note = run_block()
    assert value == "false"
    assert "not required in this demo" in note and "PNEUMOWEB_OTP_REQUIRED=true" in note
    # The line is printed with the addresses once the server answers.
    assert 'echo "$otp_note"' in (REPO / "bin" / "run").read_text()


def test_bin_run_keeps_what_the_operator_set():
    value, note = run_block(PNEUMOWEB_OTP_REQUIRED="true")
    assert value == "true" and "PNEUMOWEB_OTP_REQUIRED=true" in note
