"""Fitting the out-of-distribution gate on every training source, and measuring it.

The Gaussian (``ml.ood.FeatureGate``) is fitted on the training films of all sources, each
film once as it is and once as an augmented view (other machines' contrast, blur, noise,
compression), so that a film from another hospital is not far just for looking different.
The probe (``ml.ood.NegativeProbe``) learns training films against their inverted and
cropped copies. Each source's validation patients are halved: the A halves set both
thresholds — the probe's halfway (logit space) between the A films' highest score and their
copies' lowest; the distance's at the lowest quantile that, with the probe, refuses at most
``target`` of the A films *of every source* — and the B halves measure the false rejections,
per source. Inverted and cropped copies of B films join the non-X-ray corpus
(``ml.training.ood_corpus``) for the rejection rates.
"""

import random
import sys

import numpy as np
import torch
from tqdm import tqdm

from ..decode import decode_with_tags
from ..device import for_inference
from ..metrics import logit_midpoint
from ..ood import FeatureGate, NegativeProbe, OodGate, image_check
from ..preprocessing import image_to_tensor
from . import data as D
from .augment import augment as photometric_augment
from .features import extract
from .ood_corpus import corpus, misuse_copies

TARGET_FALSE_REJECTION = 0.005  # per source, on the A halves: half the 1 % goal, as margin for new patients
QUANTILES = (0.99, 0.995, 0.9975, 0.999, 1.0)


def probe_threshold(xray_scores, misuse_scores):
    """Halfway, in logit space, between the highest-scoring X-ray and the lowest-scoring misuse copy.

    Where the two overlap, the X-rays' maximum: a real film is not refused to catch a copy.
    """
    top, bottom = float(xray_scores.max()), float(misuse_scores.min())
    if bottom <= top:
        return top
    return logit_midpoint(bottom, top)


def distance_threshold(distance_scores, probe_refuses, target=TARGET_FALSE_REJECTION, groups=None):
    """(threshold, quantile): the lowest quantile of the X-rays' distances whose union with the probe
    refuses at most ``target`` of the films of every group (source); the largest distance otherwise."""
    groups = np.zeros(len(distance_scores), dtype=int) if groups is None else np.asarray(groups)
    for q in QUANTILES:
        d = float(torch.quantile(distance_scores, q))
        refused = ((distance_scores > d) | probe_refuses).numpy()
        if all(refused[groups == g].mean() <= target for g in np.unique(groups)):
            return d, q
    return float(distance_scores.max()), 1.0


def gate_card(gate, report):
    """The gate's entry in a model card: thresholds, the rule that set them, and the measured report."""
    return {**gate.card(), "distance_quantile": report["distance_quantile"],
            "target_false_rejection_val_a": TARGET_FALSE_REJECTION, "report": report}


@torch.inference_mode()
def image_features(model, images, batch_size=32, desc="features"):
    """Concatenated image-branch features of in-memory PIL images, as the gate sees them."""
    rows = []
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, file=sys.stderr):
        batch = torch.stack([image_to_tensor(image, model.config) for image in images[start:start + batch_size]])
        rows.append(torch.cat(model.image_features(batch.to(device, memory_format=torch.channels_last)), 1).cpu())
    return torch.cat(rows).float() if rows else torch.empty(0)


def sample_features(model, samples, *, views=1, seed=0, cache_dir=None, workers=1):
    found = extract(model, samples, views=views, augment=photometric_augment, seed=seed, cache_dir=cache_dir,
                    workers=workers, desc="gate features")
    return torch.cat([found[name] for name in model.image_branches], 1).float()


def decode_all(samples):
    return [decode_with_tags(s.path)[0] for s in samples]


def halves(val, seed):
    """Each source's validation patients halved: (A films, B films)."""
    a, b = [], []
    for source in sorted({s.source for s in val}):
        films = [s for s in val if s.source == source]
        first, second = D.split_by_patient(films, val_fraction=0.5, seed=seed + 1)
        if not first or not second:  # too few patients to halve (smoke runs): thresholds and rates share them
            first = second = films
        a += first
        b += second
    return a, b


def fit_and_measure(model, train, val, *, probe_images=1500, seed=0, cache_dir=None, workers=1):
    """(OodGate, report) for a model and its training/validation films (any number of sources)."""
    model = for_inference(model, next(model.parameters()).device)
    val_a, val_b = halves(val, seed)
    rng = np.random.default_rng(seed)
    train_features = sample_features(model, train, views=2, seed=seed, cache_dir=cache_dir, workers=workers)
    probe_sources = random.Random(seed).sample(train, min(probe_images, len(train)))
    negatives = [copy for image in decode_all(probe_sources) for copy in misuse_copies(image, rng)]
    negative_features = image_features(model, negatives, desc="negatives")
    features_a = sample_features(model, val_a, cache_dir=cache_dir, workers=workers)
    features_b = sample_features(model, val_b, cache_dir=cache_dir, workers=workers)
    images_a = decode_all(val_a)
    misuse_a = image_features(model, [copy for image in images_a for copy in misuse_copies(image, rng)],
                              desc="val A copies")

    distance = FeatureGate.fit(train_features)
    probe = NegativeProbe.fit(train_features[: len(train)], negative_features)
    probe.threshold = probe_threshold(probe.score(features_a), probe.score(misuse_a))
    groups_a = [s.source for s in val_a]
    distance.threshold, quantile = distance_threshold(
        distance.score(features_a), probe.score(features_a) > probe.threshold,
        groups=np.unique(groups_a, return_inverse=True)[1])
    gate = OodGate(distance, probe)

    images_b = decode_all(val_b)
    refused_b = [image_check(im) is not None or d[0] for im, d in zip(images_b, gate.decide(features_b))]
    by_source = {}
    for s, refused in zip(val_b, refused_b):
        row = by_source.setdefault(s.source, {"n": 0, "refused": 0, "files": []})
        row["n"] += 1
        row["refused"] += int(refused)
        if refused:
            row["files"].append(s.path.name)
    for row in by_source.values():
        row["rate"] = row["refused"] / row["n"]
    report = {
        "split": {"n_train": len(train), "n_train_views": len(train_features), "n_probe_negatives": len(negatives),
                  "n_val_a": len(val_a), "n_val_b": len(val_b)},
        "distance_quantile": quantile,
        "false_rejections_val_b": by_source,
        "false_rejection_rate_val_b": float(np.mean(refused_b)),
        "rejection": {},
    }
    held_out = [images_b[i] for i in random.Random(seed).sample(range(len(images_b)), min(50, len(images_b)))]
    for kind, items in corpus(held_out, seed=seed).items():
        names, images, infos = zip(*items)
        feats = image_features(model, [im.convert("L") for im in images], desc=kind)
        decisions = [image_check(im, info) is not None or d[0]
                     for im, info, d in zip(images, infos, gate.decide(feats))]
        report["rejection"][kind] = {"n": len(items), "rejected": int(sum(decisions)),
                                     "rate": float(np.mean(decisions)),
                                     "accepted": [n for n, r in zip(names, decisions) if not r]}
    total = sum(r["n"] for r in report["rejection"].values())
    report["rejection_rate_all_kinds"] = sum(r["rejected"] for r in report["rejection"].values()) / total
    return gate, report


def format_report(report):
    lines = [f"false rejections on held-out X-rays (val B): {report['false_rejection_rate_val_b']:.2%} overall"]
    for source, row in report["false_rejections_val_b"].items():
        lines.append(f"  {source}: {row['refused']} of {row['n']} ({row['rate']:.2%})")
    lines += ["| kind | n | rejected | rate |", "|---|---|---|---|"]
    for kind, row in report["rejection"].items():
        lines.append(f"| {kind} | {row['n']} | {row['rejected']} | {row['rate']:.1%} |")
    lines.append(f"| all non-X-ray kinds | {sum(r['n'] for r in report['rejection'].values())} | "
                 f"{sum(r['rejected'] for r in report['rejection'].values())} | {report['rejection_rate_all_kinds']:.1%} |")
    return "\n".join(lines)
