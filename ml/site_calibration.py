"""Refitting one population's operating point on a site's own reviewed studies. No torch.

The model card's points were fitted on the training sources' validation films. At another hospital
or period the ranking holds (AUC) but the threshold does not transfer: pneumoweb-v4's pediatric point
called 55 % of a later period's healthy children PNEUMONIA (the card's "Site calibration"). A site
refits the point with exactly the card's rule (:func:`ml.thresholds.threshold_for_recall`, the
population's recall floor) on studies its reviewers confirmed.

Evidence is one row per reviewed film: (patient key, truth 0/1, calibrated P(pneumonia) as served).
Several films of one patient are not independent, so every interval resamples **patients** with
replacement (all of a drawn patient's films come along) and counts are of patients:

- at the current and the proposed threshold: recall and specificity over the films, each with its
  patient-bootstrap 95 % percentile interval (in-sample at the proposed one: the threshold was fitted
  on these films);
- the borderline band, refit the card's way: the percentile interval of the threshold re-chosen on each
  patient resample, widened to include the proposed threshold;
- "on patients left out": on each resample the rule is refit on the drawn patients and scored on the
  patients not drawn (out-of-bag); the median and interval of those figures say what the refit rule
  delivers on patients it was not fitted on (the in-sample recall is optimistic by construction).

:func:`propose` refuses (``refusals``, sentences naming the counts) when fewer patients than
``min_per_class`` are confirmed positive or negative, or when the lower bound of the recall at the
proposed threshold lies more than ``max_shortfall`` under the floor. That bound is the patient-bootstrap
interval's; where that interval has no width — every positive above the refit threshold, which at a
0.98 floor means fewer than 50 of them — it says nothing of their number, and the Wilson bound over the
confirmed PNEUMONIA patients is used instead (6 of 6: 0.61). The out-of-bag figures are wider (about
±0.04 at 390 positives on synthetic scores) and are shown, not used to refuse.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from .thresholds import threshold_for_recall

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


@dataclass
class Proposal:
    population: str
    min_recall: float
    current_threshold: float
    threshold: float = None  # None when there is no evidence to fit on
    band: list = None
    films: int = 0
    patients: int = 0
    positive_patients: int = 0
    negative_patients: int = 0
    current: dict = field(default_factory=dict)  # {"recall": {"value", "ci95"}, "specificity": {...}}
    proposed: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)  # the refit rule scored on out-of-bag patients
    recall_lower_bound: float = None  # what the refusal rule compares with the floor (see propose)
    refusals: list = field(default_factory=list)

    @property
    def refused(self):
        return bool(self.refusals)

    def to_dict(self):
        return {**asdict(self), "refused": self.refused}


def wilson_low(proportion, n, z=1.959963984540054):
    """Lower end of the Wilson 95 % interval of a proportion observed on ``n`` (here: patients)."""
    if not n:
        return 0.0
    centre = proportion + z * z / (2 * n)
    spread = z * np.sqrt(proportion * (1 - proportion) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - spread) / (1 + z * z / n)))


def _rates(truth, predicted):
    positives, negatives = truth == 1, truth == 0
    recall = float(predicted[positives].mean()) if positives.any() else None
    specificity = float((~predicted[negatives]).mean()) if negatives.any() else None
    return recall, specificity


def _interval(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    tail = (1 - LEVEL) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def _figures(truth, probability, threshold, resampled):
    recall, specificity = _rates(truth, probability >= threshold)
    draws = [_rates(truth[index], probability[index] >= threshold) for index in resampled]
    return {"recall": {"value": recall, "ci95": _interval([d[0] for d in draws])},
            "specificity": {"value": specificity, "ci95": _interval([d[1] for d in draws])}}


def patient_resamples(patients, *, resamples=RESAMPLES, seed=SEED):
    """Yield (film index of a resample of patients drawn with replacement, film index of the patients not drawn)."""
    keys, film_patient = np.unique(np.asarray(patients), return_inverse=True)
    films = np.arange(film_patient.size)
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        # Each film comes as many times as its patient was drawn: no Python loop over patients. One proposal
        # on 6,000 synthetic films of 3,000 patients took 3.7 s with a list of each patient's films, 1.1 s so
        # (the same figures: the draws are the same).
        times = np.bincount(rng.integers(0, keys.size, keys.size), minlength=keys.size)[film_patient]
        yield np.repeat(films, times), films[times == 0]


def propose(patients, truth, probability, *, population, min_recall, current_threshold, min_per_class,
            max_shortfall, resamples=RESAMPLES, seed=SEED):
    """A :class:`Proposal` for one population from its reviewed films (see the module docstring)."""
    patients = np.asarray(patients)
    truth = np.asarray(truth, dtype=np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    proposal = Proposal(population=population, min_recall=float(min_recall),
                        current_threshold=float(current_threshold), films=int(truth.size),
                        patients=int(np.unique(patients).size) if patients.size else 0,
                        positive_patients=int(np.unique(patients[truth == 1]).size),
                        negative_patients=int(np.unique(patients[truth == 0]).size))
    short = [f"{count} confirmed {kind} patients" for kind, count in
             (("PNEUMONIA", proposal.positive_patients), ("NORMAL", proposal.negative_patients)) if count < min_per_class]
    if short:
        proposal.refusals.append(f"Too few reviewed studies to refit the {population} point: {' and '.join(short)}; "
                                 f"at least {min_per_class} of each are needed ({proposal.films} reviewed films of "
                                 f"{proposal.patients} patients so far).")
    if not proposal.positive_patients or not proposal.negative_patients:
        if truth.size:
            proposal.current = _figures(truth, probability, current_threshold, [])
        return proposal
    threshold = threshold_for_recall(truth, probability, min_recall)
    draws = list(patient_resamples(patients, resamples=resamples, seed=seed))
    in_bag = [drawn for drawn, _ in draws]
    proposal.threshold = threshold
    proposal.current = _figures(truth, probability, current_threshold, in_bag)
    proposal.proposed = _figures(truth, probability, threshold, in_bag)
    refits, left_recall, left_specificity = [], [], []
    for drawn, left in draws:
        sample = truth[drawn]
        if sample.min() == sample.max():
            continue
        refit = threshold_for_recall(sample, probability[drawn], min_recall)
        refits.append(refit)
        if left.size:
            recall, specificity = _rates(truth[left], probability[left] >= refit)
            left_recall.append(recall)
            left_specificity.append(specificity)
    band = _interval(refits) or [threshold, threshold]
    proposal.band = [min(band[0], threshold), max(band[1], threshold)]
    proposal.left_out = {
        name: {"median": float(np.median([v for v in values if v is not None])) if any(v is not None for v in values)
               else None, "ci95": _interval(values)}
        for name, values in (("recall", left_recall), ("specificity", left_specificity))
    }
    recall = proposal.proposed["recall"]
    low, high = recall["ci95"] or [recall["value"], recall["value"]]
    if high - low < 1e-12:
        # The bootstrap cannot see past the sample: when every positive lies above the refit threshold
        # (fewer than 50 of them at a 0.98 floor) it gives [1, 1] however few they are. The Wilson
        # bound over the confirmed PNEUMONIA patients still counts them (6 of 6: 0.61).
        low = wilson_low(recall["value"], proposal.positive_patients)
    proposal.recall_lower_bound = low
    if low < min_recall - max_shortfall:
        proposal.refusals.append(
            f"The recall at the proposed threshold could be as low as {low:.3f} (95 % interval over patients), more "
            f"than {max_shortfall:g} under the {population} floor of {min_recall:g}: review more studies, "
            f"PNEUMONIA ones above all ({proposal.positive_patients} confirmed so far).")
    return proposal
