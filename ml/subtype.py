"""Bacterial or viral: a second, secondary output for PNEUMONIA results of young children.

A logistic regression on the model's own image features (the CNN's and the ViT's pooled
features, concatenated, exactly as the OOD gate sees them), standardised: P(bacterial) =
sigmoid(((features - mean) / scale) · weight + bias). It was fitted and validated on Kermany's
pneumonia films (children aged 1–5; the file names carry bacteria / virus), so serving shows it
only for a study labelled PNEUMONIA, not refused, whose typed age lies in the head's validated
ages (``ml.inference.Predictor.assess_batch``); it reads the features of the same forward pass
and never touches the probability, label or population of the PNEUMONIA/NORMAL answer.

The head travels inside the checkpoint (tensors ``subtype.mean``, ``subtype.scale``,
``subtype.weight``, ``subtype.bias``, fp32) and its description (classes, threshold, validated
ages, validation AUC with its interval) in the card under ``"subtype"``. Fitted by
``python -m ml.cli.fit_subtype`` (``ml/training/subtype.py``).
"""

from dataclasses import dataclass

import torch

PREFIX = "subtype."
BACTERIAL = "bacterial"
VIRAL = "viral"
CLASSES = (BACTERIAL, VIRAL)
TENSORS = ("mean", "scale", "weight", "bias")


@dataclass(frozen=True)
class Subtype:
    """The secondary answer for one PNEUMONIA study."""

    label: str  # "bacterial" | "viral"
    probability: float  # P(label), 0.5–1 at the default threshold
    auc: float  # the head's validation AUC (bacterial vs viral, person-grouped split)
    auc_ci95: tuple  # (low, high) bootstrap 95 % interval of that AUC
    validated_ages: tuple = (1.0, 5.0)  # years, inclusive: the only ages it is given for

    def validation(self):
        """What a record keeps beside the answer: the output's own validation figure."""
        return {"auc": self.auc, "ci95": list(self.auc_ci95), "validated_ages": list(self.validated_ages)}


@dataclass
class SubtypeHead:
    mean: torch.Tensor  # (d,)
    scale: torch.Tensor  # (d,)
    weight: torch.Tensor  # (d,)
    bias: torch.Tensor  # (1,)
    threshold: float = 0.5  # on P(bacterial)
    validated_ages: tuple = (1.0, 5.0)  # years, inclusive
    auc: float = float("nan")
    auc_ci95: tuple = (float("nan"), float("nan"))

    def __post_init__(self):
        for name in TENSORS:
            setattr(self, name, torch.as_tensor(getattr(self, name), dtype=torch.float64).reshape(-1))
        self.validated_ages = (float(self.validated_ages[0]), float(self.validated_ages[1]))
        self.auc_ci95 = (float(self.auc_ci95[0]), float(self.auc_ci95[1]))

    def probabilities(self, features):
        """P(bacterial) per row of features (n, d), as float64."""
        x = torch.as_tensor(features).detach().to("cpu", torch.float64).reshape(-1, self.mean.numel())
        return torch.sigmoid(((x - self.mean) / self.scale) @ self.weight + self.bias)

    def predict(self, features):
        """One :class:`Subtype` per row of features."""
        out = []
        for p in self.probabilities(features).tolist():
            bacterial = p >= self.threshold
            out.append(Subtype(BACTERIAL if bacterial else VIRAL, p if bacterial else 1.0 - p,
                               self.auc, self.auc_ci95, self.validated_ages))
        return out

    def applies(self, age):
        """Whether a study of this age (years or None) is within the ages the head was validated on."""
        low, high = self.validated_ages
        return age is not None and low <= float(age) <= high

    def tensors(self):
        return {f"{PREFIX}{name}": getattr(self, name).float().reshape(-1) for name in TENSORS}

    @classmethod
    def from_checkpoint(cls, tensors, entry):
        """The head stored in a checkpoint (its ``subtype.*`` tensors and the card's entry), or None when absent."""
        if not entry or any(f"{PREFIX}{name}" not in tensors for name in TENSORS):
            return None
        validation = entry.get("validation") or {}
        return cls(*(tensors[f"{PREFIX}{name}"] for name in TENSORS), threshold=float(entry.get("threshold", 0.5)),
                   validated_ages=tuple(entry["validated_ages"]), auc=float(validation["auc"]),
                   auc_ci95=tuple(validation["auc_ci95"]))
