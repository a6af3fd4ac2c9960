"""What each branch contributes, measured on the patient-grouped validation split.

    python -m ml.ablation --data ../shared/data/chest_xray/train \
        [--checkpoint models/pneumoweb-compact.safetensors] [--out ablation.json]

Fine-tuning four hybrids end to end costs hours on a CPU, so each branch subset
(CNN only, ViT only, CNN + ViT, CNN + ViT + age) gets a fresh age branch and head
trained on the image features of fixed backbones, with the same loss, class weight,
split, threshold rule (recall ≥ 0.98) and metrics as ``ml.train``:

- ``pretrained``: the offline pretrained backbones as training starts from them;
- ``fine-tuned``: the backbones of a trained checkpoint (``--checkpoint``).
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import data as D
from .checkpoint import load_checkpoint
from .config import get_preset
from .calibrate import MIN_RECALL
from .metrics import sigmoid, summary, threshold_for_recall
from .model import HybridNet
from .pretrained import load_pretrained
from .train import seed_everything

SUBSETS = [("cnn",), ("vit",), ("cnn", "vit"), ("cnn", "vit", "age")]


@torch.inference_mode()
def extract_features(model, samples, batch_size=32, workers=1, desc="features"):
    """(cnn features, vit features, age tensor, labels) for every sample, backbones in eval mode."""
    model.eval()
    loader = DataLoader(D.XrayDataset(samples, model.config), batch_size=batch_size, num_workers=workers)
    branches = [b for b in ("cnn", "vit") if getattr(model, b) is not None]
    columns = {name: [] for name in (*branches, "age", "label")}
    for images, age, target in tqdm(loader, desc=desc, leave=False, file=sys.stderr):
        for name, features in zip(branches, model.image_features(images)):
            columns[name].append(features)
        columns["age"].append(age)
        columns["label"].append(target)
    return {name: torch.cat(parts) for name, parts in columns.items()}


def train_head(config, branches, train, val, *, epochs=30, batch_size=64, lr=1e-3, seed=0):
    """Fit a fresh age branch + head on fixed features; validation metrics at the recall ≥ 0.98 threshold."""
    seed_everything(seed)
    # The fusion layers only: the backbones of this throw-away model are never called.
    model = HybridNet(replace(config, branches=branches))
    model.cnn = model.vit = None
    image_branches = [b for b in ("cnn", "vit") if b in branches]

    def logits(split, index=slice(None)):
        return model.fuse([split[b][index] for b in image_branches], split["age"][index])

    n_pos = float(train["label"].sum())
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(train["label"]) - n_pos) / max(n_pos, 1.0)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(train["label"]), generator=generator).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(logits(train, index), train["label"][index]).backward()
            optimizer.step()
    model.eval()
    with torch.inference_mode():
        probabilities = sigmoid(logits(val).numpy())
    labels = val["label"].numpy().astype(int)
    return summary(labels, probabilities, threshold_for_recall(labels, probabilities, MIN_RECALL))


def ablate(args):
    samples, _ = D.deduplicate(D.load_samples(args.data))
    train, val = D.split_by_patient(samples, val_fraction=args.val_fraction, seed=args.split_seed)
    if args.limit:
        # Every k-th image keeps both classes in a smoke run.
        train = train[:: max(len(train) // args.limit, 1)][: args.limit]
        val = val[:: max(len(val) // max(args.limit // 4, 4), 1)]
    feature_sets = {}
    torch.manual_seed(args.seed)
    pretrained = HybridNet(get_preset(args.preset))
    load_pretrained(pretrained)
    feature_sets["pretrained"] = pretrained
    if args.checkpoint:
        feature_sets["fine-tuned"] = load_checkpoint(args.checkpoint)[0]

    results = {"n_train": len(train), "n_val": len(val), "positives_val": sum(s.label for s in val), "rows": []}
    for backbones, model in feature_sets.items():
        train_features = extract_features(model, train, workers=args.workers, desc=f"{backbones} train")
        val_features = extract_features(model, val, workers=args.workers, desc=f"{backbones} val")
        for branches in SUBSETS:
            if not set(branches) - {"age"} <= set(train_features):
                continue  # a checkpoint trained without that branch
            metrics = train_head(model.config, branches, train_features, val_features,
                                 epochs=args.epochs, seed=args.seed)
            results["rows"].append({"backbones": backbones, "branches": "+".join(branches), **metrics})
            print(format_row(results["rows"][-1]), flush=True)
    return results


def format_row(row):
    return (f"{row['backbones']:<11} {row['branches']:<13} AUC {row['auc']:.4f}  acc {row['accuracy']:.4f}"
            f"  recall {row['recall']:.4f}  specificity {row['specificity']:.4f}")


def format_table(results):
    lines = [f"validation: {results['n_val']} images ({results['positives_val']} pneumonia); "
             f"threshold per row: highest with recall >= {MIN_RECALL}",
             "| backbones | branches | AUC | accuracy | recall | specificity |", "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['backbones']} | {row['branches']} | {row['auc']:.4f} | {row['accuracy']:.4f}"
                     f" | {row['recall']:.4f} | {row['specificity']:.4f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Kermany-layout folder or CSV")
    parser.add_argument("--checkpoint", type=Path, help="trained weights whose fine-tuned backbones to ablate too")
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--epochs", type=int, default=30, help="head-training epochs per subset")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="first N training images only (smoke runs)")
    parser.add_argument("--workers", type=int, default=1)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = ablate(args)
    print(format_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
