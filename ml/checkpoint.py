"""Checkpoints: safetensors weights + a JSON model card beside them (``ml.card``).

Saving takes and returns the card as a dict (training writes it); loading returns it parsed,
as a :class:`ml.card.ModelCard` whose ``weights_sha256`` is the digest of the file loaded.
"""

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .card import ModelCard, card_path
from .config import ModelConfig
from .model import HybridNet

# Weights are stored at half precision: half the file, and what the card's figures were measured on.
SHIPPED_DTYPE = torch.float16


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(state_dict):
    """Stable digest of in-memory weights (for models that have no file)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def round_to_shipped_precision(model):
    """Round floating-point weights to what the checkpoint will hold, in place.

    Threshold, temperature, gate and validation metrics fitted after this describe the saved
    weights exactly: the fp16 → fp32 round trip on loading is lossless.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(SHIPPED_DTYPE))
    return model


def write_card(weights_path, card):
    card_path(weights_path).write_text(json.dumps(card, indent=2, sort_keys=True))


def save_checkpoint(model, card, weights_path, *, dtype=SHIPPED_DTYPE, extra=None):
    """Weights (fp16) plus ``extra`` tensors kept at full precision (the OOD gate's ``ood.*`` statistics)."""
    weights_path = Path(weights_path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    tensors.update({k: v.detach().cpu().float().contiguous() for k, v in (extra or {}).items()})
    save_file(tensors, str(weights_path))
    card = {**card, "config": model.config.to_dict(), "weights_sha256": file_sha256(weights_path)}
    write_card(weights_path, card)
    return card


def load_checkpoint(weights_path, device="cpu", *, with_extra=False):
    """(model, ModelCard), or (model, ModelCard, extra tensors) with ``with_extra``."""
    weights_path = Path(weights_path)
    raw = json.loads(card_path(weights_path).read_text())
    model = HybridNet(ModelConfig.from_dict(raw["config"]))
    tensors = load_file(str(weights_path))
    state = model.state_dict()
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items() if k in state}, strict=True)
    card = ModelCard.from_dict({**raw, "weights_sha256": file_sha256(weights_path)})
    model = model.to(device).eval()
    if with_extra:
        return model, card, {k: v for k, v in tensors.items() if k not in state}
    return model, card
