"""Where a web request's time goes: the prediction list and detail, in process, under cProfile.

    python bench/profile_api.py [--requests 200] [--top 25]

Builds a throw-away SQLite database (20 predictions of one clinician, from the test factories),
signs in with a token, alternates ``GET /api/predictions/`` and ``GET /api/predictions/{id}/``
through Django's test client — the same middleware, authentication, audit trail and serializers
as under gunicorn, without the HTTP server — and prints milliseconds per request (unprofiled),
the share of the profiled time in DRF's serializers and in the ORM's query execution, and the
functions with the most cumulative time. It needs the test requirements (factories).
"""

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def share(stats, file_part, function):
    """Cumulative seconds of the outermost calls of ``function`` in files containing ``file_part``."""
    return max((row[3] for (path, _line, name), row in stats.stats.items()
                if file_part in path and name == function), default=0.0)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    return parser


def main():
    args = build_parser().parse_args()
    os.environ["PNEUMOWEB_VAR_DIR"] = tempfile.mkdtemp(prefix="pneumoweb-profile-")
    from pneumoweb.var_dir import prepare

    prepare(os.environ["PNEUMOWEB_VAR_DIR"])  # what bin/run does before anything reads the settings
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    os.environ["DJANGO_SETTINGS_MODULE"] = "pneumoweb.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from tests.factories import PatientFactory, PredictionFactory

    call_command("migrate", verbosity=0)
    patient = PatientFactory()
    predictions = [PredictionFactory(study__patient=patient) for _ in range(20)]
    _, token = AuthToken.objects.create(patient.owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    def requests(n):
        for i in range(n):
            path = "/api/predictions/" if i % 2 else f"/api/predictions/{predictions[i % 20].pk}/"
            assert client.get(path).status_code == 200, path

    requests(20)  # warm up: imports, URL resolver, first queries
    started = time.perf_counter()
    requests(args.requests)
    per_request = (time.perf_counter() - started) * 1000 / args.requests
    profile = cProfile.Profile()
    profile.runcall(requests, args.requests)
    stats = pstats.Stats(profile)
    total = stats.total_tt
    print(f"{per_request:.1f} ms per request (list and detail alternating, {args.requests} requests, unprofiled)")
    print(f"under the profiler: DRF serializers {100 * share(stats, 'rest_framework/serializers.py', 'data') / total:.0f} %"
          f" of the time, the ORM's query execution {100 * share(stats, 'django/db/models/sql/compiler.py', 'execute_sql') / total:.0f} %")
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
