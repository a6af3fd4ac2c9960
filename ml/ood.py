"""Is this a chest X-ray of the kind the model was trained on? Two kinds of evidence.

1. Cheap image checks on the decoded file: colour, shape, blank or saturated pixels.
2. A learned check on the model's own image features (CNN + ViT, concatenated): a
   Gaussian fitted to the training split's features, as probabilistic PCA (the top ``k``
   principal directions plus an isotropic residual), scores each image by its
   negative log-likelihood up to a constant, i.e. Mahalanobis distance in the top ``k``
   directions plus the scaled residual norm. The threshold is a high quantile of the
   training images' own scores. The statistics travel inside the checkpoint
   (tensors named ``ood.*``) and the threshold in its card.
"""

from dataclasses import dataclass

import numpy as np
import torch

PREFIX = "ood."
MAX_COLOURFULNESS = 12.0  # a gray film photographed under warm light stays below this
MAX_ASPECT = 2.0
MIN_CONTRAST = 10.0  # standard deviation of 0–255 gray levels
MAX_SATURATED = 0.5  # fraction of pixels at pure black or white


def image_check(image, info=None):
    """A reason (for people) why the picture cannot be a chest X-ray, or None."""
    if info is not None and info.colourfulness > MAX_COLOURFULNESS:
        return "The image is in colour; chest X-rays are grayscale."
    width, height = image.size
    if max(width, height) / min(width, height) > MAX_ASPECT:
        return f"The image is {width}×{height} pixels: far from the shape of a chest X-ray."
    small = image.convert("L").copy()
    small.thumbnail((256, 256))
    pixels = np.asarray(small, dtype=np.float64)
    if pixels.std() < MIN_CONTRAST:
        return "The image is blank or almost uniform."
    if np.mean((pixels <= 2) | (pixels >= 253)) > MAX_SATURATED:
        return "Most of the image is pure black or white."
    return None


@dataclass
class FeatureGate:
    mean: torch.Tensor  # (d,)
    components: torch.Tensor  # (k, d), orthonormal rows
    variances: torch.Tensor  # (k,)
    residual_variance: torch.Tensor  # scalar: mean variance per residual dimension
    threshold: float

    @classmethod
    def fit(cls, features, *, components=64, quantile=0.995):
        """Fit on training features (n, d); threshold = ``quantile`` of the training scores."""
        features = torch.as_tensor(features, dtype=torch.float64)
        mean = features.mean(0)
        centred = features - mean
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        k = min(components, vh.shape[0] - 1)
        variances = singular**2 / (len(features) - 1)
        residual = variances[k:].sum() / max(features.shape[1] - k, 1)
        gate = cls(mean, vh[:k], variances[:k], residual, threshold=float("inf"))
        gate.threshold = float(torch.quantile(gate.score(features), quantile))
        return gate

    def score(self, features):
        """Per-image score, higher = further from the training X-rays (a dimension-scaled NLL)."""
        centred = torch.as_tensor(features, dtype=torch.float64) - self.mean
        projected = centred @ self.components.T
        inside = (projected**2 / self.variances).sum(1)
        outside = ((centred**2).sum(1) - (projected**2).sum(1)) / self.residual_variance
        return (inside + outside) / centred.shape[1]

    def tensors(self):
        return {
            f"{PREFIX}mean": self.mean.float(),
            f"{PREFIX}components": self.components.float(),
            f"{PREFIX}variances": self.variances.float(),
            f"{PREFIX}residual_variance": self.residual_variance.float().reshape(1),
        }

    @classmethod
    def from_tensors(cls, tensors, threshold):
        get = {k[len(PREFIX):]: v.to(torch.float64) for k, v in tensors.items() if k.startswith(PREFIX)}
        return cls(get["mean"], get["components"], get["variances"], get["residual_variance"][0], float(threshold))


@dataclass
class NegativeProbe:
    """Logistic regression on the same features: training X-rays vs. their inverted and cropped copies.

    The Gaussian alone barely separates an inverted film or a zoomed-in crop from a real
    X-ray (the backbones see similar textures); this probe learns those two shapes of
    misuse from synthetic negatives made of training images only.
    """

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    threshold: float = 0.5

    @classmethod
    def fit(cls, positives, negatives, *, steps=300, weight_decay=1e-3, seed=0):
        torch.manual_seed(seed)
        x = torch.cat([torch.as_tensor(positives), torch.as_tensor(negatives)]).double()
        y = torch.cat([torch.zeros(len(positives)), torch.ones(len(negatives))]).double()
        mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - mean) / scale
        weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        balance = torch.tensor(len(positives) / max(len(negatives), 1), dtype=torch.float64)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y, pos_weight=balance)
            loss = loss + weight_decay * (weight**2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(mean, scale, weight.detach(), bias.detach())

    def score(self, features):
        x = (torch.as_tensor(features, dtype=torch.float64) - self.mean) / self.scale
        return torch.sigmoid(x @ self.weight + self.bias)

    def tensors(self):
        return {f"{PREFIX}probe.{k}": getattr(self, k).float().reshape(-1) for k in ("mean", "scale", "weight", "bias")}

    @classmethod
    def from_tensors(cls, tensors, threshold):
        get = {k[len(PREFIX) + 6:]: v.to(torch.float64) for k, v in tensors.items() if k.startswith(PREFIX + "probe.")}
        return cls(get["mean"], get["scale"], get["weight"], get["bias"], float(threshold))


@dataclass
class OodGate:
    """Image checks, then the Gaussian distance and the negative probe on the model's features."""

    distance: FeatureGate
    probe: NegativeProbe

    def decide(self, features):
        """(rejected, reason or "", distance score, probe score) for each row of features."""
        distances, probes = self.distance.score(features), self.probe.score(features)
        out = []
        for d, p in zip(distances.tolist(), probes.tolist()):
            if d > self.distance.threshold:
                reason = "The image is unlike the chest X-rays the model was trained on (feature distance)."
            elif p > self.probe.threshold:
                reason = "The image looks like an inverted, cropped or zoomed chest X-ray, not a whole frontal film."
            else:
                reason = ""
            out.append((bool(reason), reason, d, p))
        return out

    def tensors(self):
        return {**self.distance.tensors(), **self.probe.tensors()}

    def card(self):
        return {"distance_threshold": self.distance.threshold, "probe_threshold": self.probe.threshold,
                "components": int(self.distance.components.shape[0])}

    @classmethod
    def from_checkpoint(cls, tensors, card):
        if not card or f"{PREFIX}mean" not in tensors:
            return None
        return cls(FeatureGate.from_tensors(tensors, card["distance_threshold"]),
                   NegativeProbe.from_tensors(tensors, card["probe_threshold"]))
