import numpy as np
import pytest

from ml.metrics import confusion, fit_temperature, roc_auc, roc_curve, summary, threshold_for_recall


def brute_force_auc(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    return (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()


def test_it_computes_auc_like_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(labels + rng.normal(0, 1, 500), 1)  # with ties
    assert roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_it_picks_the_highest_threshold_meeting_the_recall_floor():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    scores = 1 / (1 + np.exp(-(2 * labels - 1 + rng.normal(0, 1.5, 2000))))
    threshold = threshold_for_recall(labels, scores, 0.98)
    assert summary(labels, scores, threshold)["recall"] >= 0.98
    # The same confusion matrix as at the score that just keeps the floor (the boundary)...
    boundary, below = np.min(scores[scores > threshold]), np.max(scores[scores < threshold])
    assert summary(labels, scores, boundary)["confusion_matrix"] == summary(labels, scores, threshold)["confusion_matrix"]
    assert summary(labels, scores, np.min(scores[scores > boundary]))["recall"] < 0.98
    # ...but midway, in logit space, to the next score down: room on both sides for rounding.
    logit = np.log(np.array([below, threshold, boundary]) / (1 - np.array([below, threshold, boundary])))
    assert logit[0] < logit[1] < logit[2]
    assert logit[1] - logit[0] == pytest.approx(logit[2] - logit[1])


def test_it_summarises_a_confusion_matrix():
    metrics = summary([0, 0, 1, 1, 1], [0.1, 0.6, 0.7, 0.4, 0.9], 0.5)
    assert confusion([0, 0, 1, 1, 1], [0.1, 0.6, 0.7, 0.4, 0.9], 0.5) == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["recall"] == pytest.approx(2 / 3) and metrics["specificity"] == pytest.approx(0.5)
    assert metrics["confusion_matrix"]["rows_true_cols_predicted"] == [[1, 1], [1, 2]]


def test_it_fits_the_temperature_of_overconfident_logits():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, 5000)
    labels = (rng.random(5000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    assert fit_temperature(true_logits * 4, labels) == pytest.approx(4, rel=0.15)


def mann_whitney_auc(labels, scores):
    """U / (n⁺ n⁻) from mid-ranks: the AUC with ties counted one half, by another route than the ROC curve."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mid-rank of the tied run (1-based)
            start = end
    positives, negatives = labels.sum(), (1 - labels).sum()
    return (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)


@pytest.mark.parametrize("seed", range(6))
def test_its_auc_matches_the_mann_whitney_statistic_to_1e_12_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(20, 800))
    labels = rng.integers(0, 2, size)
    continuous = labels * rng.uniform(0, 2) + rng.normal(0, 1, size)
    for scores in (continuous, np.round(continuous, 1), np.round(continuous), rng.integers(0, 3, size).astype(float)):
        assert abs(roc_auc(labels, scores) - mann_whitney_auc(labels, scores)) <= 1e-12
        assert abs(roc_auc(labels, scores) - brute_force_auc(labels, scores)) <= 1e-12


def test_its_roc_curve_has_a_point_per_distinct_score_from_the_top():
    fpr, tpr, thresholds = roc_curve([0, 1, 0, 1, 1], [0.1, 0.9, 0.5, 0.5, 0.3])
    assert thresholds.tolist() == [np.inf, 0.9, 0.5, 0.3, 0.1]
    assert tpr.tolist() == [0, 1 / 3, 2 / 3, 1, 1] and fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert np.isnan(roc_auc([1, 1, 1], [0.2, 0.4, 0.6]))
    _, tpr, _ = roc_curve([1, 1, 1], [0.2, 0.4, 0.6])  # one class: rates of the missing class are 0, not NaN
    assert tpr.tolist() == [0, 1 / 3, 2 / 3, 1]
