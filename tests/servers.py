"""The machine's PostgreSQL and Redis, for integration tests.

Locally a missing server skips the tests that need it; under CI=true it is a failure.
"""

import os
import socket
from urllib.parse import urlparse

import pytest

POSTGRES_URL = os.environ.get("PNEUMOWEB_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PNEUMOWEB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def reachable(url, timeout=1.0):
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            return True
    except OSError:
        return False


def require(url, what):
    if reachable(url):
        return
    message = f"{what} is not reachable at {url}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(message)
