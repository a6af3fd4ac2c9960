"""Backbone features of many films, computed once and cached on disk in resumable chunks.

The linear-probe stage, the ablation and the OOD gate all train small heads on fixed
backbone features; computing those features is the slow part on a CPU, so it is done once
per backbone state. View 0 of a film is the film itself; views 1.. are augmented copies
(``ml.training.augment``), each drawn from its own seed.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..decode import decode_image
from ..preprocessing import image_to_tensor

CHUNK = 512  # films per cache file: at most this much work is lost to an interruption


class Views(Dataset):
    """Item k is view k // n of sample k % n."""

    def __init__(self, samples, config, views, augment, seed):
        self.samples, self.config, self.views, self.augment, self.seed = list(samples), config, views, augment, seed

    def __len__(self):
        return len(self.samples) * self.views

    def __getitem__(self, k):
        view, index = divmod(k, len(self.samples))
        image = decode_image(self.samples[index].path)
        if view > 0:
            image = self.augment(image, np.random.default_rng((self.seed, view, index)))
        return image_to_tensor(image, self.config)


def cache_key(model, samples, views, seed):
    """Names a cache by the backbones' weights, the films, the views and the seed."""
    digest = hashlib.sha256(f"{views}:{seed}:".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(("cnn.", "vit.")):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for sample in samples:
        digest.update(str(sample.path).encode())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def extract(model, samples, *, views=1, augment=None, seed=0, batch_size=32, workers=1, cache_dir=None,
            desc="features"):
    """{branch: tensor (views × n, d)} of the image branches' pooled features; rows are view-major."""
    model.eval()
    dataset = Views(samples, model.config, views, augment, seed)
    device = next(model.parameters()).device
    folder = Path(cache_dir) / cache_key(model, samples, views, seed) if cache_dir else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(dataset), CHUNK):
        path = folder / f"{start:07d}.pt" if folder else None
        if path and path.exists():
            parts.append(torch.load(path, weights_only=True))
            continue
        subset = torch.utils.data.Subset(dataset, range(start, min(start + CHUNK, len(dataset))))
        loader = DataLoader(subset, batch_size=batch_size, num_workers=workers)
        rows = {name: [] for name in model.image_branches}
        for images in tqdm(loader, desc=f"{desc} {start // CHUNK + 1}/{-(-len(dataset) // CHUNK)}", leave=False,
                           file=sys.stderr):
            images = images.to(device, memory_format=torch.channels_last)
            for name, features in zip(model.image_branches, model.image_features(images)):
                rows[name].append(features.float().cpu())
        part = {name: torch.cat(chunks) for name, chunks in rows.items()}
        if path:
            torch.save(part, path)
        parts.append(part)
    return {name: torch.cat([p[name] for p in parts]) for name in model.image_branches}
