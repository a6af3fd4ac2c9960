"""Fit the out-of-distribution gate of a trained checkpoint and measure it; writes both into the checkpoint.

    python -m ml.fit_ood --model models/pneumoweb-compact.safetensors --data ../shared/data/chest_xray/train

Uses the checkpoint's own patient-grouped split. The Gaussian and the probe are fitted on
the training split (the probe's negatives are inverted and cropped training images); the
validation split is halved by patient. Half A sets both thresholds: the probe's halfway (in
logit space) between half A's highest-scoring X-ray and its lowest-scoring inverted/cropped
copy; the distance's at the lowest quantile of half A's scores that, together with the probe,
refuses at most 0.5 % of half A's X-rays (half the 1 % goal, as margin for new patients).
Half B measures the false-rejection rate, and inverted and cropped copies of half B join the
non-X-ray corpus (``ml.ood_corpus``) for the rejection rates. ``ml.train`` runs this at the
end of training.
"""

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import data as D
from .checkpoint import load_checkpoint, save_checkpoint
from .inference import for_inference
from .metrics import logit_midpoint
from .ood import FeatureGate, NegativeProbe, OodGate, image_check
from .ood_corpus import corpus, misuse_copies
from .decode import decode_with_tags
from .preprocessing import image_to_tensor

TARGET_FALSE_REJECTION = 0.005
QUANTILES = (0.99, 0.995, 0.9975, 0.999, 1.0)


def probe_threshold(xray_scores, misuse_scores):
    """Halfway, in logit space, between the highest-scoring X-ray and the lowest-scoring misuse copy.

    The probe leaves a wide gap between the two; a threshold at the X-rays' own maximum would
    sit on the edge of a tail seen in a few hundred films and refuse new patients' films just
    past it. Where the two overlap, the X-rays' maximum: a real film is not refused to catch a copy.
    """
    top, bottom = float(xray_scores.max()), float(misuse_scores.min())
    if bottom <= top:
        return top
    return logit_midpoint(bottom, top)


def distance_threshold(distance_scores, probe_refuses, target=TARGET_FALSE_REJECTION):
    """(threshold, quantile): the lowest quantile of the X-rays' distances whose union with the probe refuses ≤ target."""
    for q in QUANTILES:
        d = float(torch.quantile(distance_scores, q))
        if float(((distance_scores > d) | probe_refuses).double().mean()) <= target:
            return d, q
    return float(distance_scores.max()), 1.0  # the probe alone refuses more than the target


def gate_card(gate, report):
    """The gate's entry in a model card: thresholds, the rule that set them, and the measured report."""
    return {**gate.card(), "distance_quantile": report["distance_quantile"],
            "target_false_rejection_val_a": TARGET_FALSE_REJECTION, "report": report}


@torch.inference_mode()
def features(model, images, batch_size=32, desc="features"):
    """Concatenated CNN + ViT features of PIL images, as the gate sees them."""
    rows = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, file=sys.stderr):
        batch = torch.stack([image_to_tensor(image, model.config) for image in images[start:start + batch_size]])
        device = next(model.parameters()).device
        rows.append(torch.cat(model.image_features(batch.to(device, memory_format=torch.channels_last)), 1).cpu())
    return torch.cat(rows) if rows else torch.empty(0)


def decode_all(samples):
    return [decode_with_tags(s.path)[0] for s in samples]


def fit_and_measure(model, train, val, *, probe_images=1500, seed=0):
    """(OodGate, report) for a model and its training/validation samples."""
    model = for_inference(model, next(model.parameters()).device)
    val_a, val_b = D.split_by_patient(val, val_fraction=0.5, seed=seed + 1)
    if not val_a or not val_b:  # too few patients to halve (smoke runs): thresholds and rates share them
        val_a = val_b = val
    rng = np.random.default_rng(seed)
    train_features = features(model, decode_all(train), desc="train")
    probe_sources = random.Random(seed).sample(train, min(probe_images, len(train)))
    negatives = [copy for image in decode_all(probe_sources) for copy in misuse_copies(image, rng)]
    negative_features = features(model, negatives, desc="negatives")
    images_a, images_b = decode_all(val_a), decode_all(val_b)
    features_a, features_b = features(model, images_a, desc="val A"), features(model, images_b, desc="val B")
    misuse_a = features(model, [copy for image in images_a for copy in misuse_copies(image, rng)], desc="val A copies")

    distance = FeatureGate.fit(train_features)
    probe = NegativeProbe.fit(train_features, negative_features)
    probe.threshold = probe_threshold(probe.score(features_a), probe.score(misuse_a))
    distance.threshold, quantile = distance_threshold(distance.score(features_a),
                                                      probe.score(features_a) > probe.threshold)
    gate = OodGate(distance, probe)

    def rejected(images, infos, feats):
        decisions = gate.decide(feats)
        return [image_check(im, info) is not None or d[0] for im, info, d in zip(images, infos, decisions)]

    false_rejections = rejected(images_b, [None] * len(images_b), features_b)
    report = {
        "split": {"n_train": len(train), "n_probe_negatives": len(negatives), "n_val_a": len(val_a),
                  "n_val_b": len(val_b)},
        "distance_quantile": quantile,
        "false_rejection_rate_val_b": float(np.mean(false_rejections)),
        "false_rejections_val_b": int(np.sum(false_rejections)),
        "rejection": {},
    }
    for kind, items in corpus(images_b[:50], seed=seed).items():
        names, images, infos = zip(*items)
        decisions = rejected(images, infos, features(model, [im.convert("L") for im in images], desc=kind))
        report["rejection"][kind] = {"n": len(items), "rejected": int(sum(decisions)),
                                     "rate": float(np.mean(decisions)),
                                     "accepted": [n for n, r in zip(names, decisions) if not r]}
    total = sum(r["n"] for r in report["rejection"].values())
    report["rejection_rate_all_kinds"] = sum(r["rejected"] for r in report["rejection"].values()) / total
    return gate, report


def format_report(report):
    lines = [f"false rejections on held-out X-rays (val B, n={report['split']['n_val_b']}): "
             f"{report['false_rejections_val_b']} ({report['false_rejection_rate_val_b']:.2%})",
             "| kind | n | rejected | rate |", "|---|---|---|---|"]
    for kind, row in report["rejection"].items():
        lines.append(f"| {kind} | {row['n']} | {row['rejected']} | {row['rate']:.1%} |")
    lines.append(f"| all non-X-ray kinds | {sum(r['n'] for r in report['rejection'].values())} | "
                 f"{sum(r['rejected'] for r in report['rejection'].values())} | {report['rejection_rate_all_kinds']:.1%} |")
    return "\n".join(lines)


def fit_into_checkpoint(model_path, data, out=None, *, probe_images=1500, seed=0):
    model, card = load_checkpoint(model_path)
    split = card.get("training_data", {}).get("split", {})
    samples, _ = D.deduplicate(D.load_samples(data))
    train, val = D.split_by_patient(samples, val_fraction=split.get("val_fraction", 0.15), seed=split.get("seed", 0))
    gate, report = fit_and_measure(model, train, val, probe_images=probe_images, seed=seed)
    card = {k: v for k, v in card.items() if k not in ("weights_sha256", "config")}
    card["ood"] = gate_card(gate, report)
    card = save_checkpoint(model.float().to(memory_format=torch.contiguous_format), card, out or model_path,
                           extra=gate.tensors())
    return card, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the data the checkpoint was trained on")
    parser.add_argument("--out", type=Path, help="write here instead of updating --model in place")
    parser.add_argument("--probe-images", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    card, report = fit_into_checkpoint(args.model, args.data, args.out, probe_images=args.probe_images, seed=args.seed)
    print(format_report(report))
    print(json.dumps({"weights_sha256": card["weights_sha256"], **card["ood"]["report"]["split"]}))


if __name__ == "__main__":
    main()
