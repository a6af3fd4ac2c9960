"""Reading settings from the environment, strictly: a value that cannot be what it names is refused.

A typo ("ture", "6O") must stop the process at start, naming the variable, rather than silently
turn a security setting off or a limit to its default.
"""

import difflib
import os

from django.core.exceptions import ImproperlyConfigured

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}

# Every name the settings asked for: a PNEUMOWEB_* variable that is set and was never asked for is
# most likely a typo ("PNEUMOWEB_RECONCILE_SECOND"), which would otherwise leave its default in force.
_asked = {"PNEUMOWEB_VAR_DIR"}  # read by pneumoweb/var_dir.py, before the settings
# Variables of the test suite and the benchmarks, not of the product.
_NOT_SETTINGS = ("PNEUMOWEB_TEST_", "PNEUMOWEB_BENCH_")


def env(name, default=None):
    _asked.add(name)
    return os.environ.get(name, default)


def unknown_names(prefix="PNEUMOWEB_"):
    """``[(name, closest known name or None)]`` for each variable set with ``prefix`` that no setting reads."""
    known = sorted(name for name in _asked if name.startswith(prefix))
    return [(name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.8)), None))
            for name in sorted(os.environ) if name.startswith(prefix) and name not in _asked
            and not name.startswith(_NOT_SETTINGS)]


def env_bool(name, default=False):
    value = env(name)
    if value is None:
        return default
    value = value.strip().lower()
    if value not in TRUE | FALSE:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {sorted(TRUE | FALSE - {''})}")
    return value in TRUE


def env_list(name, default=""):
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def _converted(name, default, convert, what):
    value = env(name, str(default))
    try:
        return convert(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not {what}") from None


def env_int(name, default):
    return _converted(name, default, int, "a whole number")


def env_float(name, default):
    return _converted(name, default, float, "a number")


def env_choice(name, default, choices):
    value = env(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value
