"""Refit each population's threshold and temperature for an existing checkpoint, on its recorded split.

    python -m ml.cli.calibrate --model models/pneumoweb-v3.safetensors \\
        --data kermany=../shared/data/chest_xray/train --data nih=../shared/data/nih_pneumonia/labels.csv

``ml.cli.train`` calibrates at the end of training (``ml.training.calibration``). This command
rebuilds the patient-grouped validation split recorded in the card of ``--model`` (the shipped
model unless given) — every source must hash to the card's digest, so no other films can tune the
model — and rewrites that card's ``populations`` (threshold, temperature, validation metrics with bootstrap intervals, the
borderline band); the weights file is left as it is.

With ``--band-only`` only each population's borderline band (``borderline_band``,
``borderline_band_rule``; ``ml.training.calibration.borderline_band``) is added, computed at the
card's own temperatures, floors and thresholds from the same recorded validation films; every
other value of the card is kept as it is.
"""

import argparse
import datetime

import torch

from .. import cli_args as flags
from ..card import card_path
from ..checkpoint import load_checkpoint, write_card
from ..training import calibration
from ..training.loop import predict_logits
from ..training.splits import SplitError, recorded_validation_split


def recalibrate(weights_path, data, batch_size=32, workers=0):
    """Refit and rewrite the card of ``weights_path``; returns the new card."""
    model, card = load_checkpoint(weights_path)
    val, train = recorded_validation_split(card.raw, data)
    documented = {k: tuple(v) for k, v in (card.raw["training_data"].get("documented_ages_years") or {}).items()}
    logits = predict_logits(model, val, torch.device("cpu"), batch_size=batch_size, workers=workers)
    card = {
        **card.raw,
        "populations": calibration.calibrate(val, logits, documented, train),
        "calibrated_on": calibration.CALIBRATED_ON,
        "calibrated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_card(weights_path, card)
    return card


def add_bands(weights_path, data, batch_size=32, workers=0):
    """Add each population's borderline band to the card of ``weights_path``, keeping every other value."""
    model, card = load_checkpoint(weights_path)
    if not card.raw.get("populations"):
        raise SplitError("the card has no populations to add bands to (a one-threshold card: recalibrate it)")
    val, _ = recorded_validation_split(card.raw, data)
    documented = {k: tuple(v) for k, v in (card.raw["training_data"].get("documented_ages_years") or {}).items()}
    logits = predict_logits(model, val, torch.device("cpu"), batch_size=batch_size, workers=workers)
    card = {**card.raw, "populations": calibration.add_bands(card.raw["populations"], val, logits, documented)}
    write_card(weights_path, card)
    return card


def print_band(entry):
    if "borderline_band" in entry:
        low, high = entry["borderline_band"]
        print(f"  borderline band [{low:.4f}, {high:.4f}] around threshold {entry['threshold']:.4f} "
              f"({entry['validation_metrics']['n']} validation films; {entry['borderline_band_rule']})")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_sources(parser)
    flags.add_model(parser, rewrites=True)
    flags.add_batch_size(parser, 32)
    flags.add_workers(parser)
    parser.add_argument("--band-only", action="store_true",
                        help="only add each population's borderline band; keep every other value of the card")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not card_path(args.model).exists():
        parser.error(f"no model card beside {args.model}")
    try:
        fit = add_bands if args.band_only else recalibrate
        card = fit(args.model, dict(args.data), args.batch_size, args.workers)
    except SplitError as exc:
        parser.exit(2, f"ml.cli.calibrate: {exc}\n")
    if args.band_only:
        for name, entry in card["populations"].items():
            print(f"{name}:")
            print_band(entry)
        return
    for name, entry in card["populations"].items():
        metrics = entry["validation_metrics"]
        print(f"{name}: temperature {entry['temperature']:.4f}  threshold {entry['threshold']:.4f}  "
              f"(recall >= {entry['min_recall']}; {metrics['n']} validation films)")
        print("  " + "  ".join(f"{key} {metrics[key]:.4f}" for key in ("auc", "accuracy", "recall", "specificity", "f1")))
        print(f"  confusion (rows true NORMAL, PNEUMONIA): {metrics['confusion_matrix']['rows_true_cols_predicted']}")
        for point in entry["other_operating_points"]:
            print(f"  other point, recall >= {point['min_recall']:<5}  threshold {point['threshold']:.4f}  "
                  f"recall {point['recall']:.4f}  specificity {point['specificity']:.4f}")
        print_band(entry)


if __name__ == "__main__":
    main()
