"""Train a hybrid model on a Kermany-layout folder (or a CSV with ages).

    python -m ml.train --data ../shared/data/chest_xray/train --out models/pneumoweb-compact.safetensors

Stage 1 trains the age branch and head with the backbones frozen; stage 2 fine-tunes
everything at a lower backbone learning rate. Early stopping on validation AUC; the
validation split is grouped by patient. The operating threshold (recall ≥ 0.98 on
validation, best specificity) and a temperature are fitted on validation, to the weights
rounded to the precision they are saved at (``ml.calibrate``), and go in the model card
beside the safetensors weights.
"""

import argparse
import copy
import datetime
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import data as D
from .calibrate import calibrate, predict_logits
from .checkpoint import round_to_shipped_precision, save_checkpoint
from .config import get_preset
from .inference import pick_device
from .metrics import sigmoid, summary
from .model import HybridNet
from .pretrained import load_pretrained

log = logging.getLogger("ml.train")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_backbones_trainable(model, trainable):
    for backbone in model.backbones():
        backbone.requires_grad_(trainable)


def train_mode(model, backbones_trainable):
    model.train()
    if not backbones_trainable:
        # Frozen backbones keep their batch-norm statistics.
        for backbone in model.backbones():
            backbone.eval()


def run_epoch(model, loader, optimizer, scheduler, loss_fn, device, desc):
    losses = []
    bar = tqdm(loader, desc=desc, leave=False, file=sys.stderr)
    for images, ages, targets in bar:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images.to(device), ages.to(device)), targets.to(device))
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return float(np.mean(losses))


def make_optimizer(model, stage, args, steps):
    head_params = [p for n, p in model.named_parameters() if not n.startswith(("cnn.", "vit."))]
    groups = [{"params": head_params, "lr": args.lr}]
    if stage == "finetune":
        groups.append({"params": [p for b in model.backbones() for p in b.parameters()], "lr": args.lr_backbone})
    optimizer = torch.optim.Adam(groups, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(steps, 1), pct_start=0.1
    )
    return optimizer, scheduler


def prepare_data(args, config):
    samples = D.load_samples(args.data)
    samples, dropped = D.deduplicate(samples)
    train, val = D.split_by_patient(samples, val_fraction=args.val_fraction, seed=args.split_seed)
    if args.limit:
        rng = random.Random(args.seed)
        train = rng.sample(train, min(args.limit, len(train)))
        val = rng.sample(val, min(max(args.limit // 4, 8), len(val)))
    info = {
        "source": str(args.data),
        "sha256": D.dataset_digest(samples),
        "n_files": len(samples) + len(dropped),
        "n_duplicates_dropped": len(dropped),
        "split": {
            "method": "by patient (file-name key), stratified by class, seeded sha256 order",
            "val_fraction": args.val_fraction,
            "seed": args.split_seed,
            "n_train": len(train),
            "n_val": len(val),
            "n_train_patients": len({s.patient for s in train}),
            "n_val_patients": len({s.patient for s in val}),
            "positives_train": sum(s.label for s in train),
            "positives_val": sum(s.label for s in val),
        },
    }
    return train, val, info


def loaders(train, val, config, args):
    train_ds = D.XrayDataset(train, config, augment=None if args.no_augment else D.training_augmentation())
    val_ds = D.XrayDataset(val, config)
    generator = torch.Generator().manual_seed(args.seed)
    common = {"batch_size": args.batch_size, "num_workers": args.workers, "persistent_workers": args.workers > 0}
    return (
        DataLoader(train_ds, shuffle=True, drop_last=len(train_ds) > args.batch_size, generator=generator, **common),
        DataLoader(val_ds, shuffle=False, **common),
    )


def train(args):
    seed_everything(args.seed)
    device = pick_device(args.device)
    overrides = {"branches": tuple(args.branches.split(","))} if args.branches else {}
    config = get_preset(args.preset, **overrides)
    train_samples, val_samples, data_info = prepare_data(args, config)
    uses_age = any(s.age is not None for s in train_samples)
    log.info("train %d / val %d images; device %s; ages in data: %s", len(train_samples), len(val_samples), device, uses_age)

    model = HybridNet(config)
    files = {"cnn": args.cnn_weights, "vit": args.vit_weights}
    sources = {} if args.no_pretrained else load_pretrained(model, files, allow_download=args.download_weights)
    model.to(device)
    train_loader, val_loader = loaders(train_samples, val_samples, config, args)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(D.class_weights(train_samples), device=device))

    state_path = Path(args.out).with_suffix(".state.pt")
    state = {"stage": 0, "epoch": 0, "best_score": (-1.0, -np.inf), "best": None, "history": [], "bad_epochs": 0}
    if args.resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        log.info("resumed from %s at stage %d epoch %d", state_path, state["stage"], state["epoch"])

    stages = [("frozen", args.epochs_frozen, False), ("finetune", args.epochs, True)]
    for stage_index, (stage, epochs, backbones_trainable) in enumerate(stages):
        if stage_index < state["stage"] or epochs == 0:
            continue
        set_backbones_trainable(model, backbones_trainable)
        optimizer, scheduler = make_optimizer(model, stage, args, epochs * len(train_loader))
        if stage_index == state["stage"] and state.get("optimizer"):
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"] if stage_index == state["stage"] else 0
        state["bad_epochs"] = state["bad_epochs"] if stage_index == state["stage"] else 0
        for epoch in range(start, epochs):
            train_mode(model, backbones_trainable)
            loss = run_epoch(model, train_loader, optimizer, scheduler, loss_fn, device, f"{stage} {epoch + 1}/{epochs}")
            logits, labels = predict_logits(model, val_loader, device)
            metrics = summary(labels, sigmoid(logits), 0.5)
            val_loss = float(torch.nn.functional.binary_cross_entropy_with_logits(
                torch.from_numpy(logits), torch.from_numpy(labels).float()))
            state["history"].append({"stage": stage, "epoch": epoch + 1, "train_loss": loss,
                                     "val_loss": val_loss, "val_auc": metrics["auc"]})
            print(f"{stage} epoch {epoch + 1}/{epochs}: train loss {loss:.4f}  val loss {val_loss:.4f}"
                  f"  val AUC {metrics['auc']:.4f}", flush=True)
            auc = metrics["auc"] if np.isfinite(metrics["auc"]) else -1.0  # one-class validation: no AUC
            # Best = highest validation AUC; equal AUCs (common on small sets) go to the lower loss.
            score = (auc, -val_loss)
            if state["best"] is None or score > tuple(state["best_score"]):
                state.update(best_score=score, best=copy.deepcopy(model.state_dict()), bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            state.update(stage=stage_index, epoch=epoch + 1, model=model.state_dict(),
                         optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, state_path)
            if state["bad_epochs"] >= args.patience:
                print(f"early stop: no AUC gain for {args.patience} epochs", flush=True)
                break
        state.update(stage=stage_index + 1, epoch=0, optimizer=None, scheduler=None)

    model.load_state_dict(state["best"])
    # Calibrate (and fit the gate) on exactly the weights the checkpoint will hold.
    round_to_shipped_precision(model)
    logits, labels = predict_logits(model, val_loader, device)
    card = {
        "name": args.name or f"pneumoweb-{config.name}",
        "preset": args.preset,
        "trained": True,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weight_sources": sources,
        "training_data": data_info,
        **calibrate(logits, labels),
        "uses_age": uses_age,
        "validated_age_range_years": args.validated_age_range,
        "history": state["history"],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
    }
    extra = {}
    if not args.no_ood and model.backbones():  # the gate reads image features
        from .fit_ood import fit_and_measure, format_report, gate_card

        gate, report = fit_and_measure(model, train_samples, val_samples, probe_images=args.ood_probe_images,
                                       seed=args.seed)
        card["ood"] = gate_card(gate, report)
        extra = gate.tensors()
        print(format_report(report), flush=True)
    card = save_checkpoint(model.cpu().to(memory_format=torch.contiguous_format), card, args.out, extra=extra)
    print(json.dumps(card["validation_metrics"], indent=2))
    return card


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Kermany-layout folder or CSV (path,label[,age][,patient])")
    parser.add_argument("--out", type=Path, required=True, help="weights path (.safetensors); the card goes beside it")
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--name", help="model name shown on every prediction")
    parser.add_argument("--branches", help="comma-separated subset of cnn,vit,age (ablations)")
    parser.add_argument("--epochs-frozen", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-backbone", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="train on a random subset of this size (smoke runs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-pretrained", action="store_true", help="random-init backbones")
    parser.add_argument("--cnn-weights", type=Path, help="timm-format weights file for the CNN (wins over the preset's source)")
    parser.add_argument("--vit-weights", type=Path, help="timm-format weights file for the ViT (wins over the preset's source)")
    parser.add_argument("--download-weights", action="store_true",
                        help="let a preset whose source is the hub (full) download its weights (online machines)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.state.pt")
    parser.add_argument("--no-ood", action="store_true", help="skip fitting the out-of-distribution gate")
    parser.add_argument("--ood-probe-images", type=int, default=1500,
                        help="training images whose inverted/cropped copies train the OOD probe")
    parser.add_argument("--validated-age-range", type=float, nargs=2, default=[1.0, 5.0], metavar=("MIN", "MAX"),
                        help="population age range of the training data, in years (Kermany: 1-5)")
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(parse_args(argv))


if __name__ == "__main__":
    main()
