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


def grad_cam(model, image, *, age=None, toward_pneumonia=True):
    """Heatmaps for one PIL image; ``toward_pneumonia`` False explains a NORMAL answer."""
    config = model.config
    size = config.image_size
    device = next(model.parameters()).device
    x = image_to_tensor(image, config)[None].to(device)
    ages = age_to_tensor([age]).to(device)
    features = []
    hooks, attentions, fused = [], [], []
    with torch.enable_grad():
        try:
            if model.cnn is not None:
                feature_map = model.cnn.forward_features(x)
                feature_map.retain_grad()
                features.append(model.cnn.forward_head(feature_map))
            if model.vit is not None:
                hooks, fused = _keep_attention(model.vit, attentions)
                features.append(model.vit(fit_to(model.vit, x)))
            logit = model.fuse(features, ages)[0]
            model.zero_grad(set_to_none=True)
            (logit if toward_pneumonia else -logit).backward()
        finally:
            for hook in hooks:
                hook.remove()
            for block, was_fused in zip(model.vit.blocks if model.vit is not None else [], fused):
                block.attn.fused_attn = was_fused

    maps = {}
    if model.cnn is not None:
        fmap, grad = feature_map[0], feature_map.grad[0]  # (C, h, w)
        maps["cnn"] = _normalise(F.relu((grad.mean((1, 2))[:, None, None] * fmap).sum(0)), size)
    if model.vit is not None:
        maps["vit"] = _normalise(_attention_rollout(attentions, model.vit), size)
    combined = np.mean([m for m in maps.values()], axis=0)
    peak = combined.max()
    return Heatmaps(combined / peak if peak > 0 else combined, maps.get("cnn"), maps.get("vit"))


def _keep_attention(vit, store):
    """Record every block's attention matrix (with its gradient); the fused kernel does not expose it."""
    hooks, fused = [], []
    for block in vit.blocks:
        fused.append(block.attn.fused_attn)
        block.attn.fused_attn = False

        def keep(_module, _args, attention):
            attention.retain_grad()
            store.append(attention)

        hooks.append(block.attn.attn_drop.register_forward_hook(keep))
    return hooks, fused


def _attention_rollout(attentions, vit):
    """CLS-to-patch relevance on the patch grid from gradient-weighted attention (Chefer et al. 2021)."""
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens, device=attentions[0].device)
    for attention in attentions:  # (1, heads, tokens, tokens)
        weighted = (attention.grad * attention)[0].clamp(min=0).mean(0)
        relevance = relevance + weighted @ relevance
    return relevance[0, vit.num_prefix_tokens:].reshape(vit.patch_embed.grid_size).detach()


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
