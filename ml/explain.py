"""Where the model looked: a class-specific map from each image branch, combined into one heatmap.

CNN: Grad-CAM (Selvaraju et al. 2017) on the last convolutional feature map. ViT: attention
rollout whose last blocks are weighted by their gradients (Chefer, Gur & Wolf 2021, "Generic
Attention-model Explainability"): in the last ``GRADIENT_BLOCKS`` blocks each attention map is
weighted by its gradient, clipped at zero, averaged over heads and accumulated (R ← R + ĀR);
the blocks before them, whose attention is mostly local mixing, are rolled out plainly (Abnar &
Zuidema 2020: ½A + ½I, head-averaged) and carry that relevance back to the input patches. The
CLS token's row over the patch tokens, reshaped to the patch grid, is the map. Only the last
blocks are differentiated: a study's heatmaps cost a fraction of a backward pass. (Grad-CAM on
the ViT's patch tokens was tried first: on DINOv2 it lights up uniform background and borders,
where high-norm tokens sit, not the lungs.) Each map is taken for the label given (evidence for
PNEUMONIA, or for NORMAL when that is the answer), upsampled to the model's input size, scaled
to [0, 1], and the two are averaged.
"""

import io
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .preprocessing import age_to_tensor, image_to_tensor

GRADIENT_BLOCKS = 2  # ViT blocks whose attention is weighted by its gradient (the rest: plain rollout)


@dataclass
class Heatmaps:
    combined: np.ndarray  # (size, size) in [0, 1]
    cnn: np.ndarray = None
    vit: np.ndarray = None


def _normalise(cam, size):
    cam = F.interpolate(cam.float()[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).detach().cpu().numpy()


def traced_forward(model, images, ages):
    """One forward pass of a batch that also records what the maps need.

    Returns (image features, logits, explain): features and logits as ``model.image_features``
    and ``model.fuse`` give them (detached), and ``explain(toward_pneumonia)``, which takes the
    gradients of those same logits and returns one :class:`Heatmaps` per row (``toward_pneumonia``:
    one bool for every row, or one per row). The worker calls it once per batch of studies: the
    probabilities, the OOD gate and the maps share the one forward pass. Gradients are taken
    w.r.t. recorded activations only (the CNN's feature map, the last blocks' attention), never
    the weights, and nothing below those activations is differentiated. Rows do not interact (batch
    norm is frozen at inference), so the gradient of the signed sum of the logits gives each
    row's own map.
    """
    size = model.config.image_size
    features, recorded = [], {}
    with torch.enable_grad():
        for name in model.image_branches:
            if name == "cnn":
                with torch.no_grad():
                    feature_map = model.cnn.forward_features(images)
                recorded["cnn"] = feature_map = feature_map.detach().requires_grad_(True)
                features.append(model.cnn.forward_head(feature_map))
            else:
                with _attention_recorded(model.vit) as attentions:
                    features.append(model.branch_features("vit", images))
                recorded["vit"] = attentions
        logits = model.fuse(features, ages)

    def explain(toward_pneumonia=True):
        signs = torch.as_tensor(toward_pneumonia, dtype=logits.dtype, device=logits.device)
        signs = (signs.expand(len(logits)) if signs.ndim == 0 else signs) * 2 - 1
        feature_map, attentions = recorded.get("cnn"), recorded.get("vit", [])
        graded = attentions[-GRADIENT_BLOCKS:] if attentions else []
        inputs = ([feature_map] if feature_map is not None else []) + graded
        with torch.enable_grad():
            grads = list(torch.autograd.grad((logits * signs).sum(), inputs))
        cnn_grad = grads.pop(0) if feature_map is not None else None
        out = []
        for row in range(len(logits)):
            maps = {}
            if feature_map is not None:
                fmap, grad = feature_map[row].detach().float(), cnn_grad[row].float()  # (C, h, w)
                maps["cnn"] = _normalise(F.relu((grad.mean((1, 2))[:, None, None] * fmap).sum(0)), size)
            if attentions:
                maps["vit"] = _normalise(_attention_rollout([a[row:row + 1] for a in attentions],
                                                            [g[row:row + 1] for g in grads], model.vit), size)
            combined = np.mean(list(maps.values()), axis=0)
            peak = combined.max()
            out.append(Heatmaps(combined / peak if peak > 0 else combined, maps.get("cnn"), maps.get("vit")))
        return out

    return [f.detach() for f in features], logits.detach(), explain


def explain_image(model, image, *, age=None, toward_pneumonia=True):
    """Heatmaps for one PIL image; ``toward_pneumonia`` False explains a NORMAL answer."""
    device = next(model.parameters()).device
    x = image_to_tensor(image, model.config)[None].to(device)
    _, _, explain = traced_forward(model, x, age_to_tensor([age]).to(device))
    return explain(toward_pneumonia)[0]


@contextmanager
def _attention_recorded(vit):
    """Inside, every block's attention matrix is appended to the yielded list (the fused kernel hides it).

    The input of the first differentiated block is cut from the graph below it and made to require
    a gradient, so the last blocks' attention is differentiable even when the weights are not.
    """
    attentions, hooks, fused = [], [], []
    first_graded = max(len(vit.blocks) - GRADIENT_BLOCKS, 0)
    try:
        for block in vit.blocks:
            fused.append(block.attn.fused_attn)
            block.attn.fused_attn = False
            hooks.append(block.attn.attn_drop.register_forward_hook(
                lambda _module, _args, attention: attentions.append(attention)))
        hooks.append(vit.blocks[first_graded].register_forward_pre_hook(
            lambda _module, args: (args[0].detach().requires_grad_(True), *args[1:])))
        yield attentions
    finally:
        for hook in hooks:
            hook.remove()
        for block, was_fused in zip(vit.blocks, fused):
            block.attn.fused_attn = was_fused


def _attention_rollout(attentions, grads, vit):
    """CLS-to-patch relevance on the patch grid: gradient-weighted last blocks, plain rollout below them."""
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens, device=attentions[0].device)
    first_graded = len(attentions) - len(grads)
    early = eye
    for attention in attentions[:first_graded]:  # (1, heads, tokens, tokens); float32 even under autocast
        early = (0.5 * attention.detach()[0].float().mean(0) + 0.5 * eye) @ early
    late = eye
    for attention, grad in zip(attentions[first_graded:], grads):
        weighted = (grad.float() * attention.detach().float())[0].clamp(min=0).mean(0)
        late = late + weighted @ late
    relevance = late @ early
    grid = relevance[0, vit.num_prefix_tokens:].reshape(vit.patch_embed.grid_size)
    # DINOv2 gathers global information in a few high-norm patch tokens (often over a film marker or
    # the background); one of them can hold most of the relevance and flatten the rest of the map.
    # Capping at the 98th percentile of the grid keeps the map about the film, not those tokens.
    return grid.clamp(max=float(torch.quantile(grid.flatten(), 0.98)))


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
