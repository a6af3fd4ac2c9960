"""Binary-classification metrics, operating threshold and calibration.

The ROC curve and its AUC are scikit-learn's; the operating threshold, temperature scaling
(PyTorch) and the bootstrap intervals are this module's.
"""

import warnings

import numpy as np
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from .thresholds import logit_midpoint, threshold_for_recall  # noqa: F401 - the rule lives there, torch-free


def sigmoid(logits):
    return torch.sigmoid(torch.as_tensor(logits, dtype=torch.float64)).numpy()


def roc_curve(labels, scores):
    """False- and true-positive rates at every distinct score, highest threshold first (the first is +inf).

    A class absent from ``labels`` gives rates of 0 for it (scikit-learn's NaN and warning replaced).
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, thresholds = sklearn_roc_curve(labels, scores, pos_label=1, drop_intermediate=False)
    return np.nan_to_num(fpr, nan=0.0), np.nan_to_num(tpr, nan=0.0), thresholds


def roc_auc(labels, scores):
    """Area under the ROC curve (ties count one half); NaN when ``labels`` hold one class only."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def confusion(labels, scores, threshold):
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    return {
        "tp": int((predicted & labels).sum()),
        "fp": int((predicted & ~labels).sum()),
        "tn": int((~predicted & ~labels).sum()),
        "fn": int((~predicted & labels).sum()),
    }


def summary(labels, scores, threshold):
    c = confusion(labels, scores, threshold)
    n = sum(c.values())

    def ratio(a, b):
        return a / b if b else float("nan")

    precision = ratio(c["tp"], c["tp"] + c["fp"])
    recall = ratio(c["tp"], c["tp"] + c["fn"])
    return {
        "n": n,
        "auc": roc_auc(labels, scores),
        "accuracy": ratio(c["tp"] + c["tn"], n),
        "precision": precision,
        "recall": recall,
        "specificity": ratio(c["tn"], c["tn"] + c["fp"]),
        "f1": ratio(2 * precision * recall, precision + recall),
        "threshold": float(threshold),
        "confusion_matrix": {"labels": ["NORMAL", "PNEUMONIA"], "rows_true_cols_predicted": [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]},
    }


def fit_temperature(logits, labels, steps=200):
    """Temperature T minimising the NLL of sigmoid(logits / T) (Guo et al. 2017)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


INTERVAL_METRICS = ("auc", "accuracy", "recall", "specificity", "precision")


def bootstrap_intervals(labels, scores, threshold, *, resamples=1000, level=0.95, seed=0):
    """Percentile bootstrap intervals {metric: [low, high]} of the metrics at ``threshold``.

    Films are resampled with replacement; a resample that lacks a class gives no AUC (skipped).
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.size == 0:
        return {}
    rng = np.random.default_rng(seed)
    values = {name: [] for name in INTERVAL_METRICS}
    for _ in range(resamples):
        index = rng.integers(0, labels.size, labels.size)
        row = summary(labels[index], scores[index], threshold)
        for name in INTERVAL_METRICS:
            if np.isfinite(row[name]):
                values[name].append(row[name])
    tail = (1 - level) / 2 * 100
    return {name: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] if v else None
            for name, v in values.items()}


def metrics_at(labels, scores, thresholds):
    """Metrics with per-film thresholds: compared on the margin ``score - threshold`` (AUC on the scores)."""
    labels, scores, thresholds = (np.asarray(a, dtype=np.float64) for a in (labels, scores, thresholds))
    if np.ptp(thresholds) == 0:
        row = summary(labels.astype(int), scores, float(thresholds[0]))
        row["intervals"] = bootstrap_intervals(labels.astype(int), scores, float(thresholds[0]))
        return row
    # Mixed points: the label is score >= own threshold; AUC stays the one of the probabilities.
    margin = scores - thresholds
    row = summary(labels.astype(int), margin, 0.0)
    row["auc"] = summary(labels.astype(int), scores, 0.5)["auc"]
    row["threshold"] = None
    row["intervals"] = bootstrap_intervals(labels.astype(int), margin, 0.0)
    row["intervals"]["auc"] = bootstrap_intervals(labels.astype(int), scores, 0.5)["auc"]
    return row
