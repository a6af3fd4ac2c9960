"""The model card: the JSON beside a checkpoint's weights, read once and parsed. No torch.

A checkpoint ``NAME.safetensors`` has its card at ``NAME.json`` (:func:`card_path`). The card
records what the model was trained and validated on; :class:`ModelCard` holds what serving,
the CLIs and monitoring read from it, parsed once per checkpoint: the name and weights
digest, one operating point per validated population (``ml.populations.OperatingPoint``, with its
borderline band when the card records one: ``points[name].band``, ``points[name].is_borderline(p)``), the
ages they were validated on, the ages the age branch learnt from, and each population's
validation histogram of P(pneumonia). ``raw`` is the card's dict as read, for everything else
(training records, the OOD gate's entry); it is not to be modified.

Imports only the standard library and the torch-free ``ml.populations``: the web tier reads
cards too.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .populations import operating_points, validated_age_range


def card_path(weights_path):
    """The card beside a weights file (``.safetensors`` → ``.json``); a card's own path is returned unchanged."""
    return Path(weights_path).with_suffix(".json")


def _range(values):
    return (float(values[0]), float(values[1])) if values else None


@dataclass(frozen=True)
class ModelCard:
    raw: dict
    name: str  # None when the card has none (an untrained architecture)
    weights_sha256: str
    points: dict  # {population: ml.populations.OperatingPoint}, ordered by age band
    validated_age_range: tuple  # (youngest, oldest) any population was validated on; None when unrecorded
    uses_age: bool  # whether the model was given ages in training
    age_input_range: tuple  # (youngest, oldest) age the age branch learnt from; None when unrecorded

    @classmethod
    def from_dict(cls, data):
        """Parse a card's dict (``{}`` or None: a card that records nothing, with one point at 0.5 for every age).

        Raises ``ValueError`` for a card that is not a JSON object or whose populations or age ranges
        are malformed.
        """
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ValueError(f"a model card is a JSON object, not {type(data).__name__}")
        try:
            points = operating_points(data)
            return cls(
                raw=data,
                name=data.get("name"),
                weights_sha256=data.get("weights_sha256"),
                points=points,
                validated_age_range=validated_age_range(points),
                uses_age=bool(data.get("uses_age", False)),
                age_input_range=_range(data.get("age_input_range_years")),
            )
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed model card: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def read(cls, path):
        """The card at ``path``: the card's ``.json`` or its weights file (the card beside it is read).

        Never returns None: raises ``FileNotFoundError`` when there is no card there, and ``ValueError``
        when it is not JSON (``json.JSONDecodeError`` is one) or not a well-formed card (:meth:`from_dict`).
        """
        return cls.from_dict(json.loads(card_path(path).read_text()))

    def reference_histogram(self, population):
        """The counts of the population's validation histogram of P(pneumonia), or None when the card has none.

        The bins are ``ml.constants.HISTOGRAM_BINS`` equal bins over [0, 1] (``ml.training.calibration``).
        """
        entry = (self.raw.get("populations") or {}).get(population) or {}
        counts = (entry.get("validation_histogram") or {}).get("counts")
        return list(counts) if counts else None
