"""A real PneumoWeb stack in subprocesses, for the integration tests.

``Stack`` runs ``manage.py migrate``, creates users with ``manage.py create_user``,
starts ``celery -A pneumoweb worker`` and ``gunicorn pneumoweb.wsgi``, and stops
them again (terminate, then kill). Every stack has its own ``PNEUMOWEB_VAR_DIR``
(embedded database, broker folders, media) and its own Celery queue; with
PostgreSQL it also gets a database of its own, created here and dropped after.

    with running_stack(tmp_path, database_url=..., broker_url=...) as stack:
        api = stack.api_session("alice")
        ...

Logs of every process are kept in files beside the var dir; ``stack.log_marks()``
and ``stack.print_logs_since(marks)`` show what they wrote during one test.
"""

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

from pneumoweb.var_dir import prepare

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"
FINISHED = ("succeeded", "rejected", "failed", "cancelled")

# The test process's own configuration must not leak into the stack.
_STRIPPED_ENV_PREFIXES = ("DATABASE_", "CELERY_", "CACHE_URL", "DJANGO_", "PNEUMOWEB_")

# The first job waits for the worker child to load the model (~5-10 s on a small CPU).
PREDICTION_TIMEOUT = 120
START_TIMEOUT = 90


# --- PostgreSQL: one fresh database per stack ----------------------------------


def create_database(server_url, template=None):
    """Create a database on the server of ``server_url`` (empty, or a copy of ``template``); return its URL."""
    import psycopg

    name = f"pw_e2e_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(_psycopg_conninfo(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return urlunparse(urlparse(server_url)._replace(path=f"/{name}"))


# --- migrated once per test process ------------------------------------------------
# `manage.py migrate` costs ~2.5 s of CPU per stack; a stack's database is instead a copy of one
# migrated in this process: PostgreSQL's CREATE DATABASE … TEMPLATE, or a copy of a SQLite file.
# Tests of migrating itself (bin/run on a new machine, restore into an empty database) do not use it.

_migrated = {}


def process_env(var_dir, **extra):
    """The environment of a stack's processes: this one's, less its own configuration, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    return {**env, "PNEUMOWEB_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "pneumoweb.settings", **extra}


def _migrate_into(var_dir, database_url=None):
    prepare(var_dir)
    env = process_env(var_dir, **({"DATABASE_URL": database_url} if database_url else {}))
    result = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"migrate failed:\n{result.stdout}\n{result.stderr}"


def migrated_postgres_template(server_url):
    """The name of a migrated database on ``server_url``, made once per process, dropped at its exit."""
    if server_url not in _migrated:
        import atexit
        import tempfile

        database_url = create_database(server_url)
        _migrate_into(Path(tempfile.mkdtemp(prefix="pw-template-")), database_url)
        atexit.register(drop_database, database_url)
        _migrated[server_url] = urlparse(database_url).path.lstrip("/")
    return _migrated[server_url]


def migrated_sqlite_file():
    """A migrated embedded database file, made once per process (copy it: never open it in place)."""
    if "sqlite" not in _migrated:
        import tempfile

        var_dir = Path(tempfile.mkdtemp(prefix="pw-template-")) / "var"
        _migrate_into(var_dir)
        _migrated["sqlite"] = var_dir / "db.sqlite3"
    return _migrated["sqlite"]


def drop_database(database_url):
    import psycopg

    name = urlparse(database_url).path.lstrip("/")
    assert name.startswith("pw_e2e_"), f"refusing to drop {name!r}"
    server_url = urlunparse(urlparse(database_url)._replace(path="/postgres"))
    with psycopg.connect(_psycopg_conninfo(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _psycopg_conninfo(url):
    # psycopg understands postgresql:// but not the postgres:// alias dj-database-url accepts.
    return "postgresql://" + url.split("://", 1)[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_pids(pid):
    """Direct children of ``pid`` (Linux /proc), e.g. the worker's pool processes."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            children.append(int(entry.name))
    return children


def wait_until(predicate, timeout, what, interval=0.25, explain=lambda: ""):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}.\n{explain()}")
        time.sleep(interval)


class Stack:
    def __init__(self, root, *, database_url=None, broker_url=None, collectstatic=False, extra_env=None,
                 web_workers=1, worker_concurrency=1, migrated=False):
        """``root``: an empty folder. No ``database_url``/``broker_url``: the embedded defaults.
        ``migrated``: the database is a migrated copy already (``start`` does not migrate)."""
        self.root = Path(root)
        self.var_dir = self.root / "var"
        self.logs_dir = self.root / "logs"
        prepare(self.var_dir)  # what bin/run does first
        self.logs_dir.mkdir()
        self.database_url = database_url
        self.broker_url = broker_url
        self.collectstatic = collectstatic
        self.web_workers = web_workers
        self.worker_concurrency = worker_concurrency
        self.migrated = migrated
        self.queue = f"pw-e2e-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes = {}
        self._log_files = []
        self.env = process_env(self.var_dir, CELERY_QUEUE=self.queue, PYTHONUNBUFFERED="1", LOG_LEVEL="INFO",
                               **(extra_env or {}))
        # As the embedded demo (bin/run): reviewers and admins sign in without a second factor;
        # tests of the second factor pass PNEUMOWEB_OTP_REQUIRED="true" in extra_env.
        self.env.setdefault("PNEUMOWEB_OTP_REQUIRED", "false")
        if database_url:
            self.env["DATABASE_URL"] = database_url
        if broker_url:
            self.env["CELERY_BROKER_URL"] = broker_url

    @property
    def media_root(self):
        return self.var_dir / "media"

    def url(self, path):
        return self.base_url + path

    # --- lifecycle ------------------------------------------------------------

    def start(self, users=()):
        """Migrate, create ``users`` ((name, role) pairs, password PASSWORD), start worker and web."""
        if not self.migrated:
            self.manage("migrate", "--noinput")
        if self.collectstatic:
            self.manage("collectstatic", "--noinput", "--verbosity", "0")
        # Worker and web start while the users are created: the machine has few cores.
        self.start_worker(wait=False)
        self.processes["web"] = self._spawn(
            "web",
            [
                sys.executable, "-m", "gunicorn", "pneumoweb.wsgi",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.web_workers), "--timeout", "60",
                # as bin/run: threads, so an idle browser socket holds no worker (see bin/run)
                "--worker-class", "gthread", "--threads", "4",
                "--access-logfile", "-",
            ],
        )
        self.create_users(users)
        wait_until(self._web_answers, START_TIMEOUT, "the web server to answer", interval=0.5, explain=self.explain)
        self._wait_for_worker()
        return self

    def start_worker(self, wait=True):
        """Start (again) the one celery worker; with ``wait``, until it says it is ready."""
        self._worker_starts = getattr(self, "_worker_starts", 0) + 1
        self.processes["worker"] = self._spawn(
            "worker",
            [
                sys.executable, "-m", "celery", "-A", "pneumoweb", "worker",
                "--concurrency", str(self.worker_concurrency), "--loglevel", "INFO",
                "--hostname", f"{self.queue}-{self._worker_starts}@%h",
                # No chatter with other workers on the same Redis (other test runs, a dev stack).
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
        )
        if wait:
            self._wait_for_worker()

    def _wait_for_worker(self):
        wait_until(
            lambda: self._alive("worker") and self.log("worker").count(" ready.") >= self._worker_starts,
            START_TIMEOUT, "the celery worker to be ready", interval=0.5, explain=self.explain,
        )

    def supervise_worker(self):
        """Start the worker again if it has exited, as a deployment's supervisor does (systemd
        Restart=always, bin/worker's loop). Celery's consumer can die on a Redis reconnect (an
        upstream kombu race: "'NoneType' object has no attribute 'hostname'" while closing a
        channel); recovery is then the supervisor's restart plus the reconciler. Returns whether it
        restarted the worker."""
        worker = self.processes["worker"]
        if worker.poll() is None:
            return False
        self.start_worker(wait=False)
        return True

    def kill_worker(self):
        """SIGKILL the worker's whole process group (main process and pool): a machine lost mid-job."""
        worker = self.processes["worker"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def start_listener(self):
        """Start ``manage.py dicom_listener`` (settings from the stack's env); waits until it listens."""
        self._listener_starts = getattr(self, "_listener_starts", 0) + 1
        self.processes["listener"] = self._spawn("listener", [sys.executable, "manage.py", "dicom_listener"])
        wait_until(lambda: self._alive("listener") and
                   self.log("listener").count("DICOM listener up") >= self._listener_starts,
                   START_TIMEOUT, "the DICOM listener to listen", interval=0.3, explain=self.explain)

    def kill_listener(self):
        """SIGKILL the listener (a crash: no chance to finish what it was doing)."""
        listener = self.processes["listener"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(listener.pid, signal.SIGKILL)
        listener.wait(timeout=10)

    def stop(self):
        for name in ("web", "worker", "listener"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)  # in case a test left it paused
                # The main process only: gunicorn and celery stop their own children.
                process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # pool children left behind, if any
        for fh in self._log_files:
            fh.close()
        self._log_files = []
        if self.broker_url and self.broker_url.startswith("redis://"):
            self._delete_redis_queue()

    def _spawn(self, name, argv):
        log = open(self.logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log_files.append(log)
        # A session of its own, so that stop() can kill whatever the group leaves behind.
        return subprocess.Popen(
            argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def _alive(self, name):
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            raise AssertionError(f"The {name} process exited.\n{self.explain()}")
        return True

    def _web_answers(self):
        self._alive("web")
        try:
            with self.http() as http:
                http.get(self.url("/api/"), timeout=5)
        except requests.RequestException:  # not listening yet, or still loading the application
            return False
        return True

    def _delete_redis_queue(self):
        import redis

        with contextlib.suppress(redis.RedisError):
            client = redis.Redis.from_url(self.broker_url)
            client.delete(self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}")
            client.close()

    # --- management commands ----------------------------------------------------

    def manage(self, *args, timeout=120):
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def create_user(self, name, role="clinician", password=PASSWORD):
        self.manage("create_user", name, "--role", role, "--password", password)

    def create_users(self, users, password=PASSWORD):
        """``create_user`` for each (name, role) pair, in one process (each process costs ~1.5 s of CPU)."""
        if users:
            calls = "\n".join(f"call_command('create_user', {name!r}, role={role!r}, password={password!r})"
                              for name, role in users)
            self.manage("shell", "-c", f"from django.core.management import call_command\n{calls}")

    # --- the worker -------------------------------------------------------------

    @contextlib.contextmanager
    def paused_worker(self):
        """Freeze the worker (SIGSTOP): jobs submitted meanwhile stay queued until the block ends."""
        worker = self.processes["worker"]
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(worker.pid, signal.SIGCONT)

    def worker_children(self):
        return child_pids(self.processes["worker"].pid)

    def send_task(self, name, kwargs, task_id):
        """Publish a task message on this stack's broker and queue, as the web process would."""
        from celery import Celery

        app = Celery("pneumoweb-e2e-client", set_as_current=False)
        if self.broker_url:
            app.conf.broker_url = self.broker_url
        else:
            folder = str(self.var_dir / "broker" / "queue")
            app.conf.broker_url = "filesystem://"
            app.conf.broker_transport_options = {"data_folder_in": folder, "data_folder_out": folder}
        app.conf.task_serializer = "json"
        with app.connection_for_write() as connection:
            app.send_task(name, kwargs=kwargs, queue=self.queue, task_id=task_id, connection=connection)

    # --- the database -----------------------------------------------------------

    def query(self, sql, params=()):
        """Rows of ``sql`` (placeholders written %s) on the stack's database."""
        if self.database_url:
            import psycopg

            with psycopg.connect(_psycopg_conninfo(self.database_url)) as conn:
                return conn.execute(sql, params).fetchall()
        with contextlib.closing(sqlite3.connect(self.var_dir / "db.sqlite3", timeout=30)) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()

    def stored_files(self):
        """Files under the media folders, as the names rows store ("studies/…", "heatmaps/…")."""
        return {p.relative_to(self.media_root).as_posix() for folder in ("studies", "heatmaps", "reports")
                for p in (self.media_root / folder).rglob("*") if p.is_file()}

    def named_files(self):
        """Every file name a row of the stack's database points at."""
        rows = self.query("SELECT image FROM diagnosis_study")
        rows += self.query("SELECT heatmap FROM diagnosis_prediction UNION SELECT heatmap_cnn FROM diagnosis_prediction"
                           " UNION SELECT heatmap_vit FROM diagnosis_prediction UNION SELECT pdf FROM diagnosis_report")
        return {name for (name,) in rows if name}

    def stored_image(self, prediction_id):
        """Path of the X-ray file the worker will read for this prediction."""
        [(name,)] = self.query(
            "SELECT s.image FROM diagnosis_study s JOIN diagnosis_prediction p ON p.study_id = s.id"
            " WHERE p.id = %s",
            (prediction_id,),
        )
        return self.media_root / name

    # --- REST clients -----------------------------------------------------------

    @staticmethod
    def http():
        session = requests.Session()
        session.trust_env = False  # the stack is on 127.0.0.1: never through a proxy from the environment
        return session

    def token(self, username, password=PASSWORD):
        with self.http() as http:
            response = http.post(
                self.url("/api/auth/token/"), data={"username": username, "password": password}, timeout=30
            )
        assert response.status_code == 200, response.text
        return response.json()["token"]

    def log_in(self, page, username, password=PASSWORD):
        """Sign a Playwright ``page`` in through the login form."""
        page.goto(self.url("/accounts/login/"))
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("[data-testid=login-submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)

    def api_session(self, username, password=PASSWORD):
        session = self.http()
        session.headers["Authorization"] = f"Token {self.token(username, password)}"
        session.headers["Accept"] = "application/json"
        return session

    def submit_xray(self, session, xray_path, *, age="4.5", **fields):
        """POST /api/predict/ with a real X-ray; returns the response (202 expected)."""
        with open(xray_path, "rb") as fh:
            return session.post(
                self.url("/api/predict/"),
                data={"age": age, **fields},
                files={"image": (Path(xray_path).name, fh, "image/jpeg")},
                timeout=60,
            )

    def wait_for_prediction(self, session, prediction_url, statuses=FINISHED, timeout=PREDICTION_TIMEOUT):
        """Poll GET prediction_url until its status is one of ``statuses``; returns the body."""
        last = {}

        def reached():
            response = session.get(prediction_url, timeout=30)
            assert response.status_code == 200, response.text
            last.update(response.json())
            return last["status"] in statuses

        wait_until(
            reached, timeout, f"{prediction_url} to reach {'/'.join(statuses)}", interval=0.5,
            explain=lambda: f"last body: {last}\n{self.explain()}",
        )
        return dict(last)

    # --- logs -------------------------------------------------------------------

    def log(self, name):
        path = self.logs_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_marks(self):
        return {p.stem: p.stat().st_size for p in self.logs_dir.glob("*.log")}

    def print_logs_since(self, marks):
        for path in sorted(self.logs_dir.glob("*.log")):
            with open(path, "rb") as fh:
                fh.seek(marks.get(path.stem, 0))
                text = fh.read().decode(errors="replace")
            if text.strip():
                print(f"----- {path.stem} log -----\n{text}")

    def explain(self, tail=6000):
        parts = []
        for name in ("worker", "web"):
            process = self.processes.get(name)
            state = "not started" if process is None else f"exit code {process.poll()}"
            parts.append(f"----- {name} ({state}), last lines of its log -----\n{self.log(name)[-tail:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def running_stack(root, *, database_url=None, broker_url=None, users=(), **kwargs):
    """A started Stack; with a PostgreSQL ``database_url`` (a server URL), on a fresh database — a copy
    of one migrated once per process, as the embedded database is a copy of a migrated file."""
    own_database = create_database(database_url, template=migrated_postgres_template(database_url)) \
        if database_url else None
    stack = Stack(root, database_url=own_database, broker_url=broker_url, migrated=True, **kwargs)
    if not database_url:
        shutil.copyfile(migrated_sqlite_file(), stack.var_dir / "db.sqlite3")
    try:
        stack.start(users=users)
        yield stack
    finally:
        stack.stop()
        if own_database:
            drop_database(own_database)


@contextlib.contextmanager
def logs_shown_on_failure(stack):
    """Wrap one test: whatever the processes logged during it is printed (pytest shows it on failure)."""
    marks = stack.log_marks()
    try:
        yield
    finally:
        stack.print_logs_since(marks)
