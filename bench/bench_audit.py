"""Audit-trail writers with and without the sealer beside them, on a real PostgreSQL, side by side in one run.

    python bench/bench_audit.py [--server postgres://postgres@127.0.0.1:5432/postgres] [--writers 4] [--entries 500]

Creates a scratch database on the server, migrates it, then runs the same load twice (in
alternating order over ``--rounds``): ``--writers`` processes each inserting ``--entries`` audit
entries the way requests do (``LogEntry.objects.log_create``), first alone, then with a process
running ``audit.seals.seal_due()`` every 200 ms (grace 1 s). Prints entries per second, failed
writers, seals made and whether ``verify()`` finds the sealed trail intact, with the ratio of
the two throughputs. The scratch database is dropped at the end.

What it shows: sealing takes no lock a writer waits for (writers insert exactly as before), so
the ratio stays near 1; on a 2-core machine the sealer's own CPU is what it costs.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent

WRITE = """
import time
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
user = get_user_model().objects.get(username="bench")
for n in range({count}):
    LogEntry.objects.log_create(user, force_log=True, action=LogEntry.Action.ACCESS,
                                additional_data={{"action": "view", "n": n}})
"""

SEAL = """
import pathlib, time
from audit.seals import seal_due
stop = pathlib.Path({stop!r})
made = 0
while not stop.exists():
    made += len(seal_due())
    time.sleep(0.2)
print(made)
"""

VERIFY = """
import json, time
from audit.seals import seal_due, verify
time.sleep(1.1)
seal_due()
verdict = verify()
print(json.dumps({"ok": verdict.ok, "problems": [str(p) for p in verdict.problems[:3]],
                  "sealed": verdict.sealed_entries, "unsealed": verdict.unsealed_entries}))
"""


def conninfo(url):
    return "postgresql://" + url.split("://", 1)[1]


def shell(env, code):
    return subprocess.Popen([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_load(env, *, writers, entries, sealer, scratch):
    stop = scratch / f"stop-{uuid.uuid4().hex}"
    sealing = shell(env, SEAL.format(stop=str(stop))) if sealer else None
    if sealing:
        time.sleep(2)  # the sealer's interpreter and Django are up before the clock starts
    started = time.perf_counter()
    procs = [shell(env, WRITE.format(count=entries)) for _ in range(writers)]
    results = [proc.communicate() for proc in procs]
    seconds = time.perf_counter() - started
    failed = sum(proc.returncode != 0 for proc in procs)
    seals = 0
    if sealing:
        stop.touch()
        out, _ = sealing.communicate()
        seals = int(out.split()[-1]) if out.strip() else -1
    for proc, (_, err) in zip(procs, results, strict=True):
        if proc.returncode:
            print(err[-2000:], file=sys.stderr)
    return {"seconds": seconds, "rate": writers * entries / seconds, "failed": failed, "seals": seals}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    return parser


def main():
    args = build_parser().parse_args()

    import psycopg

    name = f"pw_bench_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo(args.server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / name
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PNEUMOWEB_", "CELERY_"))}
    env.update(DATABASE_URL=urlunparse(urlparse(args.server)._replace(path=f"/{name}")),
               PNEUMOWEB_VAR_DIR=str(scratch / "var"), DJANGO_SETTINGS_MODULE="pneumoweb.settings",
               PNEUMOWEB_AUDIT_SEAL_GRACE_SECONDS="1", PNEUMOWEB_AUDIT_SEAL_FILE=str(scratch / "seals.jsonl"))
    try:
        subprocess.run([sys.executable, "-m", "pneumoweb.var_dir"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "manage.py", "create_user", "bench"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        runs = {False: [], True: []}
        for round_ in range(args.rounds):
            for sealer in ((False, True) if round_ % 2 == 0 else (True, False)):
                runs[sealer].append(run_load(env, writers=args.writers, entries=args.entries, sealer=sealer,
                                             scratch=scratch))
        out, _ = shell(env, VERIFY).communicate()
        verdict = json.loads(out.strip().splitlines()[-1])
    finally:
        with psycopg.connect(conninfo(args.server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def best(rows):
        return max(rows, key=lambda r: r["rate"])

    alone, sealed = best(runs[False]), best(runs[True])
    print(f"{args.writers} writers × {args.entries} entries, best of {args.rounds} rounds each, PostgreSQL")
    print(f"{'writers':<22}{'entries/s':>12}{'failed':>8}{'seals made':>12}")
    print(f"{'alone':<22}{alone['rate']:>12.0f}{sum(r['failed'] for r in runs[False]):>8}{'-':>12}")
    print(f"{'with sealer (200 ms)':<22}{sealed['rate']:>12.0f}{sum(r['failed'] for r in runs[True]):>8}"
          f"{sum(r['seals'] for r in runs[True]):>12}")
    print(f"ratio with/alone: {sealed['rate'] / alone['rate']:.2f}")
    print(f"verify after sealing everything: ok={verdict['ok']} sealed={verdict['sealed']} "
          f"unsealed={verdict['unsealed']} {verdict['problems']}")


if __name__ == "__main__":
    main()
