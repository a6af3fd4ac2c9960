"""Operating threshold and temperature, fitted on the validation split to the weights as shipped.

    python -m ml.calibrate --data ../shared/data/chest_xray/train --model models/pneumoweb-compact.safetensors

``ml.train`` calls :func:`calibrate` at the end of training, on the half-precision weights it
is about to save. This command refits an existing checkpoint on the patient-grouped split
recorded in its card (the data must hash to the card's digest, so no other images can tune
it): the weights file is left as it is; the card's threshold, temperature and validation
metrics are rewritten.
"""

import argparse
import datetime
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import data as D
from .checkpoint import SHIPPED_DTYPE, card_path, load_checkpoint, write_card
from .metrics import fit_temperature, sigmoid, summary, threshold_for_recall

MIN_RECALL = 0.98
# Other recall floors, reported (not used) so a site can see what more or less sensitivity would cost.
OPERATING_POINTS = (0.95, 0.98, 0.99, 0.995)
CALIBRATED_ON = f"validation split, weights at {str(SHIPPED_DTYPE).removeprefix('torch.')} as shipped"


@torch.inference_mode()
def predict_logits(model, loader, device, desc="validate"):
    model.eval()
    logits, labels = [], []
    for images, ages, targets in tqdm(loader, desc=desc, leave=False, file=sys.stderr):
        logits.append(model(images.to(device), ages.to(device)).float().cpu())
        labels.append(targets)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy().astype(int)


def calibrate(logits, labels, min_recall=MIN_RECALL):
    """The card's calibration fields: temperature, then the recall-floor threshold on calibrated probabilities."""
    temperature = fit_temperature(logits, labels)
    probabilities = sigmoid(logits / temperature)
    threshold = threshold_for_recall(labels, probabilities, min_recall)
    return {
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": f"best specificity with validation recall >= {min_recall}, midway to the next score",
        "calibrated_on": CALIBRATED_ON,
        "validation_metrics": summary(labels, probabilities, threshold),
        "operating_points": [operating_point(labels, probabilities, floor) for floor in OPERATING_POINTS],
    }


def operating_point(labels, probabilities, min_recall):
    metrics = summary(labels, probabilities, threshold_for_recall(labels, probabilities, min_recall))
    return {"min_recall": min_recall, **{k: metrics[k] for k in ("threshold", "recall", "specificity", "accuracy")}}


class CalibrationError(Exception):
    pass


def recorded_validation_split(card, data):
    """The validation samples the card was trained with, rebuilt from ``data``; refuses other data."""
    info = card.get("training_data") or {}
    split = info.get("split") or {}
    if "seed" not in split or (card.get("args") or {}).get("limit"):
        raise CalibrationError("the card records no rebuildable validation split (trained on a random subset?)")
    samples, _ = D.deduplicate(D.load_samples(data))
    if D.dataset_digest(samples) != info.get("sha256"):
        raise CalibrationError(f"{data} does not match the data this model was trained on (sha256 differs)")
    _, val = D.split_by_patient(samples, val_fraction=split["val_fraction"], seed=split["seed"])
    return val


def recalibrate(weights_path, data, batch_size=32, workers=0):
    """Refit and rewrite the card of ``weights_path``; returns the new card."""
    model, card = load_checkpoint(weights_path)
    val = recorded_validation_split(card, data)
    loader = DataLoader(D.XrayDataset(val, model.config), batch_size=batch_size, num_workers=workers)
    logits, labels = predict_logits(model, loader, torch.device("cpu"))
    card = {
        **card,
        **calibrate(logits, labels),
        "calibrated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_card(weights_path, card)
    return card


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the training data the card records")
    parser.add_argument("--model", type=Path, required=True, help="weights (.safetensors); its card is rewritten")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    if not card_path(args.model).exists():
        parser.error(f"no model card beside {args.model}")
    try:
        card = recalibrate(args.model, args.data, args.batch_size, args.workers)
    except CalibrationError as exc:
        parser.exit(2, f"ml.calibrate: {exc}\n")
    metrics = card["validation_metrics"]
    print(f"temperature {card['temperature']:.4f}  threshold {card['threshold']:.4f}")
    print("  ".join(f"{key} {metrics[key]:.4f}" for key in ("auc", "accuracy", "recall", "specificity", "f1")))
    print(f"confusion (rows true NORMAL, PNEUMONIA): {metrics['confusion_matrix']['rows_true_cols_predicted']}")
    print("other operating points (not used):")
    for point in card["operating_points"]:
        print(f"  recall >= {point['min_recall']:<5}  threshold {point['threshold']:.4f}  recall {point['recall']:.4f}"
              f"  specificity {point['specificity']:.4f}  accuracy {point['accuracy']:.4f}")


if __name__ == "__main__":
    main()
