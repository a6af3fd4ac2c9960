"""Train a hybrid model on one or more sources: linear probe → fine-tuning → WiSE-FT → per-population calibration.

    python -m ml.cli.train --data kermany=../shared/data/chest_xray/train \\
                       --data nih=../shared/data/nih_pneumonia/labels.csv \\
                       --out runs/v3/pneumoweb-v3.safetensors --name pneumoweb-v3

Each ``--data NAME=PATH`` is a Kermany-layout folder or a CSV (``path,label[,age][,patient][,view]``),
split by patient on its own. The stages, the sampling and the calibration are described in
``ml/training/loop.py``; ``--resume`` continues a run from the files in ``OUT.run/``.
"""

import argparse
import logging
from pathlib import Path

from .. import cli_args as flags
from ..config import LEGACY_PRESET_NAMES, PRESETS, TRAIN_PRESET
from ..training.loop import train


def named_float(text):
    """``NAME=VALUE`` (or a bare VALUE, for every name) → (name, float)."""
    name, sep, value = text.rpartition("=")
    return (name if sep else "*"), float(value)


def named_range(text):
    """``NAME=LOW:HIGH`` → (name, (low, high))."""
    name, _, span = text.partition("=")
    low, _, high = span.partition(":")
    return name, (float(low), float(high))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_sources(parser)
    flags.add_out(parser, required=True, metavar="WEIGHTS.safetensors")
    # v3's recipe from pretrained weights; the shipped preset (v4) is trained from v3 by ml.cli.train_focus.
    parser.add_argument("--preset", default=TRAIN_PRESET,
                        help=f"the architecture (ml.config.PRESETS): {', '.join(PRESETS)}; former names "
                             f"{', '.join(f'{old} = {new}' for old, new in LEGACY_PRESET_NAMES.items())}")
    flags.add(parser, "--name")
    parser.add_argument("--branches", help="comma-separated subset of cnn,vit,age (ablations)")
    parser.add_argument("--val-fraction", type=named_float, action="append", metavar="[NAME=]F",
                        help="validation share of a source's patients (defaults: kermany 0.15, nih 0.25, else 0.15)")
    parser.add_argument("--documented-ages", type=named_range, action="append", metavar="NAME=LOW:HIGH",
                        help="the documented age range of a source whose films record no age (kermany=1:5 built in)")
    parser.add_argument("--source-share", type=named_float, action="append", metavar="NAME=W",
                        help="relative weight of a source in the training draw (equal by default)")
    # Stage 1: linear probe on cached features.
    parser.add_argument("--probe-views", type=int, default=2, help="augmented views per film for the probe")
    flags.add(parser, "--probe-epochs", default=40)
    # Stage 2: fine-tuning.
    flags.add(parser, "--epochs", default=3)
    flags.add(parser, "--epoch-samples", default=4000)
    flags.add_batch_size(parser, 32)
    parser.add_argument("--lr-head", type=float, default=1e-3, help="the probe's learning rate")
    flags.add(parser, "--lr-finetune-head", default=1e-4)
    parser.add_argument("--lr-backbone", type=float, default=2e-5)
    flags.add(parser, "--weight-decay", default=0.05)
    parser.add_argument("--l2", type=float, default=0.01, help="L2 on the branch heads' weights")
    parser.add_argument("--aux-weight", type=float, default=1.0, help="weight of each branch's own loss")
    flags.add(parser, "--age-dropout", default=0.3)
    parser.add_argument("--patience", type=int, default=2)
    # Stage 3: WiSE-FT.
    parser.add_argument("--wise-alphas", type=flags.comma_floats,
                        default=[0.0, 0.25, 0.5, 0.75, 1.0], help="interpolation weights to try (1 = fine-tuned)")
    parser.add_argument("--split-seed", type=int, default=0)
    flags.add_seed(parser)
    parser.add_argument("--limit", type=int, default=0, help="train on about this many films (smoke runs)")
    flags.add_workers(parser, 1)
    flags.add_device(parser)
    parser.add_argument("--no-pretrained", action="store_true", help="random-init backbones")
    parser.add_argument("--cnn-weights", type=Path, help="timm-format weights file for the CNN (wins over the preset's source)")
    parser.add_argument("--vit-weights", type=Path, help="timm-format weights file for the ViT (wins over the preset's source)")
    flags.retire(parser, "--download-weights", "no preset takes its weights from the hub since the full preset's retirement")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.run/")
    parser.add_argument("--no-ood", action="store_true", help="skip fitting the out-of-distribution gate")
    flags.add(parser, "--ood-probe-images", default=1500)
    return parser


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    args.source_share = dict(args.source_share or []) or None
    return args


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(parse_args(argv))


if __name__ == "__main__":
    main()
