"""Inference: the one interface the worker and ``python -m ml.predict`` use.

Load a :class:`Predictor` once per process, then call
``predictor.predict([(image, age), ...])`` for probabilities of pneumonia.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, state_dict_sha256
from .config import get_preset
from .explain import Heatmaps, explain_image, traced_forward
from .intended_use import intended_use_warnings
from .model import HybridNet
from .ood import OodGate, image_check
from .preprocessing import age_to_tensor, image_to_tensor

log = logging.getLogger(__name__)

PNEUMONIA = "PNEUMONIA"
NORMAL = "NORMAL"


def for_inference(model, device):
    """Eval mode on ``device``, channels-last: oneDNN's convolutions run markedly faster in that layout."""
    return model.to(device, memory_format=torch.channels_last).eval()


def pick_device(preference="auto"):
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


@dataclass
class Assessment:
    """One study's answer. ``ood`` means no label: the input is not what the model was validated on."""

    probability: float = None
    label: str = ""
    ood: bool = False
    ood_reason: str = ""
    warnings: list = field(default_factory=list)
    heatmaps: Heatmaps = None  # with assess(explain=True), for an accepted image


@dataclass
class Predictor:
    model: HybridNet
    name: str
    weights_sha256: str
    threshold: float = 0.5
    temperature: float = 1.0
    trained: bool = True
    card: dict = None
    # False when training gave the age branch no signal (no ages in the data): the model then
    # always sees "age missing", as in training, so a typed age cannot move its output.
    uses_age: bool = True
    layout: torch.memory_format = torch.channels_last
    gate: OodGate = None  # the learned out-of-distribution check, when the checkpoint carries one

    @classmethod
    def from_checkpoint(cls, path, device="auto"):
        device = pick_device(device)
        model, card, extra = load_checkpoint(path, device=device, with_extra=True)
        return cls(
            model=for_inference(model, device),
            name=card.get("name", Path(path).stem),
            weights_sha256=card["weights_sha256"],
            threshold=float(card.get("threshold", 0.5)),
            temperature=float(card.get("temperature", 1.0)),
            card=card,
            uses_age=bool(card.get("uses_age", True)),
            gate=OodGate.from_checkpoint(extra, card.get("ood")),
        )

    @classmethod
    def untrained(cls, preset="compact", device="auto", seed=0):
        """The real architecture with seeded random weights; labelled untrained everywhere."""
        torch.manual_seed(seed)
        model = for_inference(HybridNet(get_preset(preset)), pick_device(device))
        return cls(
            model=model,
            name=f"{preset}-untrained-seed{seed}",
            weights_sha256=state_dict_sha256(model.state_dict()),
            trained=False,
            card={"preset": preset, "trained": False},
        )

    @classmethod
    def load(cls, path, *, fallback_preset="compact", device="auto"):
        if path and Path(path).exists():
            return cls.from_checkpoint(path, device=device)
        log.warning("No checkpoint at %s: serving the untrained %s architecture", path, fallback_preset)
        return cls.untrained(fallback_preset, device=device)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def predict(self, items):
        """items: iterable of (decoded PIL image, age in years or None) → list of P(pneumonia)."""
        return self.screen([(image, None, age) for image, age in items], gate=False)[0]

    @torch.inference_mode()
    def screen(self, items, *, gate=True):
        """The batch form of :meth:`assess`, for evaluation: items are (image, ImageInfo or None, age).

        Returns (P(pneumonia) for every image, the reason each would be refused or ""): one forward
        pass serves both, and the probability is given even for a refused image.
        """
        items = list(items)
        if not items:
            return [], []
        images = torch.stack([image_to_tensor(image, self.model.config) for image, _, _ in items])
        ages = age_to_tensor([age if self.uses_age else None for _, _, age in items])
        features = self.model.image_features(images.to(self.device, memory_format=self.layout))
        logits = self.model.fuse(features, ages.to(self.device))
        probabilities = torch.sigmoid(logits.float() / self.temperature).cpu().tolist()
        reasons = [""] * len(items)
        if gate:
            learned = (self.gate.decide(torch.cat(features, 1).float().cpu()) if self.gate is not None
                       else [(False, "", None, None)] * len(items))
            reasons = [image_check(image, info) or learned_reason
                       for (image, info, _), (_, learned_reason, _, _) in zip(items, learned)]
        return probabilities, reasons

    def assess(self, image, info=None, *, age=None, view=None, explain=False):
        """The full answer for one study: image checks, OOD gate, probability, label, intended-use warnings.

        With ``explain``, an accepted image also gets its heatmaps, from the same forward pass.
        """
        warnings = intended_use_warnings(self.card, age_years=age, view=view)
        reason = image_check(image, info)
        if reason:
            return Assessment(ood=True, ood_reason=reason, warnings=warnings)
        images = image_to_tensor(image, self.model.config)[None].to(self.device, memory_format=self.layout)
        ages = age_to_tensor([age if self.uses_age else None]).to(self.device)
        if explain:
            features, logit, heatmaps_for = traced_forward(self.model, images, ages)
        else:
            with torch.inference_mode():
                features = self.model.image_features(images)
                logit = self.model.fuse(features, ages)[0]
        if self.gate is not None:
            [(rejected, reason, _, _)] = self.gate.decide(torch.cat(features, 1).float().cpu())
            if rejected:
                return Assessment(ood=True, ood_reason=reason, warnings=warnings)
        elif self.trained:
            warnings.append("This model has no learned out-of-distribution check: only the image checks ran.")
        probability = torch.sigmoid(logit.float() / self.temperature).item()
        label = self.label(probability)
        heatmaps = heatmaps_for(toward_pneumonia=label == PNEUMONIA) if explain else None
        return Assessment(probability=probability, label=label, ood=False, warnings=warnings, heatmaps=heatmaps)

    def explain(self, image, *, age=None, label=PNEUMONIA):
        """Heatmaps (combined, CNN Grad-CAM, ViT attention rollout) for the label given to this image."""
        return explain_image(self.model, image, age=age if self.uses_age else None, toward_pneumonia=label == PNEUMONIA)

    def label(self, probability):
        return PNEUMONIA if probability >= self.threshold else NORMAL
