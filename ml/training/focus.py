"""Right for the right reasons: the CNN branch fine-tuned end to end so that its evidence sits in the lungs.

v4 starts from v3 and retrains only the CNN branch (EfficientNet-Lite0, now with ``output_stride``
16: a 14×14 final map at 224 px) and its head; the ViT branch, its head and the age branch stay
v3's bit for bit. The loss (:func:`focus_loss`) is

- the CNN branch's own cross-entropy (its logit plus v3's age logit), films drawn with the
  source/label/view-balanced weights of ``ml.training.data.balance_weights``;
- on films with radiologists' opacity boxes (RSNA 2018) that are labelled PNEUMONIA: the share of the
  softmax of the branch's class-activation map that lies outside the boxes (Ross et al. 2017 penalise
  the input gradient outside an expert mask; the CAM of a pooled-linear head is the exact per-location
  share of the logit, so the penalty acts on what the page will show, and a softmax cannot be lowered
  by pushing all the evidence down: :func:`outside_share`);
- on every film: the share of the softmax of the CAM, signed toward the film's label, on the
  outermost ring of the grid (film borders, collimation edges, corner markers are no evidence for
  either answer).

Labels: where radiologists re-read an NIH film (``rsna.csv``), their reading replaces NIH's
report-mined label — ``Lung Opacity`` → PNEUMONIA, ``Normal`` → NORMAL; ``No Lung Opacity / Not
Normal`` keeps NORMAL where NIH said NORMAL, and a film NIH called PNEUMONIA that radiologists
called "not normal" (another finding, no opacity) is left out of the training loss: neither label
is trusted (:func:`reread_labels`). Validation films keep NIH's labels (the selection score is
comparable with v3's); the re-read AUC is reported beside it.

Augmentation: v3's photometric and geometric chain (``ml.training.augment``), the geometry applied
to the box mask as well, then border and marker erasure (:func:`erase_borders_and_markers`).
"""

import copy
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from ..decode import decode_image
from ..preprocessing import age_to_tensor, image_to_tensor
from . import augment as A
from .data import XrayDataset, balance_weights
from .loop import freeze_batch_norm


@dataclass(frozen=True)
class FocusConfig:
    box_weight: float = 0.5  # weight of the outside-the-boxes share on boxed PNEUMONIA films
    border_weight: float = 0.2  # weight of the border-ring share on every film
    ring: int = 1  # cells of the CAM grid that count as the border ring
    p_border: float = 0.4  # border erasure
    border_width: tuple = (0.02, 0.10)  # share of the side, each side drawn on its own
    p_marker: float = 0.4  # a synthetic marker pasted near a corner
    p_corner: float = 0.3  # a corner blanked (removes real markers)


# --- labels -----------------------------------------------------------------------------------------


def reread_labels(samples, rereads):
    """(samples with radiologists' labels where they exist, counts); discordant-and-unresolved films dropped.

    ``rereads``: {file name: "opacity" | "normal" | "not_normal"} (``ml.training.rsna.load_rereads``).
    """
    out, counts = [], {"reread": 0, "to_pneumonia": 0, "to_normal": 0, "dropped_not_normal": 0}
    for sample in samples:
        reading = rereads.get(Path(sample.path).name)
        if reading is None:
            out.append(sample)
            continue
        counts["reread"] += 1
        if reading == "not_normal":
            if sample.label == 1:
                counts["dropped_not_normal"] += 1
                continue
            out.append(sample)
            continue
        label = 1 if reading == "opacity" else 0
        if label != sample.label:
            counts["to_pneumonia" if label else "to_normal"] += 1
        out.append(replace(sample, label=label))
    return out, counts


# --- augmentation -----------------------------------------------------------------------------------


def box_mask(size, boxes):
    """An 8-bit mask (255 inside any box) of a film of ``size`` (width, height); boxes (x, y, w, h) in its pixels."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for x, y, w, h in boxes:
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=255)
    return mask


def erase_borders_and_markers(image, rng, config=FocusConfig()):
    """Film borders blanked, a corner blanked, a bright marker pasted: none of them is evidence."""
    width, height = image.size
    image = image.copy()
    draw = ImageDraw.Draw(image)
    if rng.random() < config.p_border:
        fill = int(rng.choice([0, 255, int(np.asarray(image).mean())]))
        for side in range(4):
            if rng.random() < 0.5:
                continue
            share = rng.uniform(*config.border_width)
            if side == 0:
                draw.rectangle([0, 0, width, int(share * height)], fill=fill)
            elif side == 1:
                draw.rectangle([0, height - int(share * height), width, height], fill=fill)
            elif side == 2:
                draw.rectangle([0, 0, int(share * width), height], fill=fill)
            else:
                draw.rectangle([width - int(share * width), 0, width, height], fill=fill)
    corners = [(0, 0), (1, 0), (0, 1), (1, 1)]
    if rng.random() < config.p_corner:
        cx, cy = corners[int(rng.integers(4))]
        w, h = int(rng.uniform(0.08, 0.2) * width), int(rng.uniform(0.08, 0.2) * height)
        x0, y0 = (width - w) * cx, (height - h) * cy
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=int(rng.choice([0, 255])))
    if rng.random() < config.p_marker:
        # A letter-like bright glyph of a few strokes, near a corner (where "R", "L", "AP" markers sit).
        cx, cy = corners[int(rng.integers(4))]
        side = int(rng.uniform(0.04, 0.10) * min(width, height))
        x0 = int(rng.uniform(0.02, 0.15) * width) if cx == 0 else int(width - side - rng.uniform(0.02, 0.15) * width)
        y0 = int(rng.uniform(0.02, 0.15) * height) if cy == 0 else int(height - side - rng.uniform(0.02, 0.15) * height)
        stroke = max(side // 6, 1)
        for _ in range(int(rng.integers(2, 5))):
            a = (x0 + rng.uniform(0, side), y0 + rng.uniform(0, side))
            b = (x0 + rng.uniform(0, side), y0 + rng.uniform(0, side))
            draw.line([a, b], fill=int(rng.integers(200, 256)), width=stroke)
    return image


def augment_with_mask(image, mask, rng, config=None, focus=FocusConfig()):
    """(view, mask): v3's augmentation (``config``: ``ml.training.augment.AugmentConfig``, its defaults when None)
    with the geometry applied to the mask too, then erasure (image only)."""
    config = config or A.AugmentConfig()
    # The same crop and rotation for both, drawn once. (Not as one "LA" image: Pillow resamples those with
    # premultiplied alpha, which blacked out the film wherever the mask was 0 — caught by the loss, not a test.)
    image = image.convert("L")
    box = A.crop_box(image.size, rng, config.crop_scale, config.crop_ratio)
    if box:
        image, mask = image.crop(box), mask.crop(box)
    angle = rng.uniform(-config.rotate_degrees, config.rotate_degrees)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
    mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
    # The photometric chain draws its own steps; geometry is already done (crop 1.0, no rotation).
    photometric = replace(config, crop_scale=(1.0, 1.0), crop_ratio=(image.width / image.height,) * 2,
                          rotate_degrees=0.0)
    image = A.augment(image, rng, photometric)
    return erase_borders_and_markers(image, rng, focus), mask


# --- data ---------------------------------------------------------------------------------------------


class FocusDataset(XrayDataset):
    """(image, age, label, box mask on the CAM grid, has boxes) per film; augmented when ``train``."""

    def __init__(self, samples, config, boxes, *, grid, train, seed=0, age_dropout=0.0, focus=FocusConfig()):
        super().__init__(samples, config, seed=seed, age_dropout=age_dropout)
        self.boxes, self.grid, self.train, self.focus = boxes, grid, train, focus

    def __getitem__(self, index):
        sample = self.samples[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        image = decode_image(sample.path).convert("L")
        boxes = self.boxes.get(Path(sample.path).name, []) if sample.label == 1 else []
        mask = box_mask(image.size, boxes)
        if self.train:
            image, mask = augment_with_mask(image, mask, rng, focus=self.focus)
        age = sample.age
        if age is not None and self.age_dropout and rng.random() < self.age_dropout:
            age = None
        grid_mask = torch.from_numpy(np.asarray(mask.resize((self.grid, self.grid), Image.Resampling.BILINEAR),
                                                dtype=np.float32) / 255.0)
        return (image_to_tensor(image, self.config), age_to_tensor([age])[0], torch.tensor(float(sample.label)),
                grid_mask, torch.tensor(float(bool(boxes) and grid_mask.max() > 0.5)))


# --- loss ---------------------------------------------------------------------------------------------


def outside_share(cam, mask):
    """Per row: the share of the CAM's softmax over the grid that lies outside the mask (mask in [0, 1]).

    A softmax, not the positive mass: it is unchanged when the whole map shifts, so the term cannot be
    lowered by pushing every location's evidence down (which would also push the logit down — a first
    version, the positive-mass share, did exactly that: the CNN's ranking collapsed in one epoch), only by
    moving the map's peak mass into the boxes — which is what the pointing game measures.
    """
    weights = torch.softmax(cam.flatten(1), dim=1)
    return 1 - (weights * mask.flatten(1)).sum(1)


def ring_mask(grid, ring, device=None):
    mask = torch.zeros(grid, grid, device=device)
    mask[:ring], mask[-ring:], mask[:, :ring], mask[:, -ring:] = 1, 1, 1, 1
    return mask


def border_share(cam, ring=1):
    """Per row: the share of the CAM's softmax on the outermost ``ring`` cells of the grid (``cam`` signed
    toward the row's label, so the term is about the evidence for the answer given)."""
    weights = torch.softmax(cam.flatten(1), dim=1)
    return (weights * ring_mask(cam.shape[-1], ring, cam.device).flatten()).sum(1)


def cnn_forward(model, images):
    """(final feature map, pooled features) of the CNN branch."""
    feature_map = model.cnn.forward_features(images)
    return feature_map, model.cnn.forward_head(feature_map)


def focus_loss(model, images, ages, targets, masks, boxed, focus=FocusConfig()):
    """(total loss, {part: value}) for one batch; see the module docstring."""
    feature_map, pooled = cnn_forward(model, images)
    logit = model.heads["cnn"](pooled)
    age_logit = model.age_head(model.age(ages)).squeeze(1).detach() if model.age is not None else 0.0
    bce = F.binary_cross_entropy_with_logits(logit + age_logit, targets)
    # The map for the film's own label, as the page shows it: evidence for PNEUMONIA, or for NORMAL.
    cam = model.cnn_evidence(feature_map) * (2 * targets - 1)[:, None, None]
    parts = {"bce": bce}
    total = bce
    if boxed.any() and focus.box_weight:
        outside = outside_share(cam[boxed > 0], masks[boxed > 0]).mean()
        total = total + focus.box_weight * outside
        parts["outside_boxes"] = outside
    if focus.border_weight:
        border = border_share(cam, focus.ring).mean()
        total = total + focus.border_weight * border
        parts["border"] = border
    return total, {k: float(v.detach()) for k, v in parts.items()}


# --- validation ---------------------------------------------------------------------------------------


@torch.inference_mode()
def cnn_outputs(model, samples, boxes, *, grid, batch_size=32, workers=0, desc="validate"):
    """(CNN logits, CAMs (n, grid, grid)) of films as recorded."""
    model.eval()
    dataset = FocusDataset(samples, model.config, boxes, grid=grid, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    logits, cams = [], []
    for images, _, _, _, _ in tqdm(loader, desc=desc, leave=False, file=sys.stderr):
        feature_map, pooled = cnn_forward(model, images.to(memory_format=torch.channels_last))
        logits.append(model.heads["cnn"](pooled).float())
        cams.append(model.cnn_evidence(feature_map))
    return torch.cat(logits).numpy(), torch.cat(cams).numpy()


def fine_tune_cnn(model, train, val, *, boxes, run_dir, epochs, epoch_samples, batch_size, lr, lr_head,
                  weight_decay, age_dropout, seed, evaluate, focus=FocusConfig(), workers=0,
                  save_every=60, stop_after=0, log=print):
    """Train the CNN branch and its head in place; resumable (state saved every ``save_every`` steps and
    each epoch in ``run_dir``). ``evaluate(model, epoch)`` returns ``(score, report)``; the best-scoring
    epoch's CNN weights are returned with the history and the last epoch's. ``stop_after``: end after that many epochs of the
    ``epochs``-long schedule (ablations compare runs at the same point of the same schedule)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "focus.state.pt"
    trained = [p for n, p in model.named_parameters() if n.startswith(("cnn.", "heads.cnn."))]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(("cnn.", "heads.cnn.")))
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in model.named_parameters() if n.startswith("heads.cnn.")], "lr": lr_head,
         "weight_decay": 0.0},
        {"params": [p for n, p in model.named_parameters() if n.startswith("cnn.")], "lr": lr,
         "weight_decay": weight_decay},
    ])
    steps_per_epoch = epoch_samples // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[lr_head, lr], total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.1, anneal_strategy="cos")
    state = {"epoch": 0, "step": 0, "history": [], "best": None, "best_score": -np.inf}
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        log(f"focus: resumed at epoch {state['epoch'] + 1}, step {state['step']}")

    def save():
        state.update(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(path)

    dataset = FocusDataset(train, model.config, boxes, grid=grid_of(model), train=True, seed=seed,
                           age_dropout=age_dropout, focus=focus)
    weights = balance_weights(train)
    for epoch in range(state["epoch"], epochs):
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = list(WeightedRandomSampler(weights, epoch_samples, replacement=True, generator=generator))
        done = state["step"]
        dataset.set_epoch(epoch)
        loader = DataLoader(torch.utils.data.Subset(dataset, order[done * batch_size:]), batch_size=batch_size,
                            num_workers=workers, drop_last=True)
        model.train()
        freeze_batch_norm(model)
        parts_seen = []
        bar = tqdm(loader, desc=f"focus {epoch + 1}/{epochs}", initial=done, total=steps_per_epoch,
                   leave=False, file=sys.stderr)
        for images, ages, targets, masks, boxed in bar:
            loss, parts = focus_loss(model, images.to(memory_format=torch.channels_last), ages, targets, masks,
                                     boxed, focus)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 5.0)
            optimizer.step()
            scheduler.step()
            parts_seen.append(parts)
            state["step"] += 1
            bar.set_postfix(loss=f"{np.mean([p['bce'] for p in parts_seen[-20:]]):.3f}")
            if state["step"] % save_every == 0:
                save()
        score, report = evaluate(model, epoch + 1)
        means = {k: float(np.mean([p[k] for p in parts_seen if k in p])) for k in ("bce", "outside_boxes", "border")
                 if any(k in p for p in parts_seen)}
        state["history"].append({"epoch": epoch + 1, "train": means, **report, "score": score})
        log(f"focus epoch {epoch + 1}/{epochs}: train {means}  score {score:.4f}  {report}")
        if score > state["best_score"]:
            state.update(best=copy.deepcopy({k: v for k, v in model.state_dict().items()
                                             if k.startswith(("cnn.", "heads.cnn."))}), best_score=score)
        state.update(epoch=epoch + 1, step=0)
        save()
        if stop_after and epoch + 1 >= stop_after:
            break
    last = {k: v for k, v in model.state_dict().items() if k.startswith(("cnn.", "heads.cnn."))}
    return state["best"], state["history"], last


def grid_of(model):
    """The side of the CNN's final feature map for the model's input size."""
    reduction = model.cnn.feature_info[-1]["reduction"]
    stride = (model.config.cnn_kwargs or {}).get("output_stride") or reduction
    return model.config.image_size // min(reduction, stride)
