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

from ..config import TRAIN_PRESET
from ..training.data import parse_source
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=parse_source, action="append", required=True, metavar="NAME=PATH",
                        help="a training source (repeat for several)")
    parser.add_argument("--out", type=Path, required=True, help="weights path (.safetensors); the card goes beside it")
    # v3's recipe from pretrained weights; the shipped preset (v4, "focus") is trained from v3 by ml.cli.train_focus.
    parser.add_argument("--preset", default=TRAIN_PRESET)
    parser.add_argument("--name", help="model name shown on every prediction")
    parser.add_argument("--branches", help="comma-separated subset of cnn,vit,age (ablations)")
    parser.add_argument("--val-fraction", type=named_float, action="append", metavar="[NAME=]F",
                        help="validation share of a source's patients (defaults: kermany 0.15, nih 0.25, else 0.15)")
    parser.add_argument("--documented-ages", type=named_range, action="append", metavar="NAME=LOW:HIGH",
                        help="the documented age range of a source whose films record no age (kermany=1:5 built in)")
    parser.add_argument("--source-share", type=named_float, action="append", metavar="NAME=W",
                        help="relative weight of a source in the training draw (equal by default)")
    # Stage 1: linear probe on cached features.
    parser.add_argument("--probe-views", type=int, default=2, help="augmented views per film for the probe")
    parser.add_argument("--probe-epochs", type=int, default=40)
    # Stage 2: fine-tuning.
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (0: the probe alone)")
    parser.add_argument("--epoch-samples", type=int, default=4000, help="films drawn per fine-tuning epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr-head", type=float, default=1e-3, help="the probe's learning rate")
    parser.add_argument("--lr-finetune-head", type=float, default=1e-4, help="the fusion layers' rate while fine-tuning")
    parser.add_argument("--lr-backbone", type=float, default=2e-5)
    parser.add_argument("--weight-decay", type=float, default=0.05, help="AdamW decay of the backbones")
    parser.add_argument("--l2", type=float, default=0.01, help="L2 on the branch heads' weights")
    parser.add_argument("--aux-weight", type=float, default=1.0, help="weight of each branch's own loss")
    parser.add_argument("--age-dropout", type=float, default=0.3, help="chance a recorded age is fed as missing")
    parser.add_argument("--patience", type=int, default=2)
    # Stage 3: WiSE-FT.
    parser.add_argument("--wise-alphas", type=lambda t: [float(a) for a in t.split(",")],
                        default=[0.0, 0.25, 0.5, 0.75, 1.0], help="interpolation weights to try (1 = fine-tuned)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="train on about this many films (smoke runs)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-pretrained", action="store_true", help="random-init backbones")
    parser.add_argument("--cnn-weights", type=Path, help="timm-format weights file for the CNN (wins over the preset's source)")
    parser.add_argument("--vit-weights", type=Path, help="timm-format weights file for the ViT (wins over the preset's source)")
    parser.add_argument("--download-weights", action="store_true",
                        help="let a preset whose source is the hub (full) download its weights (online machines)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.run/")
    parser.add_argument("--no-ood", action="store_true", help="skip fitting the out-of-distribution gate")
    parser.add_argument("--ood-probe-images", type=int, default=1500,
                        help="training films whose inverted/cropped copies train the OOD probe")
    args = parser.parse_args(argv)
    args.source_share = dict(args.source_share or []) or None
    return args


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(parse_args(argv))


if __name__ == "__main__":
    main()
