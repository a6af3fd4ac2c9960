"""The threshold rule of every operating point, in numpy alone (the web tier refits points too: no torch).

:func:`threshold_for_recall` is the rule the model card's points were fitted with (``ml.training.calibration``)
and the one a site's refit uses (``ml.site_calibration``): the best-specificity threshold whose recall is
at least the floor, placed midway (in logit space) to the next lower score.
"""

import numpy as np


def logit_midpoint(high, low):
    """The probability halfway between two probabilities in logit space."""
    high, low = np.clip([high, low], 1e-9, 1 - 1e-9)
    mid = 0.5 * (np.log(high / (1 - high)) + np.log(low / (1 - low)))
    return float(1 / (1 + np.exp(-mid)))


def threshold_for_recall(labels, scores, min_recall=0.98):
    """Best-specificity threshold whose recall is at least ``min_recall``.

    Every threshold between the score that just keeps ``min_recall`` and the next lower score
    gives the same confusion matrix here; the midpoint (in logit space) is taken, not the score
    itself, so that a rounding-sized change in that one study's score (fp16 weights, another
    CPU kernel, a GPU) cannot move it across the line. Without positives, no threshold reaches the
    floor and the lowest score is returned.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    distinct = np.unique(scores)[::-1]  # every distinct score, highest first (as an ROC curve's thresholds)
    positives = np.sort(scores[labels == 1])
    if positives.size:
        recall = (positives.size - np.searchsorted(positives, distinct, side="left")) / positives.size
    else:
        recall = np.zeros(distinct.size)
    ok = np.flatnonzero(recall >= min_recall)
    if not ok.size:
        return float(np.min(scores))
    boundary = ok[0]
    if boundary + 1 >= distinct.size:  # the lowest score: nothing below it to leave room to
        return float(distinct[boundary])
    return logit_midpoint(distinct[boundary], distinct[boundary + 1])
