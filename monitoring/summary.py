"""How the model performs in use, read back from the reviewers' verdicts. No torch.

For each model version and population over a period: predictions, refusals (out of
distribution), the reviewed fraction, agreement with the reviewers, and sensitivity, specificity,
PPV and NPV against the reviewers' labels (a reviewer who agrees confirms the label; one who
disagrees gives the corrected label), each with a Wilson 95 % interval; and the distribution of
P(pneumonia) against the validation distribution in the model card, with the population
stability index (PSI) as the drift statistic and an alert past ``PNEUMOWEB_DRIFT_PSI_ALERT``.
"""

import logging
import math
from dataclasses import dataclass, field

from django.conf import settings

from diagnosis.models import Prediction, confirmed_label
from diagnosis.site_points import read_served_card
from ml.card import card_path
from ml.constants import HISTOGRAM_BINS as BINS  # the bins the model card records its histograms in
from ml.populations import point_for_age

log = logging.getLogger(__name__)

Z95 = 1.959963984540054
MIN_FOR_DRIFT = 30  # fewer scored predictions than this: no drift statistic


def wilson(successes, total):
    """Wilson score interval (95 %) of a proportion; None for an empty denominator."""
    if not total:
        return None
    p = successes / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def rate(successes, total):
    return {"value": successes / total if total else None, "n": total, "ci95": wilson(successes, total)}


def histogram(probabilities):
    counts = [0] * BINS
    for p in probabilities:
        counts[min(int(p * BINS), BINS - 1)] += 1
    return counts


def psi(observed, expected, floor=1e-4):
    """Population stability index of two histograms (counts): Σ (o − e) · ln(o / e) over bin shares."""
    total_o, total_e = sum(observed), sum(expected)
    if not total_o or not total_e:
        return None
    value = 0.0
    for o, e in zip(observed, expected):
        share_o, share_e = max(o / total_o, floor), max(e / total_e, floor)
        value += (share_o - share_e) * math.log(share_o / share_e)
    return value


def card_for(name, sha256):
    """The model card of the deployed checkpoint when it is this version, else None."""
    path = card_path(settings.PNEUMOWEB_MODEL_PATH)
    if not path.exists():
        return None
    try:
        card = read_served_card()
    except (OSError, ValueError):  # a card we cannot read gives no reference, not a failed page
        log.warning("The model card %s could not be read; monitoring shows no drift statistic", path, exc_info=True)
        return None
    return card if card.name == name and card.weights_sha256 == sha256 else None


def confusion_key(label, truth):
    """"tp", "fp", "tn" or "fn": the model's label against the confirmed one."""
    predicted_positive = label == Prediction.Label.PNEUMONIA
    truly_positive = truth == Prediction.Label.PNEUMONIA
    return ("t" if predicted_positive == truly_positive else "f") + ("p" if predicted_positive else "n")


@dataclass
class Group:
    model_name: str
    model_sha256: str
    population: str
    total: int = 0
    refused: int = 0
    failed: int = 0
    scored: list = field(default_factory=list)
    reviewed: int = 0
    agreed: int = 0
    confusion: dict = field(default_factory=lambda: {"tp": 0, "fp": 0, "tn": 0, "fn": 0})

    def add(self, row):
        self.total += 1
        status = row["status"]
        if status == Prediction.Status.REJECTED:
            self.refused += 1
        elif status == Prediction.Status.FAILED:
            self.failed += 1
        if status == Prediction.Status.SUCCEEDED and row["probability"] is not None:
            self.scored.append(row["probability"])
        if row["review_verdict"] and status == Prediction.Status.SUCCEEDED:
            self.reviewed += 1
            self.agreed += row["review_verdict"] == Prediction.Verdict.AGREE
            truth = confirmed_label(row["label"], row["review_verdict"], row["review_label"])
            self.confusion[confusion_key(row["label"], truth)] += 1

    def summary(self, alert_at):
        c = self.confusion
        outcomes = self.total - self.failed
        succeeded = len(self.scored)
        current = histogram(self.scored)
        card = card_for(self.model_name, self.model_sha256)
        reference = card.reference_histogram(self.population) if card else None
        drift = psi(current, reference) if reference and succeeded >= MIN_FOR_DRIFT else None
        return {
            "model": {"name": self.model_name, "weights_sha256": self.model_sha256},
            "refused_only": self.population == REFUSED_BEFORE_A_POPULATION,
            "population": self.population or None,
            "predictions": self.total,
            "refusal_rate": rate(self.refused, outcomes),
            "failed": self.failed,
            "reviewed_fraction": rate(self.reviewed, succeeded),
            "agreement": rate(self.agreed, self.reviewed),
            "sensitivity": rate(c["tp"], c["tp"] + c["fn"]),
            "specificity": rate(c["tn"], c["tn"] + c["fp"]),
            "ppv": rate(c["tp"], c["tp"] + c["fp"]),
            "npv": rate(c["tn"], c["tn"] + c["fn"]),
            "confusion_vs_reviewers": dict(c),
            "probability_histogram": {"edges": [i / BINS for i in range(BINS + 1)], "counts": current,
                                      "validation_counts": reference},
            "drift": {"psi": drift, "alert": drift is not None and drift > alert_at, "limit": alert_at,
                      "reason": None if drift is not None else (
                          "no validation distribution in the deployed model card for this version"
                          if not reference else f"fewer than {MIN_FOR_DRIFT} scored predictions")},
        }


REFUSED_BEFORE_A_POPULATION = "refused before a population"


def population_of(row, cards):
    """The row's population; for a refusal (or failure) that got none, the one its age gives under the card
    of its model version, when that card is deployed here, else REFUSED_BEFORE_A_POPULATION."""
    if row["population"] or row["status"] == Prediction.Status.SUCCEEDED:
        return row["population"]
    version = (row["model_name"], row["model_sha256"])
    if version not in cards:
        cards[version] = card_for(*version)
    card = cards[version]
    if card is None or row["study__age_years"] is None:
        return REFUSED_BEFORE_A_POPULATION
    return point_for_age(card.points, row["study__age_years"]).population


def monitor(predictions, *, alert_at=None):
    """One summary per (model version, population) of a queryset of predictions, most used first.

    Refused inputs have no operating point; they are counted in the population their age gives
    (or, without the model's card, in one "refused before a population" row with no chart).
    """
    alert_at = settings.PNEUMOWEB_DRIFT_PSI_ALERT if alert_at is None else alert_at
    groups, cards = {}, {}
    fields = ["status", "probability", "label", "review_verdict", "review_label", "model_name", "model_sha256",
              "population", "study__age_years"]
    for row in predictions.exclude(model_name="").values(*fields).iterator(chunk_size=2000):
        key = (row["model_name"], row["model_sha256"], population_of(row, cards))
        groups.setdefault(key, Group(*key)).add(row)
    return [group.summary(alert_at) for group in sorted(groups.values(), key=lambda g: -g.total)]


CSV_COLUMNS = ["model", "weights_sha256", "population", "predictions", "refusal_rate", "reviewed_fraction",
               "agreement", "sensitivity", "sensitivity_low", "sensitivity_high", "specificity", "specificity_low",
               "specificity_high", "ppv", "ppv_low", "ppv_high", "npv", "npv_low", "npv_high", "psi", "drift_alert"]


def csv_rows(summaries):
    def value(entry):
        return "" if entry["value"] is None else f"{entry['value']:.4f}"

    def bounds(entry):
        return ["", ""] if entry["ci95"] is None else [f"{entry['ci95'][0]:.4f}", f"{entry['ci95'][1]:.4f}"]

    yield CSV_COLUMNS
    for s in summaries:
        row = [s["model"]["name"], s["model"]["weights_sha256"], s["population"], s["predictions"],
               value(s["refusal_rate"]), value(s["reviewed_fraction"]), value(s["agreement"])]
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            row += [value(s[key]), *bounds(s[key])]
        row += ["" if s["drift"]["psi"] is None else f"{s['drift']['psi']:.4f}", str(s["drift"]["alert"]).lower()]
        yield row
