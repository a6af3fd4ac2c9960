"""The site refit's statistics (ml.site_calibration) and the torch-free threshold rule (ml.thresholds)."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_curve

from ml import site_calibration
from ml.site_calibration import patient_resamples, propose, wilson_low
from ml.thresholds import logit_midpoint, threshold_for_recall


def sklearn_rule(labels, scores, min_recall):
    """The rule as ml.metrics wrote it before it moved: scikit-learn's ROC curve, every threshold kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        _, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    tpr = np.nan_to_num(tpr)
    ok = np.flatnonzero(tpr >= min_recall)
    if not ok.size:
        return float(np.min(scores))
    boundary = ok[0]
    if boundary + 1 >= thresholds.size:
        return float(thresholds[boundary])
    return logit_midpoint(thresholds[boundary], thresholds[boundary + 1])


def test_it_is_the_rule_the_card_was_fitted_with_on_every_kind_of_sample():
    rng = np.random.default_rng(0)
    for _ in range(400):
        n = int(rng.integers(2, 120))
        labels = rng.integers(0, 2, n)
        scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties too
        for floor in (0.5, 0.9, 0.95, 0.98, 1.0):
            assert threshold_for_recall(labels, scores, floor) == pytest.approx(sklearn_rule(labels, scores, floor))


def test_it_keeps_the_recall_floor_on_the_films_it_was_fitted_on():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(200, int), np.zeros(200, int)]
    scores = np.r_[rng.beta(5, 1, 200), rng.beta(1, 4, 200)]
    threshold = threshold_for_recall(labels, scores, 0.98)
    assert (scores[labels == 1] >= threshold).mean() >= 0.98
    # the best specificity: the next higher score would lose the floor
    above = np.sort(scores[labels == 1])
    assert (scores[labels == 1] >= above[above >= threshold][0] + 1e-12).mean() < 0.98


def site(positives, negatives, *, films=1, seed=0):
    rng = np.random.default_rng(seed)
    patients, truth, scores = [], [], []
    for label, count, (a, b) in ((1, positives, (5, 1)), (0, negatives, (1, 4))):
        for _ in range(count):
            key = len(set(patients)) + len(patients)
            for _ in range(films):
                patients.append(key)
                truth.append(label)
                scores.append(rng.beta(a, b))
    return patients, truth, scores


def refit(patients, truth, scores, **kwargs):
    options = {"population": "pediatric", "min_recall": 0.98, "current_threshold": 0.07, "min_per_class": 50,
               "max_shortfall": 0.05, "resamples": 400, **kwargs}
    return propose(patients, truth, scores, **options)


def test_a_refit_on_enough_patients_moves_the_threshold_and_gains_specificity():
    proposal = refit(*site(200, 120))
    assert not proposal.refused and proposal.threshold > 0.07
    assert proposal.proposed["specificity"]["value"] > proposal.current["specificity"]["value"] + 0.3
    assert proposal.proposed["recall"]["value"] >= 0.98
    assert proposal.band[0] <= proposal.threshold <= proposal.band[1]
    for figures in (proposal.current, proposal.proposed):
        for entry in figures.values():
            assert entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]
    assert proposal.left_out["recall"]["ci95"][0] < proposal.proposed["recall"]["value"]  # out-of-bag is humbler


def test_it_refuses_too_few_patients_naming_both_counts():
    proposal = refit(*site(30, 20))
    assert proposal.refused and "30 confirmed PNEUMONIA patients and 20 confirmed NORMAL patients" in proposal.refusals[0]


def test_the_bootstrap_alone_would_not_see_a_handful_of_positives_but_the_wilson_bound_does():
    proposal = refit(*site(6, 6), min_per_class=5)
    assert proposal.proposed["recall"]["ci95"] == [1.0, 1.0]
    assert proposal.recall_lower_bound == pytest.approx(wilson_low(1.0, 6)) and proposal.refused
    enough = refit(*site(200, 120))
    assert enough.recall_lower_bound == enough.proposed["recall"]["ci95"][0]  # a bootstrap with width stands
    assert wilson_low(1.0, 6) == pytest.approx(0.61, abs=0.01) and wilson_low(0.98, 200) > 0.94


def test_a_patients_films_are_drawn_together():
    patients = [0, 0, 0, 1, 2, 2]
    for drawn, left in patient_resamples(patients, resamples=50, seed=3):
        drawn_patients = [patients[i] for i in drawn]
        for key in set(drawn_patients):
            assert drawn_patients.count(key) % patients.count(key) == 0  # every film of a drawn patient, each time
        assert not set(drawn_patients) & {patients[i] for i in left}


def test_films_of_one_patient_are_one_patient_in_the_counts():
    proposal = refit(*site(60, 60, films=3))
    assert (proposal.films, proposal.patients, proposal.positive_patients) == (360, 120, 60)


def test_no_evidence_gives_counts_and_a_refusal_not_an_error():
    proposal = refit([], [], [])
    assert proposal.refused and proposal.threshold is None and proposal.films == 0


def test_it_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, ml.site_calibration, ml.thresholds; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert site_calibration.RESAMPLES == 2000
