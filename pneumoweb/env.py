"""Reading settings from the environment, strictly: a value that cannot be what it names is refused.

A typo ("ture", "6O") must stop the process at start, naming the variable, rather than silently
turn a security setting off or a limit to its default.
"""

import os

from django.core.exceptions import ImproperlyConfigured

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def env(name, default=None):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
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
