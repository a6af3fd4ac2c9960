"""The Celery worker's signal handlers: share the cores, load the model, run the periodic jobs.

Connected in ``DiagnosisConfig.ready`` (``connect()``), so every process that sets Django up —
the worker's main process and each pool child — has them; in web processes they never fire.
"""

import os

from celery.signals import celeryd_init, worker_process_init, worker_ready, worker_shutdown
from django.conf import settings

from core.checks import refuse_misconfiguration
from core.periodic import scheduler

from .predictor import get_predictor, set_torch_threads

_torch_threads = 0  # 0: torch's default (a worker started without celeryd_init, e.g. in tests)


def refuse_a_misconfigured_worker(**kwargs):
    # Django's system checks do not run in a Celery worker: the configuration rules are checked here.
    refuse_misconfiguration()


def share_the_cores_among_pool_processes(options=None, **kwargs):
    # Runs in the worker's main process before it forks its pool. Each of N pool processes gets
    # cores / N torch threads: left at torch's default (every core), two processes on two cores
    # ran 4 threads and measured 1.2 predictions/s against 3.7 for one (bench/load.py e2e).
    global _torch_threads
    cores = len(os.sched_getaffinity(0))
    processes = int((options or {}).get("concurrency") or cores)  # Celery's default: one per core
    _torch_threads = settings.PNEUMOWEB_TORCH_THREADS or max(1, cores // processes)


def load_model_in_new_worker_process(**kwargs):
    # Each prefork child loads the model (and torch) once, before its first job.
    if _torch_threads:
        set_torch_threads(_torch_threads)
    get_predictor()


def start_periodic_jobs(sender=None, **kwargs):
    # The main process, not the pool children: one scheduler per worker (core/periodic.py).
    scheduler.start()


def stop_periodic_jobs(**kwargs):
    scheduler.stop()


def connect():
    celeryd_init.connect(refuse_a_misconfigured_worker)
    celeryd_init.connect(share_the_cores_among_pool_processes)
    worker_process_init.connect(load_model_in_new_worker_process)
    worker_ready.connect(start_periodic_jobs)
    worker_shutdown.connect(stop_periodic_jobs)
