"""Refit the out-of-distribution gate of a trained checkpoint on its recorded split, and measure it.
Other extra tensors the checkpoint carries (the ``subtype.*`` head) are kept.

    python -m ml.cli.fit_ood --model models/pneumoweb-v3.safetensors \\
        --data kermany=../shared/data/chest_xray/train --data nih=../shared/data/nih_pneumonia/labels.csv

How the gate is fitted and measured: ``ml/training/gate.py``. ``ml.cli.train`` runs this at the end
of training; the gate's tensors and report are written into the checkpoint and its card: those of
``--model`` (the shipped model unless given) in place, or a copy at ``--out``.
"""

import argparse
import json

import torch

from .. import cli_args as flags
from ..checkpoint import load_checkpoint, save_checkpoint
from ..training.gate import fit_and_measure, format_report, gate_card
from ..training.splits import SplitError, recorded_validation_split


def fit_into_checkpoint(model_path, data, out=None, *, probe_images=1500, seed=0, workers=0):
    model, card, extra = load_checkpoint(model_path, with_extra=True)
    val, train = recorded_validation_split(card.raw, data)
    gate, report = fit_and_measure(model, train, val, probe_images=probe_images, seed=seed, workers=workers)
    card = {k: v for k, v in card.raw.items() if k not in ("weights_sha256", "config")}
    card["ood"] = gate_card(gate, report)
    card = save_checkpoint(model.float().to(memory_format=torch.contiguous_format), card, out or model_path,
                           extra={**{k: v for k, v in extra.items() if not k.startswith("ood.")}, **gate.tensors()})
    return card, report


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_model(parser, rewrites=True)
    flags.add_sources(parser)
    flags.add_out(parser, metavar="WEIGHTS.safetensors")
    # ml.cli.train's name for the same number; was --probe-images here.
    flags.add(parser, "--ood-probe-images", default=1500, old=("--probe-images",))
    flags.add_seed(parser)
    flags.add_workers(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        card, report = fit_into_checkpoint(args.model, dict(args.data), args.out, probe_images=args.ood_probe_images,
                                           seed=args.seed, workers=args.workers)
    except SplitError as exc:
        parser.exit(2, f"ml.cli.fit_ood: {exc}\n")
    print(format_report(report))
    print(json.dumps({"weights_sha256": card["weights_sha256"], **card["ood"]["report"]["split"]}))


if __name__ == "__main__":
    main()
