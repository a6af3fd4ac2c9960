"""Prediction jobs: every accepted study reaches a final state, whatever fails around it.

- ``lease``     — claiming predictions and holding them (the one lease-expiry rule, the attempt limit);
- ``dispatch``  — the outbox: sending jobs after commit, and the reconciler that finds lost ones;
- ``tasks``     — the Celery task (idempotent, keyword-only);
- ``predictor`` — the worker's model, loaded once per process, and running it on a batch of studies;
- ``results``   — writing a batch's answers and heatmaps in one transaction, or leaving no file behind;
- ``worker``    — the Celery worker's signal handlers (connected in ``DiagnosisConfig.ready``).

Imports go one way: worker → dispatch → tasks → lease / predictor / results → diagnosis.models.
"""
