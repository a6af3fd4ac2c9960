"""The one path from a decoded grayscale image (``ml.decode``) to the model's tensors.

grayscale → 3 channels → resize to the model size → normalise; age → (value, missing flag).
Training, evaluation and serving all call these functions.
"""

import numpy as np
import torch
from PIL import Image

from .constants import AGE_MAX_YEARS
from .pixels import to_grayscale


def image_to_tensor(image, config):
    """Grayscale PIL image → normalised float tensor of shape (3, size, size)."""
    if image.mode != "L":
        image = to_grayscale(image)
    size = config.image_size
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    tensor = array.unsqueeze(0).expand(3, size, size)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (tensor - mean) / std


def normalize_age(age):
    """Years → (value in [0, 1], missing flag). Missing or invalid ages set the flag."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return 0.0, 1.0
    if not np.isfinite(years) or years < 0 or years > AGE_MAX_YEARS:
        return 0.0, 1.0
    return years / AGE_MAX_YEARS, 0.0


def age_to_tensor(ages):
    """List of ages (years or None) → tensor of shape (n, 2): [normalised age, missing]."""
    return torch.tensor([normalize_age(a) for a in ages], dtype=torch.float32)
