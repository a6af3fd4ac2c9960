"""What each branch contributes, and what the age adds, measured on each source's validation split.

    python -m ml.cli.ablation --model models/pneumoweb-v3.safetensors \\
        --data kermany=../shared/data/chest_xray/train --data nih=../shared/data/nih_pneumonia/labels.csv \\
        --out docs/ablation-v3.json

Two measurements:

- **Heads on fixed features**: for each branch subset (CNN, ViT, CNN + ViT, with and without the
  age branch, and the age alone), fresh fusion layers are fitted on the features of fixed
  backbones — the offline pretrained ones and the checkpoint's own — with the same balanced
  weights, loss and selection as ``ml.cli.train``'s probe. Fine-tuning a model per subset costs hours
  on a CPU; this costs minutes.
- **Shift proxies** (leave one source out): fusion layers fitted on one source's training films
  only, measured on the other source's validation films, beside the same layers fitted on both.
  A model of children is a poor model of adults and back: this says how poor, on fixed features.
- **The shipped model with its age masked**: the checkpoint itself, with every recorded age fed
  to it, and with every age fed as missing; AUC per source and on the adult validation films.

The split is the one recorded in the checkpoint's card (``ml.training.splits`` rebuilds it). The
age-masked AUCs are printed; ``--out`` writes every result as JSON.
"""

import argparse
import json
import sys
from dataclasses import replace

import numpy as np
import torch

from .. import cli_args as flags
from ..checkpoint import load_checkpoint
from ..metrics import roc_auc
from ..model import HybridNet
from ..training import data as D
from ..training.calibration import population_of
from ..training.features import extract
from ..training.heads import feature_set, fit_heads, fused_logits
from ..training.loop import predict_logits, seed_everything
from ..training.pretrained import load_pretrained
from ..training.splits import recorded_validation_split

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


def fit_and_score(config, branches, train, train_features, val, val_features, args, select_on=None):
    """AUCs on ``val`` of fresh fusion layers fitted on ``train``'s fixed features (epoch chosen on ``select_on``)."""
    seed_everything(args.seed)
    model = HybridNet(replace(config, branches=branches))
    keep = {name: train_features[name] for name in model.image_branches}
    for name, head in model.heads.items():
        head.set_statistics(keep[name])
    chooser, chooser_features = select_on or (val, val_features)
    fit_heads(model, feature_set(keep, train), feature_set({n: chooser_features[n] for n in keep}, chooser),
              weights=D.balance_weights(train), epochs=args.probe_epochs, seed=args.seed, log=None)
    return aucs(val, fused_logits(model, feature_set({n: val_features[n] for n in keep}, val)))


def rows_of(samples, features, sources):
    """The samples from ``sources``, and their rows of ``features``."""
    index = [i for i, s in enumerate(samples) if s.source in sources]
    return [samples[i] for i in index], {name: f[index] for name, f in features.items()}


def heads_on_features(backbones, train, val, args):
    """Rows per branch subset, and the leave-one-source-out rows, on ``backbones``' fixed features."""
    common = {"workers": args.workers, "cache_dir": args.cache}
    train_features = extract(backbones, train, desc="train features", **common)
    val_features = extract(backbones, val, desc="val features", **common)
    rows = []
    for branches in SUBSETS:
        if not set(branches) - {"age"} <= set(backbones.image_branches):
            continue
        rows.append({"branches": "+".join(branches),
                     "val_auc": fit_and_score(backbones.config, branches, train, train_features, val, val_features,
                                              args)})
        print(format_row(rows[-1]), flush=True)
    shift = []
    branches = tuple(b for b in ("cnn", "vit", "age") if b == "age" or b in backbones.image_branches)
    sources = sorted({s.source for s in train})
    for held_out in sources if len(sources) > 1 else []:
        seen = [s for s in sources if s != held_out]
        one_train, one_train_features = rows_of(train, train_features, seen)
        seen_val = rows_of(val, val_features, seen)
        # The epoch is chosen on the sources seen: the held-out source tunes nothing.
        scored = fit_and_score(backbones.config, branches, one_train, one_train_features, val, val_features, args,
                               select_on=seen_val)
        shift.append({"trained_on": "+".join(seen), "held_out": held_out, "branches": "+".join(branches),
                      "val_auc": scored})
        print(f"trained on {'+'.join(seen):<8} → {held_out}: " + format_row(shift[-1]), flush=True)
    return rows, shift


def age_masked(model, val, args):
    """The shipped model's AUCs with the recorded ages, and with every age fed as missing."""
    device = torch.device("cpu")
    with_age = predict_logits(model, val, device, workers=args.workers, desc="with ages")
    without = predict_logits(model, [replace(s, age=None) for s in val], device, workers=args.workers,
                             desc="ages masked")
    return {"with_recorded_ages": aucs(val, with_age), "ages_fed_as_missing": aucs(val, without)}


def format_row(row):
    return f"{row['branches']:<13} " + "  ".join(f"{k} {v:.4f}" for k, v in row["val_auc"].items())


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_model(parser, old=("--checkpoint",))
    flags.add_sources(parser)
    flags.add_out(parser, metavar="FILE.json")
    # Per branch subset; was --epochs, which in ml.cli.train counts fine-tuning epochs.
    flags.add(parser, "--probe-epochs", default=40, old=("--epochs",))
    flags.add_seed(parser)
    flags.add_workers(parser, 1)
    flags.add(parser, "--cache", metavar="DIR")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    model, card = load_checkpoint(args.model)
    val, train = recorded_validation_split(card.raw, dict(args.data))
    pretrained = HybridNet(replace(model.config, branches=("cnn", "vit", "age")))
    load_pretrained(pretrained)
    results = {"checkpoint": card.name, "n_train": len(train), "n_val": len(val),
               "groups": {name: len(index) for name, index in groups(val).items()}}
    for label, backbones in (("pretrained", pretrained), ("checkpoint", model)):
        print(f"-- heads on the {label} backbones' fixed features", file=sys.stderr, flush=True)
        rows, shift = heads_on_features(backbones.eval(), train, val, args)
        results[f"heads_on_{label}_features"] = rows
        results[f"shift_proxies_{label}"] = shift
    results["checkpoint_age_masked"] = age_masked(model, val, args)
    print(json.dumps(results["checkpoint_age_masked"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
