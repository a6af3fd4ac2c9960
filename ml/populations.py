"""One operating point per validated population, picked by the study's age. No torch.

A model card's ``populations`` entry holds, for each population (``pediatric``, ``adult``), its
age band, the ages it was validated on, and the threshold and temperature fitted on that
population's own validation films; :func:`operating_points` parses it once per checkpoint
(into ``ml.card.ModelCard.points``). A study takes the point of the band its age falls in;
a study without an age takes the more sensitive point (the lower threshold on the raw
logit) and a warning. Cards from before populations (one threshold) still work: they get a
single point for every age.

A population's entry may also carry a ``borderline_band: [low, high]`` on the calibrated
P(pneumonia) (``ml.training.calibration.borderline_band``: the 95 % bootstrap interval of the
threshold re-chosen by the point's own rule on resampled validation films). A probability inside it
(inclusive) is borderline: :meth:`OperatingPoint.is_borderline`. A card without bands gives
``band=None`` and nothing is borderline.

The age the model itself sees is decided here too (:func:`model_age`, from a
``ml.card.ModelCard``): the age branch only learnt from the ages its training data recorded,
so an age outside that range is fed as missing — the way the films of that age were trained.
"""

import math
from dataclasses import dataclass

ALL_AGES = "all ages"


@dataclass(frozen=True)
class OperatingPoint:
    population: str
    threshold: float  # on the calibrated probability
    temperature: float
    age_band: tuple  # [low, high) in years; the band that selects this point
    validated_ages: tuple = None  # (low, high) the population's validation data covers
    min_recall: float = None
    band: tuple = None  # (low, high) on the calibrated probability around the threshold; None when the card has none

    def is_borderline(self, probability):
        """Whether a calibrated P(pneumonia) lies inside the borderline band (inclusive); False without a band."""
        if self.band is None or probability is None:
            return False
        return self.band[0] <= float(probability) <= self.band[1]

    @property
    def logit_threshold(self):
        """The threshold on the raw logit: comparable across points with different temperatures."""
        p = min(max(self.threshold, 1e-12), 1 - 1e-12)
        return self.temperature * math.log(p / (1 - p))

    def to_dict(self):
        return {"population": self.population, "threshold": self.threshold, "temperature": self.temperature,
                "age_band": list(self.age_band), "min_recall": self.min_recall,
                "validated_ages": list(self.validated_ages) if self.validated_ages else None,
                "borderline_band": list(self.band) if self.band else None}


def _band(values):
    """(low, high) from a card's ``borderline_band``, or None; a malformed one is a ValueError."""
    if values is None:
        return None
    low, high = (float(v) for v in values)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"borderline_band {list(values)} is not [low, high] within [0, 1]")
    return low, high


def operating_points(card):
    """{population: OperatingPoint} from a model card's dict, ordered by age band."""
    card = card or {}
    entries = card.get("populations")
    if not entries:  # a single-threshold card
        low_high = card.get("validated_age_range_years")
        return {ALL_AGES: OperatingPoint(ALL_AGES, float(card.get("threshold", 0.5)),
                                         float(card.get("temperature", 1.0)), (0.0, math.inf),
                                         tuple(low_high) if low_high else None)}
    points = {
        name: OperatingPoint(name, float(e["threshold"]), float(e["temperature"]), tuple(e["age_band"]),
                             tuple(e["validated_ages"]) if e.get("validated_ages") else None, e.get("min_recall"),
                             _band(e.get("borderline_band")))
        for name, e in entries.items()
    }
    return dict(sorted(points.items(), key=lambda item: item[1].age_band[0]))


def most_sensitive(points):
    return min(points.values(), key=lambda point: point.logit_threshold)


def point_for_age(points, age_years):
    """The OperatingPoint for a study of this age (years); the most sensitive one when the age is unknown."""
    if age_years is None:
        return most_sensitive(points)
    age = float(age_years)
    for point in points.values():
        low, high = point.age_band
        if low <= age < high:
            return point
    # Past every band: the nearest one (the intended-use warning says the age is outside the validated ages).
    return min(points.values(), key=lambda p: min(abs(age - p.age_band[0]), abs(age - p.age_band[1])))


def validated_age_range(points):
    """(youngest, oldest) age any population was validated on, or None."""
    ranges = [p.validated_ages for p in points.values() if p.validated_ages]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def model_age(card, age_years):
    """The age the model is given (``card``: a ``ml.card.ModelCard``): None (missing) when unknown or
    outside the ages the age branch learnt from."""
    if age_years is None or not card.uses_age:
        return None
    support = card.age_input_range
    if support and not support[0] <= float(age_years) <= support[1]:
        return None
    return float(age_years)
