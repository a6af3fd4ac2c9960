"""The commands: ``python -m ml.cli.NAME`` (train, calibrate, fit_ood, evaluate, predict, ablation, export_split).

Each is argument parsing and printing over the library (the serving core ``ml.*`` and
``ml.training``); no command imports another, and nothing in the library imports a command.
"""
