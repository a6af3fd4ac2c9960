"""Bacterial or viral (``ml.subtype``): labels from Kermany's file names, cached features, the fit, the figures.

- Labels: ``personN_bacteria_M`` → bacterial, ``personN_virus_M`` → viral, each film by its own name
  (some persons have films of both kinds). Nothing else carries a label (:func:`subtype_of` → None).
- Split: the checkpoint's own patient-grouped Kermany split (``ml.training.splits``; ``personN`` is
  the patient): the head is fitted on the pneumonia films of its training side only and measured on
  those of its validation side, so no person is on both sides and v3's validation films train nothing.
- Features: the serving path's own (``Predictor._forward``: image preprocessing, channels-last layout,
  CNN ⊕ ViT pooled features), at fp32 on the CPU, cached in ``runs/subtype-features-*.npz``, one file
  per chunk of films, named by the checkpoint's digest and the films: an interrupted run resumes.
- Fit: scikit-learn ``LogisticRegression`` on standardised features (no class weights, so P(bacterial)
  keeps Kermany's mix), C chosen by the mean AUC of a person-grouped 5-fold ``GroupKFold`` on the
  training films (the standardisation refitted in each fold); the threshold is 0.5 on P(bacterial).
- Figures: validation AUC with a percentile-bootstrap 95 % interval that resamples **persons** (all of
  a person's films together), n per class, accuracy and per-class recall at the threshold.
"""

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..decode import decode_image
from ..metrics import roc_auc
from ..subtype import BACTERIAL, VIRAL, SubtypeHead

_NAME = re.compile(r"^person\d+_(bacteria|virus)_\d+\.[a-z]+$", re.IGNORECASE)
LABEL_OF = {"bacteria": BACTERIAL, "virus": VIRAL}
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CHUNK = 256  # films per cache file
MIN_SCALE = 1e-6


def subtype_of(path):
    """"bacterial" | "viral" from a Kermany file name (``personN_bacteria_M.jpeg`` / ``personN_virus_M.jpeg``), else None."""
    match = _NAME.match(Path(path).name)
    return LABEL_OF[match.group(1).lower()] if match else None


def subtype_films(samples):
    """The pneumonia films whose name carries bacteria / virus: [(sample, "bacterial" | "viral")]."""
    return [(s, subtype_of(s.path)) for s in samples if s.label == 1 and subtype_of(s.path)]


def targets(labels):
    """1 for bacterial (the positive class, P(bacterial)), 0 for viral."""
    return np.array([label == BACTERIAL for label in labels], dtype=np.int64)


# --- features ---------------------------------------------------------------------------------

def features_of(predictor, paths, *, cache_dir=None, key="", batch_size=32, log=None):
    """(n, d) float32 features of these films through ``predictor._forward`` (no age), cached per chunk."""
    paths = [str(p) for p in paths]
    films = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
    parts = []
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start:start + CHUNK]
        cache = Path(cache_dir) / f"subtype-features-{key[:16]}-{films}-{start:05d}.npz" if cache_dir else None
        if cache is not None and cache.exists():
            stored = np.load(cache)
            if list(stored["paths"]) == chunk:
                parts.append(stored["features"])
                continue
        rows = []
        for at in range(0, len(chunk), batch_size):
            images = [decode_image(p) for p in chunk[at:at + batch_size]]
            rows.append(predictor._forward(images, [None] * len(images)).features.numpy())
        part = np.concatenate(rows).astype(np.float32)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(cache.stem + ".partial.npz")
            np.savez(partial, features=part, paths=np.array(chunk))
            partial.replace(cache)
        parts.append(part)
        if log:
            log(f"features {min(start + CHUNK, len(paths))}/{len(paths)}")
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# --- fit and measure ----------------------------------------------------------------------------

def _model(c, seed=0):
    return LogisticRegression(C=c, max_iter=5000, random_state=seed)


def choose_c(x, y, groups, *, grid=C_GRID, folds=5):
    """{C: mean AUC over person-grouped folds} and the best C (the smaller on a tie)."""
    folds = min(folds, len(set(groups)))
    scores = {}
    for c in grid:
        aucs = []
        for fit, held in GroupKFold(n_splits=folds).split(x, y, groups):
            pipeline = make_pipeline(StandardScaler(), _model(c)).fit(x[fit], y[fit])
            aucs.append(roc_auc(y[held], pipeline.predict_proba(x[held])[:, 1]))
        scores[c] = float(np.nanmean(aucs))
    best = max(grid, key=lambda c: (round(scores[c], 6), -c))
    return best, scores


def fit_head(x, y, groups, *, grid=C_GRID, folds=5, **head):
    """A :class:`SubtypeHead` on features ``x`` (n, d) and targets ``y`` (1 = bacterial); returns (head, fit report)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.int64)
    c, scores = choose_c(x, y, list(groups), grid=grid, folds=folds) if len(grid) > 1 else (grid[0], {})
    mean, scale = x.mean(0), np.maximum(x.std(0), MIN_SCALE)
    model = _model(c).fit((x - mean) / scale, y)
    fitted = SubtypeHead(mean, scale, model.coef_[0], model.intercept_, **head)
    report = {"C": c, "cv_auc_by_C": {f"{k:g}": v for k, v in scores.items()}, "cv": f"GroupKFold({folds}) by person",
              "n": {BACTERIAL: int(y.sum()), VIRAL: int((1 - y).sum())}, "persons": len(set(groups))}
    return fitted, report


def person_bootstrap_auc(y, scores, groups, *, resamples=2000, level=0.95, seed=0):
    """Percentile interval of the AUC, resampling persons (each with all their films) with replacement."""
    y, scores = np.asarray(y), np.asarray(scores, np.float64)
    persons = sorted(set(groups))
    rows = {p: [] for p in persons}
    for i, g in enumerate(groups):
        rows[g].append(i)
    rows = [np.array(rows[p]) for p in persons]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        index = np.concatenate([rows[k] for k in rng.integers(0, len(rows), len(rows))])
        if y[index].min() != y[index].max():
            values.append(roc_auc(y[index], scores[index]))
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def evaluate_head(head, x, y, groups, *, resamples=2000, seed=0):
    """Validation figures of a head on features ``x`` with targets ``y`` (1 = bacterial), persons ``groups``."""
    y = np.asarray(y, np.int64)
    p = head.probabilities(torch.as_tensor(np.asarray(x, np.float32))).numpy()
    said = p >= head.threshold
    return {
        "auc": roc_auc(y, p),
        "auc_ci95": person_bootstrap_auc(y, p, list(groups), resamples=resamples, seed=seed),
        "ci_method": f"percentile bootstrap over persons (a person's films together), {resamples} resamples",
        "n": {BACTERIAL: int(y.sum()), VIRAL: int((1 - y).sum())},
        "persons": len(set(groups)),
        "threshold": head.threshold,
        "accuracy": float((said == y.astype(bool)).mean()),
        "recall": {BACTERIAL: float(said[y == 1].mean()), VIRAL: float((~said[y == 0]).mean())},
    }


def log_to_stderr(message):
    print(message, file=sys.stderr, flush=True)
