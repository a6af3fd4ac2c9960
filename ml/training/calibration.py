"""One operating point per validated population, fitted on that population's validation films.

A population is an age band (``pediatric`` below 18 years, ``adult`` from 18). A validation
film belongs to the band of its recorded age; a film without one, to the population its
source documents (Kermany: children of 1–5 years — documented for the set as a whole, never
fed to the model as an age). Per population: a temperature (Guo et al. 2017) on the raw
logits, then the threshold with the best specificity whose recall is at least the
population's floor (children 0.98, adults 0.95), midway to the next score. All on the
weights rounded to the precision they are saved at.

Each point also gets a **borderline band** (:func:`borderline_band`), stored in the card as
``borderline_band: [low, high]`` on the calibrated P(pneumonia): the validation films are
resampled with replacement (``BAND_RESAMPLES`` bootstrap resamples of the same size, seed
``BAND_SEED``), the threshold is re-chosen on each resample with exactly the point's rule (the
same floor, the same temperature), and the band runs from the 2.5th to the 97.5th percentile of
those thresholds, widened to include the point's own threshold. A probability inside it is one
whose decision would flip under another validation sample of the same size: the line itself is
that uncertain there.
"""

import math

import numpy as np

from ..checkpoint import SHIPPED_DTYPE
from ..constants import AGE_MAX_YEARS, HISTOGRAM_BINS
from ..metrics import bootstrap_intervals, fit_temperature, sigmoid, summary, threshold_for_recall

ADULT_AGE = 18.0
POPULATIONS = {
    "pediatric": {"age_band": (0.0, ADULT_AGE), "min_recall": 0.98},
    "adult": {"age_band": (ADULT_AGE, math.inf), "min_recall": 0.95},
}
# Sources whose films carry no per-film age, and what their documentation says of the patients' ages.
DOCUMENTED_AGES = {"kermany": (1.0, 5.0)}
# Other recall floors, reported (not used) so a site can see what more or less sensitivity would cost.
OPERATING_POINTS = (0.95, 0.98, 0.99, 0.995)
# The borderline band: percentile bootstrap of the threshold itself (see the module docstring).
BAND_RESAMPLES = 2000
BAND_LEVEL = 0.95
BAND_SEED = 0
BAND_RULE = (f"{BAND_LEVEL * 100:g} % percentile interval of the threshold re-chosen by the point's own rule on "
             f"{BAND_RESAMPLES} bootstrap resamples of the population's validation films (seed {BAND_SEED}; "
             "temperature fixed), widened to include the threshold")
CALIBRATED_ON = f"validation split per population, weights at {str(SHIPPED_DTYPE).removeprefix('torch.')} as shipped"


def population_of(age, source, documented=None):
    """The population of a film: by its recorded age, else by its source's documented ages; None if unknown."""
    documented = {**DOCUMENTED_AGES, **(documented or {})}
    if age is None:
        if source not in documented:
            return None
        age = documented[source][0]
    for name, spec in POPULATIONS.items():
        low, high = spec["age_band"]
        if low <= age < high:
            return name
    return None


def population_ages(samples, documented=None):
    """{population: (youngest, oldest)} over recorded ages and the sources' documented ranges."""
    documented = {**DOCUMENTED_AGES, **(documented or {})}
    spans = {}
    for s in samples:
        name = population_of(s.age, s.source, documented)
        if name is None:
            continue
        low, high = (s.age, s.age) if s.age is not None else documented[s.source]
        old = spans.get(name, (math.inf, -math.inf))
        spans[name] = (min(old[0], low), max(old[1], high))
    return spans


def operating_point(labels, probabilities, min_recall):
    metrics = summary(labels, probabilities, threshold_for_recall(labels, probabilities, min_recall))
    return {"min_recall": min_recall, **{k: metrics[k] for k in ("threshold", "recall", "specificity", "accuracy")}}


def borderline_band(labels, probabilities, min_recall, threshold=None, *, resamples=BAND_RESAMPLES,
                    level=BAND_LEVEL, seed=BAND_SEED):
    """[low, high] on the calibrated P(pneumonia): where the point's decision is not settled by its validation data.

    ``labels`` and ``probabilities``: one population's validation films (at the point's temperature).
    The films are resampled with replacement ``resamples`` times (fixed ``seed``); on each resample
    the threshold is re-chosen by the point's rule (:func:`ml.metrics.threshold_for_recall`, recall
    at least ``min_recall``); a resample lacking a class has no such threshold and is skipped. The
    band is the central ``level`` percentile interval of those thresholds, widened to include
    ``threshold`` (default: the rule's threshold on all the films), so low <= threshold <= high.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError("a borderline band needs validation films of both classes")
    if threshold is None:
        threshold = threshold_for_recall(labels, probabilities, min_recall)
    rng = np.random.default_rng(seed)
    thresholds = []
    for _ in range(resamples):
        index = rng.integers(0, labels.size, labels.size)
        sample = labels[index]
        if sample.min() != sample.max():
            thresholds.append(threshold_for_recall(sample, probabilities[index], min_recall))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(thresholds, [tail, 100 - tail]) if thresholds else (threshold, threshold)
    return [float(min(low, threshold)), float(max(high, threshold))]


def calibrate_population(logits, labels, min_recall):
    """Temperature, threshold and validation metrics (with bootstrap 95 % intervals) for one population."""
    labels = np.asarray(labels, dtype=int)
    temperature = fit_temperature(logits, labels) if len(set(labels.tolist())) > 1 else 1.0
    probabilities = sigmoid(np.asarray(logits) / temperature)
    threshold = threshold_for_recall(labels, probabilities, min_recall)
    counts = np.histogram(np.clip(probabilities, 0, 1), bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
    return {
        "temperature": temperature,
        "threshold": threshold,
        "min_recall": min_recall,
        # What monitoring compares live P(pneumonia) with (a drift statistic per population).
        "validation_histogram": {"edges": np.linspace(0, 1, HISTOGRAM_BINS + 1).round(2).tolist(),
                                 "counts": counts.tolist()},
        "threshold_rule": f"best specificity with validation recall >= {min_recall}, midway to the next score",
        "validation_metrics": summary(labels, probabilities, threshold),
        "validation_intervals": bootstrap_intervals(labels, probabilities, threshold),
        "other_operating_points": [operating_point(labels, probabilities, floor) for floor in OPERATING_POINTS],
        **band_entry(labels, probabilities, min_recall, threshold),
    }


def band_entry(labels, probabilities, min_recall, threshold):
    """The card's band keys of one population ({} when its validation films lack a class)."""
    if len(set(np.asarray(labels).tolist())) < 2:
        return {}
    return {"borderline_band": borderline_band(labels, probabilities, min_recall, threshold),
            "borderline_band_rule": BAND_RULE}


def members_of(val_samples, documented=None):
    """{population: [index of its validation films]}."""
    members = {name: [] for name in POPULATIONS}
    for index, s in enumerate(val_samples):
        name = population_of(s.age, s.source, documented)
        if name is not None:
            members[name].append(index)
    return members


def add_bands(populations, val_samples, logits, documented=None):
    """A copy of a card's ``populations`` with each one's band added, from its validation films' raw logits.

    Everything else is kept as it is: the band is computed at each population's recorded temperature,
    floor and threshold.
    """
    logits = np.asarray(logits, dtype=np.float64)
    members = members_of(val_samples, documented)
    out = {}
    for name, entry in populations.items():
        index = members.get(name) or []
        entry = dict(entry)
        if index:
            labels = np.array([val_samples[i].label for i in index], dtype=int)
            probabilities = sigmoid(logits[index] / float(entry["temperature"]))
            entry.update(band_entry(labels, probabilities, float(entry["min_recall"]), float(entry["threshold"])))
        out[name] = entry
    return out


def calibrate(val_samples, logits, documented=None, train_samples=()):
    """The card's ``populations`` entry from validation films and their raw logits (fp16 weights)."""
    logits = np.asarray(logits, dtype=np.float64)
    members = members_of(val_samples, documented)
    ages = population_ages([*train_samples, *val_samples], documented)
    out = {}
    for name, index in members.items():
        if not index:
            continue
        labels = [val_samples[i].label for i in index]
        entry = calibrate_population(logits[index], labels, POPULATIONS[name]["min_recall"])
        low, high = POPULATIONS[name]["age_band"]
        entry.update(
            age_band=[low, high if math.isfinite(high) else AGE_MAX_YEARS + 1],
            validated_ages=list(ages[name]) if name in ages else None,
            sources={src: sum(val_samples[i].source == src for i in index)
                     for src in sorted({val_samples[i].source for i in index})},
        )
        out[name] = entry
    return out
