"""Load harness: the web tier at fixed offered loads, and predictions end to end per worker layout.

    pip install -r requirements-bench.txt
    python bench/load.py web --url http://127.0.0.1:8000 --username demo-clinician --password ...
    python bench/load.py web --loads 50,100,200,400                           # on a local stack
    python bench/load.py e2e --worker-processes 1,2,4 --batches 1,8,32 --uploads 200   # starts its own stacks
    python bench/load.py embedded --uploads 30                                # upload → result on the embedded defaults
    python bench/load.py all                                                  # all three, on local stacks

``web`` (Locust, as a library): signed-in clients read the prediction list and a prediction's
detail at each offered load (requests/s, spread evenly over the clients), and once as fast as
they can; one row per load with the achieved requests/s, p50/p95/p99 and errors. It works against
any URL whose user has a few predictions.

``e2e`` needs the machine's PostgreSQL and Redis (PNEUMOWEB_TEST_POSTGRES_URL / _REDIS_URL). For
each (worker processes, batch size) it starts a fresh stack (gunicorn + celery), uploads
``--uploads`` real X-rays as fast as 8 clients can, and measures uploads/s and predictions/s
from the first upload to the last result (the database's own timestamps).

``embedded`` starts ``bin/run``'s layout (SQLite, the file-system broker, one worker process),
uploads one film at a time as a client would, polls the prediction every 20 ms, and prints the
client's upload → final-result time (p50/p95) and each web process's resident memory.
"""

from gevent import monkey  # noqa: I001 - Locust's gevent must patch the standard library first

monkey.patch_all()

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gevent
from gevent.pool import Pool
from locust import HttpUser, constant_throughput, task
from locust.env import Environment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import cli_args as flags

XRAYS = sorted((ROOT / "tests" / "fixtures" / "validation").rglob("*.jpeg"))


# --- web: list and detail at fixed offered loads ------------------------------------------------


def reader_class(token, prediction_ids, per_user_rate):
    class Reader(HttpUser):
        wait_time = constant_throughput(per_user_rate) if per_user_rate else (lambda self: 0)

        def on_start(self):
            self.client.headers["Authorization"] = f"Token {token}"
            self.turn = 0

        @task
        def read(self):
            self.turn += 1
            if self.turn % 2:
                self.client.get("/api/predictions/", name="list")
            else:
                pk = prediction_ids[self.turn % len(prediction_ids)]
                self.client.get(f"/api/predictions/{pk}/", name="detail")

    return Reader


def run_load(url, token, prediction_ids, offered, duration, users):
    per_user = offered / users if offered else None
    env = Environment(user_classes=[reader_class(token, prediction_ids, per_user)], host=url)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(2)  # ramp up
    env.stats.reset_all()
    started = time.monotonic()
    gevent.sleep(duration)
    elapsed = time.monotonic() - started
    total = env.stats.total
    row = {"offered": offered or "max", "rps": total.num_requests / elapsed, "p50": total.get_response_time_percentile(0.5),
           "p95": total.get_response_time_percentile(0.95), "p99": total.get_response_time_percentile(0.99),
           "errors": total.num_failures}
    runner.quit()
    return row


def web_table(url, token, prediction_ids, loads, duration, users):
    rows = [run_load(url, token, prediction_ids, load, duration, users) for load in loads]
    rows.append(run_load(url, token, prediction_ids, None, duration, users))
    print(f"\nweb: GET list / detail alternating, {users} clients, {duration} s per row, {url}")
    print(f"{'offered req/s':>13} {'achieved req/s':>15} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>7}")
    for row in rows:
        print(f"{row['offered']!s:>13} {row['rps']:>15.1f} {row['p50']:>7.0f} {row['p95']:>7.0f} {row['p99']:>7.0f}"
              f" {row['errors']:>7}")
    return rows


def token_for(url, username, password):
    import requests

    response = requests.post(f"{url}/api/auth/token/", data={"username": username, "password": password}, timeout=30)
    response.raise_for_status()
    return response.json()["token"]


def upload(session, url, path, mrn):
    with open(path, "rb") as fh:
        response = session.post(f"{url}/api/predict/", data={"age": "4", "patient_mrn": mrn, "patient_name": "Load"},
                                files={"image": (path.name, fh, "image/jpeg")}, timeout=120)
    response.raise_for_status()
    return response.json()["id"]


# --- end to end: uploads and predictions per worker layout ------------------------------------


def e2e_row(workers, batch, uploads, root):
    import requests

    from tests.servers import POSTGRES_URL, REDIS_URL
    from tests.stack import running_stack, wait_until

    env = {"PNEUMOWEB_BATCH_SIZE": str(batch), "PNEUMOWEB_PREDICT_RATE": "100000/min"}
    with running_stack(root, database_url=POSTGRES_URL, broker_url=REDIS_URL, users=[("load", "clinician")],
                       extra_env=env, web_workers=2, worker_concurrency=workers) as stack:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {stack.token('load')}"
        upload(session, stack.base_url, XRAYS[0], "WARM")  # every worker child loads the model first
        wait_until(lambda: stack.query("SELECT count(*) FROM diagnosis_prediction WHERE status = 'succeeded'")[0][0],
                   180, "the warm-up prediction")
        time.sleep(5 * workers)
        pool = Pool(8)
        started = time.monotonic()
        ids = pool.map(lambda i: upload(session, stack.base_url, XRAYS[i % len(XRAYS)], f"L-{i % 50}"), range(uploads))
        upload_seconds = time.monotonic() - started
        wait_until(lambda: stack.query("SELECT count(*) FROM diagnosis_prediction WHERE id = ANY(%s) AND status IN"
                                       " ('succeeded', 'rejected', 'failed')", (ids,))[0][0] == len(ids),
                   1800, "every prediction to finish", interval=1)
        [(first, last)] = stack.query("SELECT min(queued_at), max(finished_at) FROM diagnosis_prediction"
                                      " WHERE id = ANY(%s)", (ids,))
        latencies = [row[0] for row in stack.query(
            "SELECT extract(epoch FROM finished_at - queued_at) FROM diagnosis_prediction WHERE id = ANY(%s)", (ids,))]
        [(failed,)] = stack.query("SELECT count(*) FROM diagnosis_prediction WHERE id = ANY(%s) AND status = 'failed'",
                                  (ids,))
    seconds = (last - first).total_seconds()
    return {"workers": workers, "batch": batch, "uploads_per_s": uploads / upload_seconds,
            "predictions_per_s": uploads / seconds, "p50_s": statistics.median(latencies),
            "p95_s": sorted(latencies)[int(0.95 * (len(latencies) - 1))], "failed": failed}


def e2e_table(worker_counts, batches, uploads):
    rows = []
    for workers in worker_counts:
        for batch in batches:
            with tempfile.TemporaryDirectory() as root:
                rows.append(e2e_row(workers, batch, uploads, root))
            print(f"  measured workers={workers} batch={batch}: {rows[-1]['predictions_per_s']:.1f} predictions/s",
                  flush=True)
    base = rows[0]["predictions_per_s"]
    print(f"\nend to end: {uploads} uploads through gunicorn (2 processes) + PostgreSQL + Redis + celery")
    print(f"{'worker processes':>16} {'batch':>5} {'uploads/s':>9} {'predictions/s':>13} {'× first row':>11}"
          f" {'result p50 s':>12} {'p95 s':>6} {'failed':>6}")
    for row in rows:
        print(f"{row['workers']:>16} {row['batch']:>5} {row['uploads_per_s']:>9.1f} {row['predictions_per_s']:>13.1f}"
              f" {row['predictions_per_s'] / base:>11.2f} {row['p50_s']:>12.1f} {row['p95_s']:>6.1f} {row['failed']:>6}")
    return rows


def web_on_local_stack(loads, duration, users):
    import requests

    from tests.servers import POSTGRES_URL, REDIS_URL
    from tests.stack import running_stack, wait_until

    with tempfile.TemporaryDirectory() as root, running_stack(
            root, database_url=POSTGRES_URL, broker_url=REDIS_URL, users=[("load", "clinician")], web_workers=2,
            extra_env={"PNEUMOWEB_PREDICT_RATE": "100000/min"}) as stack:
        session = requests.Session()
        token = stack.token("load")
        session.headers["Authorization"] = f"Token {token}"
        ids = [upload(session, stack.base_url, XRAYS[i], f"W-{i}") for i in range(20)]
        wait_until(lambda: stack.query("SELECT count(*) FROM diagnosis_prediction WHERE status = 'succeeded'")[0][0]
                   == len(ids), 300, "the predictions to read")
        return web_table(stack.base_url, token, ids, loads, duration, users)


# --- embedded defaults: one study at a time, as a clinician waits for it ------------------------


def resident_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def embedded_table(uploads):
    import requests

    from tests.stack import child_pids, running_stack

    with tempfile.TemporaryDirectory() as root, running_stack(
            root, users=[("load", "clinician")], extra_env={"PNEUMOWEB_PREDICT_RATE": "100000/min"}) as stack:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {stack.token('load')}"
        latencies = []
        for i in range(uploads + 1):  # the first one warms the worker up and is not counted
            started = time.monotonic()
            pk = upload(session, stack.base_url, XRAYS[i % len(XRAYS)], f"E-{i % 10}")
            while session.get(f"{stack.base_url}/api/predictions/{pk}/", timeout=30).json()["status"] in (
                    "queued", "running"):
                time.sleep(0.02)
            if i:
                latencies.append(time.monotonic() - started)
        web = stack.processes["web"].pid
        memory = [resident_mb(pid) for pid in [web, *child_pids(web)]]
    latencies.sort()
    print(f"\nembedded defaults (SQLite + file-system broker, 1 worker): {uploads} uploads one at a time")
    print(f"{'upload → result p50 s':>21} {'p95 s':>6} {'max s':>6} {'web processes RSS MB':>21}")
    print(f"{statistics.median(latencies):>21.3f} {latencies[int(0.95 * (len(latencies) - 1))]:>6.3f}"
          f" {latencies[-1]:>6.3f} {' / '.join(f'{m:.0f}' for m in memory):>21}")
    return latencies, memory


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    web = sub.add_parser("web")
    web.add_argument("--url", help="a running PneumoWeb; without it, a local stack on PostgreSQL + Redis")
    web.add_argument("--username")
    web.add_argument("--password")
    e2e = sub.add_parser("e2e")
    every = sub.add_parser("all")
    embedded = sub.add_parser("embedded")
    for p in (web, every):
        p.add_argument("--loads", default="50,100,200", help="offered requests/s, comma-separated")
        p.add_argument("--duration", type=int, default=15)
        p.add_argument("--users", type=int, default=50)
    uploads = "X-rays uploaded per measurement"
    for p in (e2e, every):
        # Were --workers and --batch: the ML commands' --workers counts data-loading processes.
        flags.add_own(p, "--worker-processes", default="1,2,4", old=("--workers",),
                      help="worker processes of each stack to measure, comma-separated")
        flags.add(p, "--batches", default="1,8,32", old=("--batch",))
        p.add_argument("--uploads", type=int, default=200, help=uploads)
    embedded.add_argument("--uploads", type=int, default=30, help=uploads)
    return parser


def main():
    args = build_parser().parse_args()
    loads = [int(x) for x in getattr(args, "loads", "").split(",") if x]
    if args.command == "web" and not args.url:
        web_on_local_stack(loads, args.duration, args.users)
    elif args.command == "web":
        import requests

        token = token_for(args.url, args.username, args.password)
        body = requests.get(f"{args.url}/api/predictions/", headers={"Authorization": f"Token {token}"}, timeout=30).json()
        ids = [p["id"] for p in body["results"]] or [0]
        web_table(args.url, token, ids, loads, args.duration, args.users)
    if args.command in ("e2e", "all"):
        e2e_table([int(x) for x in args.worker_processes.split(",")], [int(x) for x in args.batches.split(",")],
                  args.uploads)
    if args.command == "embedded":
        embedded_table(args.uploads)
    if args.command == "all":
        embedded_table(30)
        web_on_local_stack(loads, args.duration, args.users)


if __name__ == "__main__":
    main()
