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


# --- stopping and starting the machine's servers, for the fault tests ---------------------------
# The commands the machine's own setup uses to start them (see the environment notes); every test
# that stops one starts it again in a `finally`.

def _run(command):
    import subprocess

    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)


def wait_reachable(url, up, timeout=60):
    import time

    deadline = time.monotonic() + timeout
    while reachable(url, timeout=0.5) != up:
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not {'come up' if up else 'go down'} within {timeout} s")
        time.sleep(0.2)


def stop_postgres():
    _run("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main stop -m fast")
    wait_reachable(POSTGRES_URL, up=False)


def start_postgres():
    _run("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main start")
    wait_reachable(POSTGRES_URL, up=True)


def stop_redis():
    _run("redis-cli -h 127.0.0.1 -p 6379 shutdown nosave")
    wait_reachable(REDIS_URL, up=False)


def start_redis():
    if not reachable(REDIS_URL):
        _run('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
             "--dir /var/lib/redis --logfile /var/log/redis/ci.log")
    wait_reachable(REDIS_URL, up=True)
