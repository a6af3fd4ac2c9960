"""Where the model looked: a class-specific map from each image branch, combined into one heatmap.

CNN: Grad-CAM (Selvaraju et al. 2017) on the last convolutional feature map. ViT:
gradient-weighted attention rollout (Chefer, Gur & Wolf 2021, "Generic Attention-model
Explainability"): each block's attention, weighted by its gradient and clipped at zero,
averaged over heads and accumulated from the first block to the last; the CLS token's row
over the patch tokens, reshaped to the patch grid, is the map. (Grad-CAM on the ViT's patch
tokens was tried first: on DINOv2 it lights up uniform background and borders, where
high-norm tokens sit, not the lungs.) Each map is taken for the label given (evidence for
PNEUMONIA, or for NORMAL when that is the answer), upsampled to the model's input size,
scaled to [0, 1], and the two are averaged.
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


@dataclass
class Heatmaps:
    combined: np.ndarray  # (size, size) in [0, 1]
    cnn: np.ndarray = None
    vit: np.ndarray = None


def _normalise(cam, size):
    cam = F.interpolate(cam[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).detach().cpu().numpy()


def traced_forward(model, images, ages):
    """One forward pass of a batch of one that also records what the maps need.

    Returns (image features, logit, explain): features and logit as ``model.image_features``
    and ``model.fuse`` give them (detached), and ``explain(toward_pneumonia=True)``, which
    takes the gradients of that same logit and returns :class:`Heatmaps`. The worker calls it
    once per study: the probability, the OOD gate and the maps share the one forward pass.
    """
    size = model.config.image_size
    # Gradients are taken w.r.t. recorded activations only, never accumulated into the weights;
    # an input that requires grad keeps the graph whatever the parameters' flags are.
    images = images.detach().requires_grad_(True)
    features, recorded = [], {}
    with torch.enable_grad():
        if model.cnn is not None:
            recorded["cnn"] = model.cnn.forward_features(images)
            features.append(model.cnn.forward_head(recorded["cnn"]))
        if model.vit is not None:
            with _attention_recorded(model.vit) as attentions:
                features.append(model.vit(fit_to(model.vit, images)))
            recorded["vit"] = attentions
        logit = model.fuse(features, ages)[0]

    def explain(toward_pneumonia=True):
        feature_map, attentions = recorded.get("cnn"), recorded.get("vit", [])
        inputs = ([feature_map] if feature_map is not None else []) + attentions
        with torch.enable_grad():
            grads = list(torch.autograd.grad(logit if toward_pneumonia else -logit, inputs))
        maps = {}
        if feature_map is not None:
            fmap, grad = feature_map[0].detach(), grads.pop(0)[0]  # (C, h, w)
            maps["cnn"] = _normalise(F.relu((grad.mean((1, 2))[:, None, None] * fmap).sum(0)), size)
        if attentions:
            maps["vit"] = _normalise(_attention_rollout(attentions, grads, model.vit), size)
        combined = np.mean(list(maps.values()), axis=0)
        peak = combined.max()
        return Heatmaps(combined / peak if peak > 0 else combined, maps.get("cnn"), maps.get("vit"))

    return [f.detach() for f in features], logit.detach(), explain


def explain_image(model, image, *, age=None, toward_pneumonia=True):
    """Heatmaps for one PIL image; ``toward_pneumonia`` False explains a NORMAL answer."""
    device = next(model.parameters()).device
    x = image_to_tensor(image, model.config)[None].to(device)
    _, _, explain = traced_forward(model, x, age_to_tensor([age]).to(device))
    return explain(toward_pneumonia)


@contextmanager
def _attention_recorded(vit):
    """Inside, every block's attention matrix is appended to the yielded list (the fused kernel hides it)."""
    attentions, hooks, fused = [], [], []
    try:
        for block in vit.blocks:
            fused.append(block.attn.fused_attn)
            block.attn.fused_attn = False
            hooks.append(block.attn.attn_drop.register_forward_hook(
                lambda _module, _args, attention: attentions.append(attention)))
        yield attentions
    finally:
        for hook in hooks:
            hook.remove()
        for block, was_fused in zip(vit.blocks, fused):
            block.attn.fused_attn = was_fused


def _attention_rollout(attentions, grads, vit):
    """CLS-to-patch relevance on the patch grid from gradient-weighted attention (Chefer et al. 2021)."""
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens, device=attentions[0].device)
    for attention, grad in zip(attentions, grads):  # (1, heads, tokens, tokens)
        weighted = (grad * attention.detach())[0].clamp(min=0).mean(0)
        relevance = relevance + weighted @ relevance
    return relevance[0, vit.num_prefix_tokens:].reshape(vit.patch_embed.grid_size)


def heatmap_png(heat, *, max_alpha=200):
    """RGBA PNG bytes: a red-yellow colour ramp whose opacity follows the heat (transparent where cold)."""
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0, 1)
    rgba = np.empty(heat.shape + (4,), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = np.rint(255 * np.clip(2 * heat - 0.6, 0, 1))
    rgba[..., 2] = 0
    rgba[..., 3] = np.rint(max_alpha * np.clip(heat * 1.2 - 0.1, 0, 1))
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
