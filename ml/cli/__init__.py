"""The commands: ``python -m ml.cli.NAME`` (train, train_focus, calibrate, fit_ood, fit_subtype, evaluate, predict,
shift, sweep_maps, ablation, export_split).

Each is argument parsing and printing over the library (the serving core ``ml.*`` and
``ml.training``); no command imports another, and nothing in the library imports a command. Each
builds its parser in ``build_parser()``; the flags they share, one meaning per name, come from
``ml.cli_args`` (beside this package, so that no command imports a module of it).
"""
