"""The flags the commands share (``ml/cli/``, ``bench/``): each name has one meaning and one help text.

A flag used by more than one command is added from :data:`FLAGS` with :func:`add` (or a named
helper: :func:`add_sources`, :func:`add_films`, :func:`add_model`, ...); a command chooses only
what may differ between commands — whether the flag is required, its default, its metavar, and
for ``--films`` whether it repeats — never its type or help. ``tests/ml/test_ml_cli_flags.py``
builds every command's parser and holds them to it.

The two kinds of data a command reads have two names: ``--data NAME=PATH``, the training sources
whose patient-grouped split a card records, and ``--films PATH``, labelled films to measure a
model on. ``--model`` is a checkpoint and defaults to the shipped one everywhere it is only read; the
commands that rewrite its card in place require it.

A flag renamed so that its name keeps one meaning still answers to its old spelling for one
release (hidden from ``--help``, with a warning on stderr); a flag whose purpose is gone answers
with a warning and does nothing (:func:`retire`).

Not a command (commands do not import each other): the ``ml.cli`` layer's argument parsing,
imported by the commands and the benchmarks only.
"""

import argparse
import sys
from pathlib import Path

from .constants import AGE_MAX_YEARS, AGE_MIN_YEARS, DEFAULT_WEIGHTS, REPO_ROOT


def training_source(text):
    """``NAME=PATH`` → (name, Path): ``ml.training.data.parse_source``, imported when a value is parsed."""
    from .training.data import parse_source

    return parse_source(text)


def comma_floats(text):
    """``0,0.5,1`` → [0.0, 0.5, 1.0]."""
    return [float(value) for value in text.split(",")]


FLAGS = {
    # What the command reads.
    "--data": dict(type=training_source, action="append", metavar="NAME=PATH", help=(
        "a training source, NAME=PATH: a folder with NORMAL/ and PNEUMONIA/, or a CSV "
        "(path,label[,age][,patient][,view]); repeat for each source. A command that rebuilds a card's "
        "patient-grouped split needs every source the card records, unchanged (checked by digest)")),
    "--films": dict(type=Path, metavar="PATH", help=(
        "labelled films to measure on: a folder with NORMAL/ and PNEUMONIA/, or a CSV "
        "(path,label[,age][,patient][,view], as ml.cli.export_split writes); a command that measures "
        "several sets takes it repeated")),
    "--model": dict(type=Path, metavar="WEIGHTS", help=(
        "a checkpoint: its .safetensors weights, with its .json card beside them; default: the shipped model, "
        f"{DEFAULT_WEIGHTS.relative_to(REPO_ROOT)}")),
    "--rereads": dict(type=Path, metavar="CSV", help=(
        "radiologists' re-reads of NIH films (rsna.csv; ml.training.rsna), matched to the films by file name")),
    "--boxes": dict(type=Path, metavar="CSV", help=(
        "radiologists' opacity boxes on NIH films (boxes.csv; ml.training.rsna), matched to the films by file name")),
    "--age": dict(type=float, metavar="YEARS", help=(
        f"the age in years ({AGE_MIN_YEARS:g}–{AGE_MAX_YEARS:g}) of every film, in place of any recorded age "
        "(a CSV's age column, a DICOM's PatientAge); a film without an age takes the most sensitive point")),
    # What it writes.
    "--out": dict(type=Path, metavar="PATH", help=(
        "where the command writes what it makes; its description says what (a checkpoint, a JSON file or a "
        "folder) and what it does without --out")),
    "--cache": dict(type=Path, metavar="PATH", help="where computed features are kept, for a later run to reuse"),
    "--name": dict(metavar="NAME", help="the model's name, recorded in its card and shown with every prediction"),
    # How it runs.
    "--seed": dict(type=int, help=(
        "seed of the command's random draws (initial weights, sampling, subsamples, bootstrap resamples)")),
    "--workers": dict(type=int, help="data-loading worker processes (0: load in the main process)"),
    "--batch-size": dict(type=int, help="films per forward pass"),
    "--device": dict(help="where the model runs: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N"),
    "--threads": dict(type=int, help="torch CPU threads (0: torch's default)"),
    "--shifts": dict(metavar="NAMES", help=(
        "ml.shift's named shifts (ml.shift.SHIFTS), comma-separated, or all; the film as it is (none) is always "
        "measured beside them")),
    "--no-gate": dict(action="store_true", help="skip counting what the OOD gate would refuse"),
    # Training.
    "--probe-epochs": dict(type=int, help="epochs of fitting the fusion layers on fixed (cached) features"),
    "--epochs": dict(type=int, help="fine-tuning epochs, each of --epoch-samples films (ml.cli.train: 0 = the probe alone)"),
    "--epoch-samples": dict(type=int, help="films drawn per fine-tuning epoch"),
    "--lr-finetune-head": dict(type=float, help="learning rate of the fusion layers while fine-tuning"),
    "--weight-decay": dict(type=float, help="AdamW weight decay of the fine-tuned backbone(s)"),
    "--age-dropout": dict(type=float, help="chance a recorded age is fed as missing during training"),
    "--ood-probe-images": dict(type=int, help="training films whose inverted/cropped copies train the OOD probe"),
    # Benchmarks.
    "--repeats": dict(type=int, help="timed rounds per measurement (after warm-up)"),
    "--batches": dict(help="batch sizes to measure, comma-separated"),
}

# What a command may choose for a shared flag; the rest (type, help) is the flag's, in FLAGS.
CHOOSABLE = {"default", "required", "metavar"}


def add(parser, flag, *, old=(), **chosen):
    """Add the shared ``flag`` to ``parser``; ``old``: its former spellings in this command (see the module doc)."""
    unknown = set(chosen) - CHOOSABLE
    if unknown:
        raise TypeError(f"{flag}: {sorted(unknown)} belong to the flag's one meaning (ml.cli_args.FLAGS)")
    return _add(parser, flag, {**FLAGS[flag], **chosen}, old)


def add_own(parser, flag, *, old=(), **spec):
    """A command's own flag (not in :data:`FLAGS`) renamed so that its name keeps one meaning: ``old`` still parses."""
    return _add(parser, flag, spec, old)


def _add(parser, flag, spec, old):
    if not old:
        return parser.add_argument(flag, **spec)
    repeat = spec.pop("action", None) == "append"
    action = parser.add_argument(flag, *old, action=Renamed, repeat=repeat, **spec)
    action.option_strings = [flag]  # the old spellings still parse (the parser keeps them), unseen in --help
    action.old = tuple(old)
    return action


def add_sources(parser, *, required=True):
    """``--data NAME=PATH`` (repeated): the training sources a card's split is rebuilt from."""
    return add(parser, "--data", required=required)


def add_films(parser, *, several=False, required=True, old=()):
    """``--films PATH``: labelled films to measure on (``several``: repeated)."""
    spec = {**FLAGS["--films"], "required": required, **({"action": "append"} if several else {})}
    return _add(parser, "--films", spec, old)


def add_model(parser, *, old=(), rewrites=False):
    """``--model WEIGHTS``, the shipped checkpoint by default.

    ``rewrites``: the command rewrites the checkpoint's card in place (calibrate, fit_ood, fit_subtype),
    so it must be named: a default would let a forgotten flag rewrite the shipped model's card.
    """
    if rewrites:
        return add(parser, "--model", required=True, old=old)
    return add(parser, "--model", default=DEFAULT_WEIGHTS, old=old)


def add_out(parser, *, required=False, default=None, metavar="PATH"):
    return add(parser, "--out", required=required, default=default, metavar=metavar)


def add_seed(parser, default=0):
    return add(parser, "--seed", default=default)


def add_workers(parser, default=0):
    return add(parser, "--workers", default=default)


def add_batch_size(parser, default=32):
    return add(parser, "--batch-size", default=default)


def add_device(parser, default="auto"):
    return add(parser, "--device", default=default)


def add_threads(parser, default=0):
    return add(parser, "--threads", default=default)


def add_age(parser):
    return add(parser, "--age")


def check_age(parser, args):
    """Exit with a usage error (status 2) when ``--age`` is outside the ages the platform accepts."""
    if args.age is not None and not AGE_MIN_YEARS <= args.age <= AGE_MAX_YEARS:
        parser.error(f"--age must be between {AGE_MIN_YEARS:g} and {AGE_MAX_YEARS:g} years")


class Renamed(argparse.Action):
    """argparse's store (or, with ``repeat``, append) for a flag that also answers to its old spellings."""

    def __init__(self, option_strings, dest, *, repeat=False, **kwargs):
        self.repeat, self.old = repeat, ()
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.old:
            print(f"{parser.prog}: {option_string} is now {self.option_strings[0]}; the old spelling goes in the "
                  "next release", file=sys.stderr)
        if self.repeat:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


class Retired(argparse.Action):
    """A flag whose purpose is gone: accepted for one release, with a warning; it changes nothing."""

    def __init__(self, option_strings, dest, *, why, **kwargs):
        self.why = why
        super().__init__(option_strings, dest, nargs=0, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} does nothing any more ({self.why}); it goes in the next release",
              file=sys.stderr)


def retire(parser, flag, why):
    return parser.add_argument(flag, action=Retired, why=why, default=argparse.SUPPRESS)
