"""One operating point per validated population, fitted on that population's validation films.

A population is an age band (``pediatric`` below 18 years, ``adult`` from 18). A validation
film belongs to the band of its recorded age; a film without one, to the population its
source documents (Kermany: children of 1–5 years — documented for the set as a whole, never
fed to the model as an age). Per population: a temperature (Guo et al. 2017) on the raw
logits, then the threshold with the best specificity whose recall is at least the
population's floor (children 0.98, adults 0.95), midway to the next score. All on the
weights rounded to the precision they are saved at.
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
    }


def calibrate(val_samples, logits, documented=None, train_samples=()):
    """The card's ``populations`` entry from validation films and their raw logits (fp16 weights)."""
    logits = np.asarray(logits, dtype=np.float64)
    members = {name: [] for name in POPULATIONS}
    for index, s in enumerate(val_samples):
        name = population_of(s.age, s.source, documented)
        if name is not None:
            members[name].append(index)
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
