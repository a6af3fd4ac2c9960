"""Where the model looked: a class-specific map from each image branch, and the map shown by default.

Each map is taken for the label given (evidence for PNEUMONIA, or for NORMAL when that is the
answer), from the forward pass that gave the answer, at the model's input size, scaled to [0, 1].
Which maps a checkpoint serves is in its config (``cnn_map``, ``maps``; ``ml.config``):

- ``cnn_map = "cam"`` (v4): the class-activation map (Zhou et al. 2016) of the CNN's final 14×14
  map (EfficientNet-Lite0 at output stride 16), ``HybridNet.cnn_evidence`` — each location's share
  of the branch logit, exact for a pooled-linear head — ReLU'd for the label, upsampled and
  smoothed (:func:`cam_heatmap`). No backward pass: the worker runs without autograd. v4 was
  trained so that this map lies in radiologists' boxes (``ml/training/focus.py``).
- ``cnn_map = "gated-gradcam"`` (v3): Grad-CAM (Selvaraju et al. 2017) on the stage at half the
  final resolution (14×14: ``blocks.4``), gated by Grad-CAM on the final 7×7 map (their geometric
  mean), upsampled and smoothed; chosen on the NIH training split's boxes
  (``python -m ml.cli.sweep_maps``). Only the last stages are differentiated.
- ViT (legacy: only where ``"vit" in maps``, i.e. v3; kept so v3 explains as it did): CAM of the
  pooled-linear head's mean-patch half on the final patch tokens (Σ_d w_d/scale_d · (token_d − μ_d)
  per patch; no backward). It did not pass the pointing test on validation (docs/MODEL_CARD.md), so
  v4, the shipped model, does not make it.
- combined (shown by default): the CNN map, else the ViT map.
"""

import io
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .model import fit_to
from .preprocessing import age_to_tensor, image_to_tensor

SMOOTH = 15 / 224  # box-blur width (share of the side), applied twice: ≈ a Gaussian of σ 6 px at 224


@dataclass
class Heatmaps:
    combined: np.ndarray  # (size, size) in [0, 1]
    cnn: np.ndarray = None
    vit: np.ndarray = None  # legacy: only a config whose ``maps`` name "vit" (v3) makes it


def _normalise(cam, size):
    cam = F.interpolate(cam.float()[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).detach().cpu().numpy()


def smooth(heat, width=SMOOTH):
    """The map box-blurred twice (``width`` of its side, odd, edges averaged over the pixels inside), peak 1."""
    heat = torch.as_tensor(np.asarray(heat, dtype=np.float32))
    k = max(int(round(width * heat.shape[-1])) // 2 * 2 + 1, 1)
    t = heat[None, None]
    for _ in range(2):
        t = F.avg_pool2d(t, k, stride=1, padding=k // 2, count_include_pad=False)
    t = t[0, 0]
    peak = float(t.max())
    return (t / peak if peak > 0 else t).numpy()


def cam_heatmap(cam, size, sign=1.0):
    """The served CNN map from one row's class-activation map (h, w) (``HybridNet.cnn_evidence``):
    ReLU(sign · CAM) upsampled to ``size``, smoothed (:func:`smooth`), peak 1."""
    return smooth(_normalise(F.relu(sign * cam.float()), size))


def gradcam(activations, gradients):
    """Grad-CAM of one row: ReLU(Σ_c mean(∂logit/∂A_c) · A_c) over (C, h, w)."""
    return F.relu((gradients.float().mean((1, 2))[:, None, None] * activations.float()).sum(0))


def gated_gradcam(fine, coarse):
    """Geometric mean of a fine Grad-CAM and a coarse one bilinearly upsampled to its grid (both ≥ 0)."""
    coarse = F.interpolate(coarse[None, None], size=fine.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return torch.sqrt(fine.clamp(min=0) * coarse.clamp(min=0))


def patch_cam(model, tokens, sign):
    """ViT map on the patch grid: ReLU(sign · Σ_d w_d/scale_d (token_d − μ_d)), the mean-patch half of the head.

    Legacy (v3's ViT map; v4 serves the CNN's map alone): kept so v3 explains as it did.

    ``tokens``: one row's final (normalised) tokens (tokens, dim); None when the head has no mean-patch half.
    """
    vit = model.vit
    if model.config.vit_pool != "token+avg":
        return None
    head, d = model.heads["vit"], vit.num_features
    weight = head.linear.weight[0, d:].float() / head.scale[d:].float()
    patches = tokens[vit.num_prefix_tokens:].float() - head.mean[d:].float()
    return F.relu(sign * (patches @ weight)).reshape(vit.patch_embed.grid_size)


def traced_forward(model, images, ages):
    """One forward pass of a batch that also records what the maps need.

    Returns (image features, logits, explain): features and logits as ``model.image_features``
    and ``model.fuse`` give them (detached), and ``explain(toward_pneumonia)``, which returns one
    :class:`Heatmaps` per row (``toward_pneumonia``: one bool for every row, or one per row). The
    worker calls it once per batch of studies: the probabilities, the OOD gate and the maps share
    the one forward pass. With ``config.cnn_map == "cam"`` (v4) no map needs a gradient: the pass
    runs without autograd. Otherwise (v3) the CNN's map takes the gradients of those same logits
    w.r.t. two recorded activations (its 14×14 stage and its final feature map), never the
    weights, and nothing below the 14×14 stage is differentiated. Rows do not interact (batch
    norm is frozen at inference), so the gradient of the signed sum of the logits gives each
    row's own map.
    """
    if model.config.cnn_map == "cam":
        return _cam_forward(model, images, ages)
    size = model.config.image_size
    features, recorded = [], {}
    with torch.enable_grad():
        for name in model.image_branches:
            if name == "cnn":
                with _stage_recorded(model.cnn) as stage:
                    feature_map = model.cnn.forward_features(images)
                if not stage:  # no finer stage found: Grad-CAM on the final feature map alone
                    feature_map = feature_map.detach().requires_grad_(True)
                recorded["cnn"] = (stage[0], feature_map) if stage else (None, feature_map)
                features.append(model.cnn.forward_head(feature_map))
            else:
                with torch.no_grad():
                    tokens = model.vit.forward_features(fit_to(model.vit, images))
                recorded["vit"] = tokens
                features.append(model.pool_vit(tokens))
        logits = model.fuse(features, ages)

    def explain(toward_pneumonia=True):
        signs = _signs(toward_pneumonia, logits)
        stage, feature_map = recorded.get("cnn", (None, None))
        grads = {}
        if feature_map is not None and feature_map.requires_grad:
            inputs = [t for t in (stage, feature_map) if t is not None]
            with torch.enable_grad():
                found = torch.autograd.grad((logits.float() * signs).sum(), inputs, allow_unused=True)
            grads = dict(zip(("stage", "final") if stage is not None else ("final",), found, strict=True))
        out = []
        for row in range(len(logits)):
            maps = {}
            if grads:
                final = gradcam(feature_map[row].detach(), _zeros_if_none(grads["final"], feature_map)[row])
                if stage is not None:
                    final = gated_gradcam(gradcam(stage[row].detach(), _zeros_if_none(grads["stage"], stage)[row]), final)
                maps["cnn"] = smooth(_normalise(final, size))
            out.append(_heatmaps(model, maps, recorded.get("vit"), row, float(signs[row])))
        return out

    return [f.detach() for f in features], logits.detach(), explain


@torch.inference_mode()
def _cam_forward(model, images, ages):
    """:func:`traced_forward` for a model whose CNN map is its CAM (``HybridNet.cnn_evidence``): no autograd at all."""
    size = model.config.image_size
    features, recorded = [], {}
    for name in model.image_branches:
        if name == "cnn":
            feature_map = model.cnn.forward_features(images)
            recorded["cnn"] = model.cnn_evidence(feature_map)
            features.append(model.cnn.forward_head(feature_map))
        else:
            recorded["vit"] = model.vit.forward_features(fit_to(model.vit, images))
            features.append(model.pool_vit(recorded["vit"]))
    logits = model.fuse(features, ages)

    def explain(toward_pneumonia=True):
        signs = _signs(toward_pneumonia, logits)
        cams = recorded.get("cnn")
        return [_heatmaps(model, {} if cams is None else {"cnn": cam_heatmap(cams[row], size, float(signs[row]))},
                          recorded.get("vit"), row, float(signs[row]))
                for row in range(len(logits))]

    return features, logits, explain


def _signs(toward_pneumonia, logits):
    """+1 (evidence for PNEUMONIA) or −1 (for NORMAL) per row."""
    signs = torch.as_tensor(toward_pneumonia, dtype=torch.float32, device=logits.device)
    return (signs.expand(len(logits)) if signs.ndim == 0 else signs) * 2 - 1


def _heatmaps(model, maps, vit_tokens, row, sign):
    """One row's :class:`Heatmaps`: the CNN map given, the ViT patch CAM where the config shows it (legacy: v3)."""
    size = model.config.image_size
    if vit_tokens is not None and "vit" in model.config.maps:
        cam = patch_cam(model, vit_tokens[row].detach(), sign)
        if cam is not None:
            maps["vit"] = _normalise(cam, size)
    if "cnn" not in model.config.maps:
        maps.pop("cnn", None)
    combined = maps.get("cnn", maps.get("vit"))
    if combined is None:
        combined = np.zeros((size, size), dtype=np.float32)
    return Heatmaps(combined, maps.get("cnn"), maps.get("vit"))


def _zeros_if_none(grad, like):
    return torch.zeros_like(like) if grad is None else grad


def explain_image(model, image, *, age=None, toward_pneumonia=True):
    """Heatmaps for one PIL image; ``toward_pneumonia`` False explains a NORMAL answer."""
    device = next(model.parameters()).device
    x = image_to_tensor(image, model.config)[None].to(device)
    _, _, explain = traced_forward(model, x, age_to_tensor([age]).to(device))
    return explain(toward_pneumonia)[0]


def _stage_module(cnn):
    """The CNN's last feature stage at half the final resolution (timm ``feature_info``), or None."""
    info = getattr(cnn, "feature_info", None)
    stages = list(info) if info is not None else []
    if len(stages) < 2:
        return None
    final = stages[-1]["reduction"]
    finer = [s for s in stages if s["reduction"] == final // 2]
    return cnn.get_submodule(finer[-1]["module"]) if finer else None


@contextmanager
def _stage_recorded(cnn):
    """Inside, the output of the CNN's half-resolution stage is cut from the graph below it, made to
    require a gradient and appended to the yielded list (weights are frozen: nothing below is recorded)."""
    recorded, module = [], _stage_module(cnn)

    def hook(_module, _args, output):
        output = output.detach().requires_grad_(True)
        recorded.append(output)
        return output

    handle = module.register_forward_hook(hook) if module is not None else None
    try:
        yield recorded
    finally:
        if handle is not None:
            handle.remove()


def heatmap_png(heat, *, max_alpha=200):
    """RGBA PNG bytes: a red-yellow colour ramp whose opacity follows the heat (transparent where cold)."""
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0, 1)
    rgba = np.empty(heat.shape + (4,), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = np.rint(255 * np.clip(2 * heat - 0.6, 0, 1))
    rgba[..., 2] = 0
    rgba[..., 3] = np.rint(max_alpha * np.clip(heat * 1.2 - 0.1, 0, 1))
    buffer = io.BytesIO()
    # Fastest zlib level: 2 ms and ~35 kB a map, where optimize=True took ~120 ms for a third less.
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
