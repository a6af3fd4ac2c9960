"""Sweep heatmap variants against radiologists' opacity boxes, from one forward pass per film.

    python -m ml.cli.sweep_maps --model models/pneumoweb-v3.safetensors --films runs/splits/nih-train.csv \\
        --boxes ../shared/data/nih_pneumonia/boxes.csv [--cache runs/sweep-train.pt]

The films of ``--films`` that have boxes are run once (the answer's label, as the worker explains it)
and what every variant needs is kept (``--cache`` stores it, so a second run only recomputes the
maps): the CNN's feature maps at 7×7 and 14×14 with their gradients, the ViT's head-averaged
attention of every block (gradient-weighted in the last ``GRADIENT_BLOCKS``), its patch-token
norms per block and its final tokens, the input picture. Each variant is a 224×224 map; it is
measured with ``ml.localisation`` (pointing game, mass ratio, chance) exactly as
``ml.cli.evaluate --boxes`` measures the served maps. Choose on the training split's boxes; report
the validation split once, for the chosen variant. The ViT variants (``vit_*``, ``chosen_vit``, the
``combined_*`` that mix one in) are legacy: v3 served a ViT map, v4 serves the CNN's alone.
"""

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import cli_args as flags
from .. import explain as ex
from ..inference import PNEUMONIA, Predictor
from ..localisation import box_mask, film_record, format_summary, summarise, to_file_pixels
from ..preprocessing import image_to_tensor
from ..training.data import load_samples, readable_batches
from ..training.rsna import load_boxes

GRADIENT_BLOCKS = 2  # v3's rollout: ViT blocks whose attention is weighted by its gradient


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


def _body_mask(pictures, size=None, *, ring=1 / 16, blur=9, dark=0.05, bright=0.99):
    """1 where a map may point, 0 elsewhere: the film without its border ring, outside-film black and markers.

    ``pictures``: (n, H, W) grayscale model inputs in [-1, 1] (``image_to_tensor``'s first channel).
    Deterministic and the same at serving and in the sweep: a pixel is kept when it lies inside the
    border ring (``ring`` of the side, one ViT patch at 224 px), and its ``blur``×``blur`` local mean
    is above the film's darkest values (within ``dark`` of the range) and below its ``bright``
    quantile (burned-in text, markers). Returned as float (n, size, size).
    """
    pictures = torch.as_tensor(pictures).float()
    if size is not None and tuple(pictures.shape[-2:]) != (size, size):
        pictures = F.interpolate(pictures[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    n, height, width = pictures.shape
    smooth = F.avg_pool2d(pictures[:, None], blur, stride=1, padding=blur // 2, count_include_pad=False)[:, 0]
    flat = smooth.reshape(n, -1)
    low, high = flat.min(1).values, torch.quantile(flat, bright, dim=1)
    keep = (smooth > (low + dark * (high - low))[:, None, None]) & (smooth < high[:, None, None])
    edge_h, edge_w = max(round(height * ring), 0), max(round(width * ring), 0)
    inner = torch.zeros(height, width, dtype=torch.bool)
    inner[edge_h:height - edge_h, edge_w:width - edge_w] = True
    return (keep & inner).float()



def capture(predictor, samples, boxes, batch_size=16):
    """Per film with boxes: the internals every variant needs (see the module doc) and the film's boxes/shape."""
    model = predictor.model
    films, skipped = [], []
    chosen = [s for s in samples if Path(s.path).name in boxes]
    for batch in readable_batches(chosen, batch_size, skipped, "capture"):
        items = [(image, info, sample.age, sample.view or None) for sample, image, info in batch]
        answers = predictor.assess_batch(items)
        keep = [(s, im, a) for (s, im, _), a in zip(batch, answers, strict=True) if not a.ood]
        if not keep:
            continue
        x = torch.stack([image_to_tensor(im, model.config) for _, im, _ in keep])
        ages = predictor.model_ages([s.age for s, _, _ in keep])
        signs = torch.tensor([1.0 if a.label == PNEUMONIA else -1.0 for _, _, a in keep])
        cnn = model.cnn
        with torch.no_grad():
            h = cnn.bn1(cnn.conv_stem(x))
            for block in cnn.blocks[:4]:
                h = block(h)
        with torch.enable_grad():
            s3 = h.detach().requires_grad_(True)
            s4 = cnn.blocks[4](s3)
            s4.retain_grad()
            h = s4
            for block in cnn.blocks[5:]:
                h = block(h)
            f7 = cnn.bn2(cnn.conv_head(h))
            f7.retain_grad()
            cnn_feat = cnn.forward_head(f7)
            norms = []
            hooks = [b.register_forward_hook(lambda _m, _a, out, store=norms: store.append(out.detach().norm(dim=-1)))
                     for b in model.vit.blocks]
            with _attention_recorded(model.vit) as attentions:
                tokens = model.vit.forward_features(x)
            for hook in hooks:
                hook.remove()
            vit_feat = model.pool_vit(tokens)
            logits = model.fuse([cnn_feat, vit_feat], ages)
            graded = attentions[-GRADIENT_BLOCKS:]
            grads = torch.autograd.grad((logits * signs).sum(), [s3, s4, f7, *graded])
        g3, g4, g7, *ga = grads
        for row, (sample, image, answer) in enumerate(keep):
            films.append({
                "file": Path(sample.path).name, "shape": (image.height, image.width), "label": answer.label,
                "sign": float(signs[row]), "picture": x[row, 0].numpy().copy(),
                "s3": (s3[row].detach().numpy(), g3[row].numpy()), "s4": (s4[row].detach().numpy(), g4[row].numpy()),
                "f7": (f7[row].detach().numpy(), g7[row].numpy()),
                "attn": np.stack([a[row].detach().float().mean(0).numpy() for a in attentions]),
                "attn_graded": np.stack([(g[row].float() * a[row].detach().float()).clamp(min=0).mean(0).numpy()
                                         for a, g in zip(graded, ga)]),
                "norms": torch.stack([n[row] for n in norms]).numpy(), "tokens": tokens[row].detach().numpy(),
            })
    return films, skipped


# ---------------------------------------------------------------- variants (each: film → 224×224 map ≥ 0)

def _up(grid, size=224):
    return ex._normalise(torch.as_tensor(np.asarray(grid, dtype=np.float32)), size)


def gradcam(acts, grads):
    acts, grads = torch.as_tensor(acts), torch.as_tensor(grads)
    return F.relu((grads.mean((1, 2))[:, None, None] * acts).sum(0))


def layercam(acts, grads):
    acts, grads = torch.as_tensor(acts), torch.as_tensor(grads)
    return F.relu((grads.clamp(min=0) * acts).sum(0))


def _blur(heat, k):
    t = torch.as_tensor(heat, dtype=torch.float32)[None, None]
    t = F.avg_pool2d(F.avg_pool2d(t, k, 1, k // 2, count_include_pad=False), k, 1, k // 2, count_include_pad=False)
    t = t[0, 0]
    return (t / t.max()).numpy() if t.max() > 0 else t.numpy()


def cnn_cam(model, film, centred):
    """CAM of the pooled-linear CNN head: Σ_c w_c/scale_c (A_c − μ_c·centred), signed, ReLU: no backward."""
    head = model.heads["cnn"]
    weight = (head.linear.weight[0] / head.scale).detach()
    acts = torch.as_tensor(film["f7"][0])
    if centred:
        acts = acts - head.mean[:, None, None]
    return F.relu(film["sign"] * (weight[:, None, None] * acts).sum(0))


def vit_patch_cam(model, film, centred):
    """CAM of the mean-patch half of the ViT's pooled-linear head on its final patch tokens: no backward."""
    head, vit = model.heads["vit"], model.vit
    d = vit.num_features
    weight = (head.linear.weight[0, d:] / head.scale[d:]).detach()
    tokens = torch.as_tensor(film["tokens"][vit.num_prefix_tokens:])
    if centred:
        tokens = tokens - head.mean[d:]
    return F.relu(film["sign"] * tokens @ weight).reshape(vit.patch_embed.grid_size)


def rollout(film, drop=None, graded=True):
    """CLS-row rollout (plain below, gradient-weighted in the last blocks); ``drop``: token indices removed."""
    attn = torch.as_tensor(film["attn"])
    late_w = torch.as_tensor(film["attn_graded"])
    n = attn.shape[-1]
    eye = torch.eye(n)
    keep = torch.ones(n)
    if drop is not None and len(drop):
        keep[torch.as_tensor(drop)] = 0
    first = attn.shape[0] - (late_w.shape[0] if graded else 0)
    early = eye
    for a in attn[:first]:
        a = a * keep
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        early = (0.5 * a + 0.5 * eye) @ early
    late = eye
    if graded:
        for w in late_w:
            late = late + (w * keep) @ late
    rel = (late @ early)[0, 1:] * keep[1:]
    return rel.reshape(16, 16)


def outliers(norms, k, blocks):
    """Patch indices (0-based on the patch grid) whose token norm is > median + k·MAD in any of ``blocks``."""
    out = set()
    for b in blocks:
        v = norms[b, 1:]
        med = np.median(v)
        mad = np.median(np.abs(v - med)) + 1e-6
        out |= set(np.flatnonzero(v > med + k * mad).tolist())
    return sorted(out)


def ring(grid_size=16, width=1):
    idx = np.arange(grid_size * grid_size).reshape(grid_size, grid_size)
    mask = np.zeros((grid_size, grid_size), bool)
    mask[:width] = mask[-width:] = True
    mask[:, :width] = mask[:, -width:] = True
    return idx[mask].tolist()


def cap(grid, q=0.98):
    grid = torch.as_tensor(grid)
    return grid.clamp(max=float(torch.quantile(grid.flatten(), q)))


def suppress(grid, patches):
    grid = torch.as_tensor(grid).clone().flatten()
    grid[torch.as_tensor(patches, dtype=torch.long)] = 0
    return grid.reshape(16, 16)


def body_mask(picture, size=224):
    return _body_mask(torch.as_tensor(picture)[None], size)[0].numpy()


def variants(model, film):
    v = {}
    v["cnn_gradcam7"] = _up(gradcam(*film["f7"]))
    v["cnn_cam7_centred"] = _up(cnn_cam(model, film, True))
    v["cnn_gradcam14_s4"] = _up(gradcam(*film["s4"]))
    v["cnn_gradcam14_s3"] = _up(gradcam(*film["s3"]))
    g14 = gradcam(*film["s4"])
    g7up = F.interpolate(gradcam(*film["f7"])[None, None], size=(14, 14), mode="bilinear", align_corners=False)[0, 0]
    v["cnn_14x7"] = _up(torch.sqrt(g14.clamp(min=0) * g7up.clamp(min=0)))
    v["chosen_cnn"] = ex.smooth(ex._normalise(ex.gated_gradcam(ex.gradcam(*map(torch.as_tensor, film["s4"])),
                                                                ex.gradcam(*map(torch.as_tensor, film["f7"]))), 224))
    v["chosen_vit"] = ex._normalise(  # v3's served ViT map (legacy)
        ex.patch_cam(model, torch.as_tensor(film["tokens"]), film["sign"]), 224)
    v["cnn_layercam_s4"] = _up(layercam(*film["s4"]))
    v["cnn_layercam_s3"] = _up(layercam(*film["s3"]))
    v["cnn_14x7_s3"] = _up(torch.sqrt(gradcam(*film["s3"]) * g7up))
    v["cnn_14x7_blur"] = _blur(v["cnn_14x7"], 7)
    v["cnn_14x7_blur15"] = _blur(v["cnn_14x7"], 15)
    norms = film["norms"]
    out_last = outliers(norms, 5, [-2, -1])
    edge = ring()
    v["vit_rollout"] = _up(cap(rollout(film)))
    v["vit_rollout_plain"] = _up(cap(rollout(film, graded=False)))
    v["vit_rollout_noring"] = _up(cap(suppress(rollout(film), edge)))
    v["vit_rollout_dropout"] = _up(cap(rollout(film, drop=[p + 1 for p in out_last])))
    v["vit_rollout_dropboth"] = _up(cap(rollout(film, drop=[p + 1 for p in sorted(set(out_last) | set(edge))])))
    v["vit_patchcam"] = _up(vit_patch_cam(model, film, False))
    v["vit_patchcam_centred"] = _up(vit_patch_cam(model, film, True))
    v["vit_patchcam_noring_noout"] = _up(suppress(vit_patch_cam(model, film, True), sorted(set(out_last) | set(edge))))
    v["combined_old"] = _comb(v["cnn_gradcam7"], v["vit_rollout"])
    v["combined_cnn14_vitcam"] = _comb(v["cnn_gradcam14_s4"], v["vit_patchcam_centred"])
    v["combined_14x7_vitcam"] = _comb(v["cnn_14x7"], v["vit_patchcam_centred"])
    v["combined_14x7_vitcam_2to1"] = _comb(v["cnn_14x7"], v["cnn_14x7"], v["vit_patchcam_centred"])
    v["combined_14x7_vitcam_geo"] = _comb(np.sqrt(v["cnn_14x7"] * v["vit_patchcam_centred"]))
    v["vit_patchcam_blur"] = _blur(v["vit_patchcam_centred"], 15)
    v["combined_geo_blur15"] = _blur(v["combined_14x7_vitcam_geo"], 15)
    v["combined_cnnblur15_vitcam"] = _comb(v["cnn_14x7_blur15"], v["vit_patchcam_centred"])
    v["cnn_14x7_blur21"] = _blur(v["cnn_14x7"], 21)
    v["cnn_gradcam14_blur15"] = _blur(v["cnn_gradcam14_s4"], 15)
    v["cnn_cam7_blur15"] = _blur(v["cnn_gradcam7"], 15)
    mask = body_mask(film["picture"])
    for name in [n for n in v if n in MASKED]:
        v[name + "+mask"] = _mask(v[name], mask)
    return v, mask


MASKED = ("cnn_14x7", "combined_14x7_vitcam", "vit_patchcam_centred")


def _comb(*maps):
    m = np.mean(maps, axis=0)
    return m / m.max() if m.max() > 0 else m


def _mask(heat, mask):
    m = heat * mask
    return m / m.max() if m.max() > 0 else m


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_model(parser)
    flags.add_films(parser, old=("--data",))
    flags.add(parser, "--boxes", required=True)
    flags.add(parser, "--cache", metavar="FILE.pt")
    parser.add_argument("--only", nargs="*", help="variant names to report (default: all)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_grad_enabled(False)
    predictor = Predictor.load(args.model, device="cpu")
    boxes = load_boxes(args.boxes)
    if args.cache and args.cache.exists():
        films = torch.load(args.cache, weights_only=False)
    else:
        films, skipped = capture(predictor, load_samples(args.films), boxes)
        if skipped:
            print(f"skipped (unreadable): {skipped}", file=sys.stderr)
        if args.cache:
            torch.save(films, args.cache)
    records = []
    for film in films:
        maps, mask = variants(predictor.model, film)
        if args.only:
            maps = {k: m for k, m in maps.items() if k in args.only}
        rec = film_record(maps, boxes[film["file"]], film["shape"], label=film["label"])
        inside = to_file_pixels(mask.astype(np.float64), film["shape"]) > 0.5
        rec["chance_in_mask"] = float((box_mask(boxes[film["file"]], film["shape"]) & inside).sum() / max(inside.sum(), 1))
        rec["mask_share"] = float(mask.mean())
        records.append(rec)
    print(format_summary(summarise(records), f"{args.films.name}: every answered film"))
    print(f"chance of a random peak inside the body mask: {np.mean([r['chance_in_mask'] for r in records]):.3f};"
          f" mask covers {np.mean([r['mask_share'] for r in records]):.2f} of the picture")


if __name__ == "__main__":
    main()
