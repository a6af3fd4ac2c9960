"""Fit the bacterial-or-viral head (``ml.subtype``) of a checkpoint on its own Kermany split, measure it, store it.

    python -m ml.cli.fit_subtype --model models/pneumoweb-v3.safetensors \\
        --data kermany=/work/shared/data/chest_xray/train --out models/pneumoweb-v3.safetensors

The head is fitted on the pneumonia films of the card's Kermany *training* side and measured on
those of its *validation* side (persons never on both sides); how: ``ml/training/subtype.py``.
Its tensors (``subtype.*``) are written into the checkpoint beside the weights and the OOD gate,
which are kept bit for bit, and its entry into the card under ``"subtype"``: those of ``--model`` (the
shipped model unless given) in place, or a copy at ``--out``. Only the ``kermany`` source of ``--data``
is read (the others carry no bacterial / viral labels). Features are cached in ``--cache`` (default
``runs/``): a second run, or one after an interruption, reuses them.
"""

import argparse
import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from .. import cli_args as flags
from ..checkpoint import load_checkpoint, save_checkpoint
from ..inference import Predictor
from ..subtype import BACTERIAL, CLASSES, PREFIX
from ..training.splits import SplitError, recorded_validation_split
from ..training.subtype import (
    evaluate_head,
    features_of,
    fit_head,
    log_to_stderr,
    subtype_films,
    targets,
)

SOURCE = "kermany"
FEATURES = ("the checkpoint's image features as served (ml.inference.Predictor._forward): CNN pooled ⊕ ViT "
            "pooled (CLS ⊕ patch mean), concatenated, fp32, standardised by the stored mean and scale")


def base_sha256(card):
    """The digest of the checkpoint file the features come from (before any subtype head was written into it)."""
    return (card.raw.get("subtype") or {}).get("base_weights_sha256") or card.weights_sha256


def fit_into_checkpoint(model_path, data_path, out=None, *, cache_dir="runs", resamples=2000, seed=0,
                        command="", log=log_to_stderr):
    model, card, extra = load_checkpoint(model_path, with_extra=True)
    val, train = recorded_validation_split(card.raw, {SOURCE: data_path}, sources=[SOURCE])
    key = base_sha256(card)
    predictor = Predictor.from_checkpoint(model_path, device="cpu", precision="fp32")
    sides = {}
    for side, samples in (("train", train), ("val", val)):
        films = subtype_films(samples)
        log(f"{side}: {len(films)} pneumonia films of {len({s.patient for s, _ in films})} persons")
        x = features_of(predictor, [s.path for s, _ in films], cache_dir=cache_dir, key=key, log=log)
        sides[side] = (x, targets([label for _, label in films]), [s.patient for s, _ in films])
    ages = (card.raw.get("training_data") or {}).get("documented_ages_years", {}).get(SOURCE) or [1.0, 5.0]
    head, fit_report = fit_head(*sides["train"], validated_ages=tuple(ages))
    validation = evaluate_head(head, *sides["val"], resamples=resamples, seed=seed)
    head.auc, head.auc_ci95 = validation["auc"], tuple(validation["auc_ci95"])
    mixed = {side: len({g for g, y in zip(groups, ys) if y} & {g for g, y in zip(groups, ys) if not y})
             for side, (_, ys, groups) in sides.items()}
    entry = {
        "classes": list(CLASSES),
        "positive": BACTERIAL,
        "threshold": head.threshold,
        "threshold_rule": "0.5 on P(bacterial), fixed (not tuned); the probability shown is that of the label given",
        "validated_ages": list(head.validated_ages),
        "shown_for": "PNEUMONIA results, not refused, with a typed age within validated_ages (secondary information)",
        "source": SOURCE,
        "labels": "each film by its own file name: personN_bacteria_M → bacterial, personN_virus_M → viral",
        "split": "the card's patient-grouped Kermany split: fitted on the training side's pneumonia films, "
                 "measured on the validation side's (no person on both sides)",
        "persons_with_both_kinds": mixed,
        "features": FEATURES,
        "dimensions": int(head.mean.numel()),
        "model": "scikit-learn LogisticRegression (L2), no class weights",
        "training": fit_report,
        "validation": validation,
        "reference": "Kermany et al., Cell 2018: AUC 0.940 bacterial vs viral (their own test set, their model)",
        "base_weights_sha256": key,
        "command": command,
        "fitted": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    extra = {k: v for k, v in extra.items() if not k.startswith(PREFIX)}
    extra.update(head.tensors())
    raw = {k: v for k, v in card.raw.items() if k not in ("weights_sha256", "config")}
    raw["subtype"] = entry
    saved = save_checkpoint(model.float().to(memory_format=torch.contiguous_format), raw, out or model_path,
                            extra=extra)
    return saved, entry


def format_entry(entry):
    v, t = entry["validation"], entry["training"]
    return "\n".join([
        f"training: {t['n']} films, {t['persons']} persons; C = {t['C']:g} by {t['cv']} "
        f"(CV AUC {max(t['cv_auc_by_C'].values()):.4f})" if t["cv_auc_by_C"] else f"training: {t['n']}, C = {t['C']:g}",
        f"validation: AUC {v['auc']:.4f} [{v['auc_ci95'][0]:.3f}, {v['auc_ci95'][1]:.3f}] ({v['ci_method']}); "
        f"n {v['n']}, {v['persons']} persons",
        f"at P(bacterial) >= {v['threshold']}: accuracy {v['accuracy']:.4f}, recall bacterial "
        f"{v['recall']['bacterial']:.4f}, viral {v['recall']['viral']:.4f}",
        f"persons with films of both kinds: {entry['persons_with_both_kinds']}",
    ])


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_model(parser, rewrites=True)
    flags.add_sources(parser)
    flags.add_out(parser, metavar="WEIGHTS.safetensors")
    flags.add(parser, "--cache", default=Path("runs"), metavar="DIR")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the validation AUC")
    flags.add_seed(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    path = dict(args.data).get(SOURCE)
    if path is None:
        parser.exit(2, f"ml.cli.fit_subtype: only the {SOURCE} source carries bacterial / viral labels\n")
    torch.set_grad_enabled(False)
    command = "python -m ml.cli.fit_subtype " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        card, entry = fit_into_checkpoint(args.model, path, args.out, cache_dir=args.cache,
                                          resamples=args.resamples, seed=args.seed, command=command)
    except SplitError as exc:
        parser.exit(2, f"ml.cli.fit_subtype: {exc}\n")
    print(format_entry(entry))
    print(json.dumps({"weights_sha256": card["weights_sha256"], "subtype": entry["validation"]}))


if __name__ == "__main__":
    main()
