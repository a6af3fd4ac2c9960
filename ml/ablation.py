"""What each branch contributes, and what the age adds, measured on each source's validation split.

    python -m ml.ablation --checkpoint models/pneumoweb-v3.safetensors \\
        --data kermany=../shared/data/chest_xray/train --data nih=../shared/data/nih_pneumonia/labels.csv \\
        --out docs/ablation-v3.json

Two measurements:

- **Heads on fixed features**: for each branch subset (CNN, ViT, CNN + ViT, with and without the
  age branch, and the age alone), fresh fusion layers are fitted on the features of fixed
  backbones — the offline pretrained ones and the checkpoint's own — with the same balanced
  weights, loss and selection as ``ml.train``'s probe. Fine-tuning a model per subset costs hours
  on a CPU; this costs minutes.
- **The shipped model with its age masked**: the checkpoint itself, with every recorded age fed
  to it, and with every age fed as missing; AUC per source and on the adult validation films.

The split is the one recorded in the checkpoint's card (``ml.calibrate`` rebuilds it).
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .calibrate import recorded_validation_split
from .checkpoint import load_checkpoint
from .metrics import roc_auc
from .model import HybridNet
from .training import data as D
from .training.calibration import population_of
from .training.features import extract
from .training.heads import feature_set, fit_heads, fused_logits
from .training.loop import predict_logits, seed_everything
from .training.pretrained import load_pretrained

SUBSETS = [("cnn",), ("vit",), ("cnn", "vit"), ("cnn", "age"), ("vit", "age"), ("cnn", "vit", "age"), ("age",)]


def groups(samples):
    """Row indices of each evaluation group: every source's validation films, and the adult ones."""
    out = {}
    for i, s in enumerate(samples):
        out.setdefault(s.source, []).append(i)
        if population_of(s.age, s.source) == "adult":
            out.setdefault("adult", []).append(i)
    return out


def aucs(samples, logits):
    labels = np.array([s.label for s in samples])
    return {name: roc_auc(labels[index], np.asarray(logits)[index]) for name, index in groups(samples).items()}


def heads_on_features(backbones, train, val, args):
    """One row per branch subset: AUCs of fusion layers fitted on ``backbones``' fixed features."""
    common = {"workers": args.workers, "cache_dir": args.cache}
    train_features = extract(backbones, train, desc="train features", **common)
    val_features = extract(backbones, val, desc="val features", **common)
    rows = []
    for branches in SUBSETS:
        if not set(branches) - {"age"} <= set(backbones.image_branches):
            continue
        seed_everything(args.seed)
        model = HybridNet(replace(backbones.config, branches=branches))
        keep = {name: train_features[name] for name in model.image_branches}
        for name, head in getattr(model, "heads", {}).items():
            head.set_statistics(keep[name])
        fit_heads(model, feature_set(keep, train), feature_set({n: val_features[n] for n in keep}, val),
                  weights=D.balance_weights(train), epochs=args.epochs, seed=args.seed, log=None)
        logits = fused_logits(model, feature_set({n: val_features[n] for n in keep}, val))
        rows.append({"branches": "+".join(branches), "val_auc": aucs(val, logits)})
        print(format_row(rows[-1]), flush=True)
    return rows


def age_masked(model, val, args):
    """The shipped model's AUCs with the recorded ages, and with every age fed as missing."""
    device = torch.device("cpu")
    with_age = predict_logits(model, val, device, workers=args.workers, desc="with ages")
    without = predict_logits(model, [replace(s, age=None) for s in val], device, workers=args.workers,
                             desc="ages masked")
    return {"with_recorded_ages": aucs(val, with_age), "ages_fed_as_missing": aucs(val, without)}


def format_row(row):
    return f"{row['branches']:<13} " + "  ".join(f"{k} {v:.4f}" for k, v in row["val_auc"].items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=D.parse_source, action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--epochs", type=int, default=40, help="head-fitting epochs per subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="folder for cached features (resumable)")
    args = parser.parse_args(argv)

    model, card = load_checkpoint(args.checkpoint)
    val, train = recorded_validation_split(card, dict(args.data))
    pretrained = HybridNet(replace(model.config, branches=("cnn", "vit", "age")))
    load_pretrained(pretrained)
    results = {"checkpoint": card["name"], "n_train": len(train), "n_val": len(val),
               "groups": {name: len(index) for name, index in groups(val).items()}}
    for label, backbones in (("pretrained", pretrained), ("checkpoint", model)):
        print(f"-- heads on the {label} backbones' fixed features", file=sys.stderr, flush=True)
        results[f"heads_on_{label}_features"] = heads_on_features(backbones.eval(), train, val, args)
    results["checkpoint_age_masked"] = age_masked(model, val, args)
    print(json.dumps(results["checkpoint_age_masked"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
