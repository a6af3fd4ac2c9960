"""Write the validation (and training) films a checkpoint's card records, one CSV per source.

    python -m ml.cli.export_split --model models/pneumoweb-v3.safetensors --out runs/splits \\
        --data kermany=../shared/data/chest_xray/train --data nih=../shared/data/nih_pneumonia/labels.csv

Each CSV (``{source}-val.csv``, ``{source}-train.csv``) has the columns ``ml.cli.evaluate`` reads —
``path,label,age,patient,view`` with absolute paths — so any checkpoint can be measured on
exactly the films the card's figures come from: ``python -m ml.cli.evaluate --films runs/splits/nih-val.csv``.
``--model`` is the shipped model unless given; ``--out`` is the folder the CSVs go in.
"""

import argparse
import csv
from pathlib import Path

from .. import cli_args as flags
from ..checkpoint import load_checkpoint
from ..training.data import LABELS
from ..training.splits import SplitError, recorded_validation_split

NAMES = {value: key for key, value in LABELS.items()}


def write_csv(samples, path):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "age", "patient", "view"])
        for s in samples:
            writer.writerow([str(Path(s.path).resolve()), NAMES[s.label], "" if s.age is None else s.age,
                             s.patient, s.view])


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_model(parser)
    flags.add_sources(parser)
    flags.add_out(parser, required=True, metavar="DIR")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _, card = load_checkpoint(args.model)
    try:
        val, train = recorded_validation_split(card.raw, dict(args.data))
    except SplitError as exc:
        parser.exit(2, f"ml.cli.export_split: {exc}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    for part, samples in (("val", val), ("train", train)):
        for source in sorted({s.source for s in samples}):
            path = args.out / f"{source}-{part}.csv"
            write_csv([s for s in samples if s.source == source], path)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
