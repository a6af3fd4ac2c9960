"""Multi-source training: linear probe, then fine-tuning from it (LP-FT), then weight interpolation (WiSE-FT).

1. **Linear probe** (Kumar et al. 2022): the pretrained backbones stay fixed; their features of
   every training film (plus augmented views) are computed once and cached; the fusion layers are
   fitted on them with the source/label/view-balanced weights and the per-branch loss.
2. **Fine-tuning** from that probe: every weight trains at a low learning rate, films drawn with
   the same balanced weights, photometric augmentation, the age fed as missing at random; batch
   norm keeps its pretrained statistics. Each epoch is kept on disk (``--resume``).
3. **WiSE-FT** (Wortsman et al. 2022): the weights are interpolated between the probe (alpha 0)
   and the best fine-tuned epoch (alpha 1); the alpha with the best mean per-source validation
   AUC is kept. Both sources weigh the same in that choice, so the model is not picked for one.

Then the weights are rounded to the fp16 they are saved at, each population's operating point is
fitted on its own validation films (``ml.training.calibration``) and the OOD gate on the final
features of both sources (``ml.training.gate``).
"""

import copy
import datetime
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from ..checkpoint import round_to_shipped_precision, save_checkpoint
from ..config import get_preset
from ..device import pick_device
from ..model import HybridNet
from . import calibration
from . import data as D
from .augment import augment as photometric_augment
from .features import extract
from .gate import fit_and_measure, format_report, gate_card
from .heads import feature_set, fit_heads, fusion_loss, source_aucs, validation_loss
from .pretrained import load_pretrained

log = logging.getLogger(__name__)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_sources(args):
    fractions = dict(args.val_fraction or [])
    return [D.load_source(name, path, val_fraction=fractions.get(name, fractions.get("*")), seed=args.split_seed)
            for name, path in args.data]


def limited(samples, limit, seed):
    """Every k-th film of each (source, label): a small run that keeps both classes of every source."""
    if not limit:
        return samples
    out = []
    groups = {}
    for s in samples:
        groups.setdefault((s.source, s.label), []).append(s)
    share = max(limit // max(len(groups), 1), 2)
    for key in sorted(groups):
        group = groups[key]
        out += group[:: max(len(group) // share, 1)][:share]
    return out


def freeze_batch_norm(model):
    """Batch norm keeps its pretrained statistics: fine-tuning batches are small and mix two sources."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


@torch.inference_mode()
def predict_logits(model, samples, device, *, batch_size=32, workers=1, desc="validate"):
    """Raw logits of films as recorded (no augmentation; ages as given)."""
    model.eval()
    loader = DataLoader(D.XrayDataset(samples, model.config), batch_size=batch_size, num_workers=workers)
    out = []
    for images, ages, _ in tqdm(loader, desc=desc, leave=False, file=sys.stderr):
        out.append(model(images.to(device, memory_format=torch.channels_last), ages.to(device)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def validation_scores(model, val, device, args, desc="validate"):
    logits = predict_logits(model, val, device, batch_size=args.batch_size, workers=args.workers, desc=desc)
    labels = np.array([s.label for s in val])
    sources = np.array([s.source for s in val])
    by_source = {name: (labels[sources == name], logits[sources == name]) for name in sorted(set(sources))}
    aucs, score = source_aucs(by_source)
    return logits, aucs, score, validation_loss(logits, labels)


# --- stage 1: linear probe ---------------------------------------------------------------------


def linear_probe(model, train, val, args, run_dir, device):
    path = run_dir / "probe.pt"
    if args.resume and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        print(f"probe: resumed from {path}", flush=True)
        return saved["report"]
    views = 1 + (0 if args.no_augment else args.probe_views)
    common = {"batch_size": args.batch_size, "workers": args.workers, "cache_dir": run_dir / "features"}
    train_features = extract(model, train, views=views, augment=photometric_augment, seed=args.seed,
                             desc="probe features (train)", **common)
    val_features = extract(model, val, desc="probe features (val)", **common)
    for name, head in model.heads.items():
        head.set_statistics(train_features[name][: len(train)])  # the films themselves, not the views
    weights = np.tile(D.balance_weights(train, args.source_share), views)
    report = fit_heads(model, feature_set(train_features, train, views), feature_set(val_features, val),
                       weights=weights, epochs=args.probe_epochs, lr=args.lr_head, l2=args.l2,
                       aux_weight=args.aux_weight, age_dropout=args.age_dropout, seed=args.seed)
    print(f"probe: best epoch {report['best_epoch']}, mean per-source val AUC {report['best_score']:.4f}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "report": report}, path)
    return report


# --- stage 2: fine-tuning from the probe ---------------------------------------------------------


def fine_tune(model, train, val, args, run_dir, device):
    """Returns (best state dict, history); resumable epoch by epoch."""
    path = run_dir / "finetune.state.pt"
    state = {"epoch": 0, "history": [], "best": None, "best_score": (-1.0, -np.inf), "bad_epochs": 0}
    if args.resume and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        if not isinstance(state["best_score"], (tuple, list)):  # a run saved before the loss tie-break
            state["best_score"] = (state["best_score"], -np.inf)
        print(f"fine-tune: resumed from {path} after epoch {state['epoch']}", flush=True)
    if args.epochs == 0:
        return copy.deepcopy(model.state_dict()), state["history"]
    dataset = D.XrayDataset(train, model.config, augment=None if args.no_augment else photometric_augment,
                            seed=args.seed, age_dropout=args.age_dropout)
    generator = torch.Generator().manual_seed(args.seed)
    sampler = WeightedRandomSampler(D.balance_weights(train, args.source_share), args.epoch_samples,
                                    replacement=True, generator=generator)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                        persistent_workers=False, drop_last=True)
    backbone_parameters = [p for b in model.backbones() for p in b.parameters()]
    optimizer = torch.optim.AdamW([
        {"params": model.head_parameters(), "lr": args.lr_finetune_head, "weight_decay": 0.0},
        {"params": backbone_parameters, "lr": args.lr_backbone, "weight_decay": args.weight_decay},
    ])
    steps = max(args.epochs * len(loader), 1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[args.lr_finetune_head, args.lr_backbone],
                                                    total_steps=steps, pct_start=0.1, anneal_strategy="cos")
    if state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    model.requires_grad_(True)
    for epoch in range(state["epoch"], args.epochs):
        # The sampler's draw for this epoch depends on the epoch alone, also after a resume.
        generator.manual_seed(args.seed * 1000 + epoch)
        dataset.set_epoch(epoch)
        model.train()
        freeze_batch_norm(model)
        losses = []
        bar = tqdm(loader, desc=f"fine-tune {epoch + 1}/{args.epochs}", leave=False, file=sys.stderr)
        for images, ages, targets in bar:
            images = images.to(device, memory_format=torch.channels_last)
            loss = fusion_loss(model, model.image_features(images), ages.to(device), targets.to(device),
                               aux_weight=args.aux_weight, l2=args.l2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        _, aucs, score, val_loss = validation_scores(model, val, device, args, desc=f"validate {epoch + 1}")
        state["history"].append({"stage": "finetune", "epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                                 "val_loss": val_loss, "val_auc": aucs, "score": score})
        print(f"fine-tune epoch {epoch + 1}/{args.epochs}: train loss {np.mean(losses):.4f}  "
              + "  ".join(f"val AUC {k} {v:.4f}" for k, v in aucs.items()), flush=True)
        if (score, -val_loss) > tuple(state["best_score"]):
            state.update(best=copy.deepcopy(model.state_dict()), best_score=(score, -val_loss), bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state.update(epoch=epoch + 1, model=model.state_dict(), optimizer=optimizer.state_dict(),
                     scheduler=scheduler.state_dict())
        torch.save(state, path)
        if state["bad_epochs"] >= args.patience:
            print(f"fine-tune: early stop, no gain for {args.patience} epochs", flush=True)
            break
    return state["best"] or copy.deepcopy(model.state_dict()), state["history"]


# --- stage 3: weight-space interpolation -----------------------------------------------------------


def interpolate(start, end, alpha):
    """(1 - alpha) · start + alpha · end for floating-point tensors; the end's for the rest."""
    return {k: torch.lerp(start[k].float(), v.float(), alpha).to(v.dtype) if v.is_floating_point() else v
            for k, v in end.items()}


def choose_alpha(model, probe_state, tuned_state, val, args, device):
    rows = []
    for alpha in args.wise_alphas:
        model.load_state_dict(interpolate(probe_state, tuned_state, alpha))
        _, aucs, score, val_loss = validation_scores(model, val, device, args, desc=f"WiSE alpha {alpha}")
        rows.append({"alpha": alpha, "val_auc": aucs, "score": score, "val_loss": val_loss})
        print(f"WiSE-FT alpha {alpha:.2f}: " + "  ".join(f"val AUC {k} {v:.4f}" for k, v in aucs.items())
              + f"  mean {score:.4f}", flush=True)
    best = max(rows, key=lambda row: (row["score"], -row["val_loss"]))
    return best["alpha"], rows


# --- the whole run ------------------------------------------------------------------------------------


def train(args):
    seed_everything(args.seed)
    device = pick_device(args.device)
    overrides = {"branches": tuple(args.branches.split(","))} if args.branches else {}
    config = get_preset(args.preset, **overrides)
    sources = load_sources(args)
    train_samples = limited([s for src in sources for s in src.train], args.limit, args.seed)
    val_samples = limited([s for src in sources for s in src.val], args.limit and max(args.limit // 4, 8), args.seed)
    documented = dict(args.documented_ages or [])
    ages = [s.age for s in train_samples if s.age is not None]
    uses_age = "age" in config.branches and bool(ages)
    print(f"train {len(train_samples)} / val {len(val_samples)} films from "
          + ", ".join(f"{s.name} ({len(s.train)}+{len(s.val)})" for s in sources)
          + f"; device {device}; ages recorded: {len(ages)}", flush=True)

    run_dir = Path(args.out).with_suffix(".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    model = HybridNet(config)
    files = {"cnn": args.cnn_weights, "vit": args.vit_weights}
    weight_sources = {} if args.no_pretrained else load_pretrained(model, files)
    model.to(device, memory_format=torch.channels_last)

    probe_report = linear_probe(model, train_samples, val_samples, args, run_dir, device)
    probe_state = copy.deepcopy(model.state_dict())
    tuned_state, history = fine_tune(model, train_samples, val_samples, args, run_dir, device)
    if args.epochs and args.wise_alphas:
        alpha, wise = choose_alpha(model, probe_state, tuned_state, val_samples, args, device)
    else:
        alpha, wise = (1.0 if args.epochs else 0.0), []
    model.load_state_dict(interpolate(probe_state, tuned_state, alpha))

    # Calibrate (and fit the gate) on exactly the weights the checkpoint will hold.
    round_to_shipped_precision(model)
    logits, aucs, _, _ = validation_scores(model, val_samples, device, args, desc="calibrate")
    populations = calibration.calibrate(val_samples, logits, documented, train_samples)
    card = {
        "name": args.name or f"pneumoweb-{config.name}",
        "preset": args.preset,
        "trained": True,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "weight_sources": weight_sources,
        "training_data": {
            "sources": {src.name: src.info() for src in sources},
            "split": {"method": "by patient within each source, stratified by class, seeded sha256 order",
                      "seed": args.split_seed, "n_train": len(train_samples), "n_val": len(val_samples)},
            "documented_ages_years": {**calibration.DOCUMENTED_AGES, **documented},
            "sampling": "weights balance source, label and recorded view (ml.training.data.balance_weights)",
        },
        "training": {"probe": {k: probe_report[k] for k in ("best_epoch", "best_score")},
                     "finetune_history": history, "wise": wise, "wise_alpha": alpha},
        "populations": populations,
        "calibrated_on": calibration.CALIBRATED_ON,
        "validation_auc_by_source": aucs,
        "uses_age": uses_age,
        "age_input_range_years": [min(ages), max(ages)] if uses_age else None,
        "args": json.loads(json.dumps(vars(args), default=str)),
        "torch": torch.__version__,
    }
    extra = {}
    if not args.no_ood and model.backbones():
        gate, report = fit_and_measure(model, train_samples, val_samples, probe_images=args.ood_probe_images,
                                       seed=args.seed, cache_dir=run_dir / "features", workers=args.workers)
        card["ood"] = gate_card(gate, report)
        extra = gate.tensors()
        print(format_report(report), flush=True)
    card = save_checkpoint(model.cpu().to(memory_format=torch.contiguous_format), card, args.out, extra=extra)
    print(json.dumps({name: {k: entry["validation_metrics"][k] for k in ("n", "auc", "recall", "specificity")}
                      | {"threshold": entry["threshold"]} for name, entry in populations.items()}, indent=2))
    return card
