"""Inference: the one interface the worker, ``python -m ml.cli.predict`` and ``python -m ml.cli.evaluate`` use.

Load a :class:`Predictor` once per process, then ``predictor.assess(image, info, age=…)`` for
one study's full answer, or ``predictor.screen([...])`` for a batch. The checkpoint's card is
parsed once, on loading (``ml.card.ModelCard``). The operating point (threshold and
temperature) is the one of the study's population, picked by age (``ml.populations``); the
age the model itself sees follows the same module's rule. Device and precision: ``ml.device``.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .card import ModelCard
from .checkpoint import load_checkpoint, state_dict_sha256
from .config import DEFAULT_PRESET, get_preset
from .device import autocast, for_inference, pick_device, resolve_precision
from .explain import Heatmaps, explain_image, traced_forward
from .intended_use import intended_use_warnings
from .model import HybridNet
from .ood import OodGate, image_check
from .populations import model_age, point_for_age
from .preprocessing import age_to_tensor, image_to_tensor
from .subtype import Subtype, SubtypeHead

log = logging.getLogger(__name__)

PNEUMONIA = "PNEUMONIA"
NORMAL = "NORMAL"


@dataclass
class Assessment:
    """One study's answer. ``ood`` means no label: the input is not what the model was validated on."""

    probability: float = None
    label: str = ""
    ood: bool = False
    ood_reason: str = ""
    warnings: list = field(default_factory=list)
    heatmaps: Heatmaps = None  # with assess(explain=True), for an accepted image
    population: str = ""  # the operating point used (pediatric, adult, ...)
    threshold: float = None
    # Bacterial or viral (ml.subtype), secondary: only for a PNEUMONIA label, not refused, when the checkpoint
    # carries the head and the age is given and within the head's validated ages; never changes the answer above.
    subtype: Subtype = None
    # Whether the probability lies inside the point's borderline band (ml.populations.OperatingPoint.is_borderline):
    # only for an accepted, not refused study; False when the card has no band. Never changes the answer above.
    borderline: bool = False


@dataclass
class Screened:
    """One film of :meth:`Predictor.screen`: the raw logit, the probability at its population's point, the gate's reason."""

    logit: float
    probability: float
    threshold: float
    population: str
    reason: str = ""  # why the gate would refuse it, "" when accepted
    borderline: bool = False  # inside its point's borderline band (also for a film the gate would refuse)

    @property
    def label(self):
        return PNEUMONIA if self.probability >= self.threshold else NORMAL


@dataclass
class Forward:
    """One forward pass over a batch (:meth:`Predictor._forward`), film by film."""

    logits: list  # the model's raw logits, as floats
    refusals: list  # the learned gate's reason to refuse each film, "" when accepted (or when there is no gate)
    features: torch.Tensor = None  # (n, d) the image branches' pooled features, concatenated, float32 on the CPU
    heatmaps_for: object = None  # with explain: labels (True = PNEUMONIA) → Heatmaps per film, one partial backward


@dataclass
class Predictor:
    model: HybridNet
    name: str
    weights_sha256: str
    trained: bool = True
    card: ModelCard = None  # parsed once per checkpoint; None: a card that records nothing (one point at 0.5)
    layout: torch.memory_format = torch.channels_last
    # Autocast dtype for the forward passes: "bf16" by default on CUDA (tensor cores), "fp32" on a CPU.
    precision: str = "auto"
    gate: OodGate = None  # the learned out-of-distribution check, when the checkpoint carries one
    subtype: SubtypeHead = None  # bacterial or viral for young children's PNEUMONIA results, when the checkpoint carries it

    def __post_init__(self):
        self.card = self.card or ModelCard.from_dict({})
        self.precision = resolve_precision(self.precision, self.device)

    @property
    def points(self):
        """{population: ml.populations.OperatingPoint}, from the card."""
        return self.card.points

    def autocast(self):
        """The forward passes' autocast context: bf16/fp16 where asked, a no-op for fp32."""
        return autocast(self.device, self.precision)

    @classmethod
    def from_checkpoint(cls, path, device="auto", precision="auto"):
        device = pick_device(device)
        model, card, extra = load_checkpoint(path, device=device, with_extra=True)
        return cls(
            model=for_inference(model, device),
            name=card.name or Path(path).stem,
            weights_sha256=card.weights_sha256,
            card=card,
            gate=OodGate.from_checkpoint(extra, card.raw.get("ood")),
            subtype=SubtypeHead.from_checkpoint(extra, card.raw.get("subtype")),
            precision=precision,
        )

    @classmethod
    def untrained(cls, preset=DEFAULT_PRESET, device="auto", seed=0):
        """The real architecture with seeded random weights; labelled untrained everywhere."""
        torch.manual_seed(seed)
        model = for_inference(HybridNet(get_preset(preset)), pick_device(device))
        return cls(
            model=model,
            name=f"{preset}-untrained-seed{seed}",
            weights_sha256=state_dict_sha256(model.state_dict()),
            trained=False,
            card=ModelCard.from_dict({"preset": preset, "trained": False}),
        )

    @classmethod
    def load(cls, path, *, fallback_preset=DEFAULT_PRESET, device="auto", precision="auto"):
        if path and Path(path).exists():
            return cls.from_checkpoint(path, device=device, precision=precision)
        log.warning("No checkpoint at %s: serving the untrained %s architecture", path, fallback_preset)
        return cls.untrained(fallback_preset, device=device)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def point(self, age):
        """The operating point for a study of this age (years or None)."""
        return point_for_age(self.points, age)

    def model_ages(self, ages):
        """What the age branch is given for each age (ml.populations.model_age)."""
        return age_to_tensor([model_age(self.card, age) for age in ages])

    def predict(self, items):
        """items: iterable of (decoded PIL image, age in years or None) → list of P(pneumonia)."""
        return [s.probability for s in self.screen([(image, None, age) for image, age in items], gate=False)]

    def _forward(self, images, ages, *, explain=False):
        """The one forward pass of evaluation and serving: a :class:`Forward` for these images and ages (years)."""
        tensors = torch.stack([image_to_tensor(image, self.model.config) for image in images])
        tensors = tensors.to(self.device, memory_format=self.layout)
        age_inputs = self.model_ages(ages).to(self.device)
        heatmaps_for = None
        if explain:  # the traced pass keeps what the heatmaps' partial backward needs
            with self.autocast():
                features, logits, heatmaps_for = traced_forward(self.model, tensors, age_inputs)
        else:
            with torch.inference_mode(), self.autocast():
                features = self.model.image_features(tensors)
                logits = self.model.fuse(features, age_inputs)
        joined = (torch.cat(features, 1).detach().float().cpu() if len(features)
                  else torch.zeros(len(images), 0))  # an age-only model has no image features
        refusals = ([reason if rejected else "" for rejected, reason, _, _ in self.gate.decide(joined)]
                    if self.gate is not None else [""] * len(images))
        return Forward(logits.float().cpu().tolist(), refusals, joined, heatmaps_for)

    def _calibrated(self, logit, age, points=None):
        """(P(pneumonia) at the operating point of this age, that point); ``points`` as in :meth:`assess_batch`."""
        point = point_for_age({**self.points, **points}, age) if points else self.point(age)
        return torch.sigmoid(torch.tensor(logit / point.temperature)).item(), point

    @torch.inference_mode()
    def screen(self, items, *, gate=True):
        """The batch form of :meth:`assess`, for evaluation: items are (image, SourceInfo or None, age).

        Returns a :class:`Screened` per film: one forward pass gives the probability (at the film's
        population's temperature, also for a film the gate would refuse) and the gate's reason.
        """
        items = list(items)
        if not items:
            return []
        forward = self._forward([image for image, _, _ in items], [age for _, _, age in items])
        out = []
        for (image, info, age), logit, refusal in zip(items, forward.logits, forward.refusals, strict=True):
            probability, point = self._calibrated(logit, age)
            reason = (image_check(image, info) or refusal) if gate else ""
            out.append(Screened(logit, probability, point.threshold, point.population, reason,
                                point.is_borderline(probability)))
        return out

    def assess(self, image, info=None, *, age=None, view=None, explain=False):
        """The full answer for one study: image checks, OOD gate, probability, label, intended-use warnings.

        With ``explain``, an accepted image also gets its heatmaps, from the same forward pass.
        """
        return self.assess_batch([(image, info, age, view)], explain=explain)[0]

    def assess_batch(self, items, *, explain=False, points=None):
        """:meth:`assess` for several studies at once: items are (image, SourceInfo or None, age, view).

        ``points``: {population: ``ml.populations.OperatingPoint``} that replace the card's points of
        those populations (a site's own refit thresholds and bands, ``diagnosis/site_points.py``); the
        population is still picked by age from the card's bands.

        One forward pass (and, with ``explain``, one partial backward pass) serves every study that
        passes the image checks; each study still gets its own checks, gate decision, operating point,
        warnings and heatmaps, exactly as :meth:`assess` alone would give them.
        """
        answers = [None] * len(items)
        accepted = []
        for index, (image, info, age, view) in enumerate(items):
            warnings = intended_use_warnings(self.card, age_years=age, view=view)
            reason = image_check(image, info)
            answers[index] = Assessment(ood=bool(reason), ood_reason=reason or "", warnings=warnings)
            if not reason:
                accepted.append(index)
        if not accepted:
            return answers
        forward = self._forward([items[i][0] for i in accepted], [items[i][2] for i in accepted], explain=explain)
        labels, subtyped = [], []
        for row, (index, logit, refusal) in enumerate(zip(accepted, forward.logits, forward.refusals, strict=True)):
            answer = answers[index]
            if refusal:
                answer.ood, answer.ood_reason = True, refusal
                labels.append(False)
                continue
            if self.gate is None and self.trained:
                answer.warnings.append("This model has no learned out-of-distribution check: only the image checks ran.")
            answer.probability, point = self._calibrated(logit, items[index][2], points)
            answer.label = PNEUMONIA if answer.probability >= point.threshold else NORMAL
            answer.population, answer.threshold = point.population, point.threshold
            answer.borderline = point.is_borderline(answer.probability)
            labels.append(answer.label == PNEUMONIA)
            # Validated on frontal films of children 1–5 only: a lateral view gets none.
            if (answer.label == PNEUMONIA and self.subtype is not None and self.subtype.applies(items[index][2])
                    and items[index][3] != "LAT"):
                subtyped.append((index, row))
        if subtyped:  # read from the same forward pass's features, after the answer above is fixed
            rows = forward.features[[row for _, row in subtyped]]
            for (index, _), subtype in zip(subtyped, self.subtype.predict(rows), strict=True):
                answers[index].subtype = subtype
        if explain and any(not answers[i].ood for i in accepted):
            for index, heatmaps in zip(accepted, forward.heatmaps_for(labels), strict=True):
                if not answers[index].ood:
                    answers[index].heatmaps = heatmaps
        return answers

    def explain(self, image, *, age=None, label=PNEUMONIA):
        """Heatmaps (combined = the CNN map; the legacy ViT map where the config shows it, v3: ``ml.explain``) for the label given."""
        return explain_image(self.model, image, age=model_age(self.card, age), toward_pneumonia=label == PNEUMONIA)
