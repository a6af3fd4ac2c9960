"""Hybrid CNN + ViT + age classifier.

Two image branches see the same preprocessed X-ray: a CNN for local texture
and a Vision Transformer for global context. A small dense branch encodes the
age (normalised value + missing flag). Features are concatenated and a small
head produces one logit; ``torch.sigmoid`` of it is P(pneumonia).
"""

import timm
import torch
import torch.nn.functional as F
from torch import nn


def create_backbone(name, **kwargs):
    # pretrained=False: weights come from a local checkpoint, never a download at run time.
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def fit_to(backbone, images):
    """Resize the batch to the transformer's own input size (a smaller ViT grid is much cheaper)."""
    size = tuple(backbone.patch_embed.img_size)
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


class AgeBranch(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, age):
        return self.net(age)


class HybridNet(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        unknown = set(config.branches) - {"cnn", "vit", "age"}
        if unknown or not config.branches:
            raise ValueError(f"Unknown or no branches: {config.branches}")
        self.cnn = create_backbone(config.cnn) if "cnn" in config.branches else None
        self.vit = create_backbone(config.vit, **config.vit_kwargs) if "vit" in config.branches else None
        self.age = AgeBranch(config.age_hidden) if "age" in config.branches else None
        fused = sum(
            branch.num_features if hasattr(branch, "num_features") else branch.out_features
            for branch in (self.cnn, self.vit, self.age)
            if branch is not None
        )
        self.head = nn.Sequential(
            nn.Linear(fused, config.head_hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, 1),
        )

    def forward(self, images, age):
        """images: (n, 3, H, W) normalised; age: (n, 2) from ml.preprocessing.age_to_tensor."""
        return self.fuse(self.image_features(images), age)

    def image_features(self, images):
        """Pooled features of each image branch, in branch order (cnn, vit)."""
        features = []
        if self.cnn is not None:
            features.append(self.cnn(images))
        if self.vit is not None:
            features.append(self.vit(fit_to(self.vit, images)))
        return features

    def fuse(self, image_features, age):
        """One logit per row from the image features and the age branch."""
        features = list(image_features)
        if self.age is not None:
            features.append(self.age(age))
        return self.head(torch.cat(features, dim=1)).squeeze(1)

    def backbones(self):
        return [b for b in (self.cnn, self.vit) if b is not None]
