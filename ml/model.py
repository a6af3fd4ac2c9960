"""Hybrid CNN + ViT + age classifier.

Two image branches see the same preprocessed X-ray: a CNN for local texture and a Vision
Transformer for global context. A small dense branch encodes the age (normalised value +
missing flag). ``torch.sigmoid`` of the one logit is P(pneumonia).

Fusion (v3, v4): each image branch standardises its pooled features with fixed training
statistics and gives its own logit; the model's logit is the mean of the image branches' logits
plus the age branch's logit. Each branch has to predict on its own (training adds a loss per
branch), so one branch cannot drown the other's evidence — on frozen features this late fusion
beat a head on the concatenated features for adults without losing children.

v1/v2 fused by concatenating the features into an MLP head (``fusion="concat"``, ``head_hidden``);
that head is retired (``ml.config`` refuses such a config): it is in git history before its
removal (``git log -S head_hidden -- ml/model.py``) and in docs/MODEL_CARD.md.
"""

import timm
import torch
import torch.nn.functional as F
from torch import nn

IMAGE_BRANCHES = ("cnn", "vit")


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


class BranchHead(nn.Module):
    """A branch's pooled features, standardised with fixed training statistics (buffers), to one logit."""

    def __init__(self, features, dropout):
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(features, 1)

    @torch.no_grad()
    def set_statistics(self, features):
        """Standardise with the mean and standard deviation of these (training) features."""
        features = features.to(self.mean)
        self.mean.copy_(features.mean(0))
        self.scale.copy_(features.std(0).clamp_min(1e-4))

    def forward(self, features):
        return self.linear(self.dropout((features - self.mean) / self.scale)).squeeze(1)


class HybridNet(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        unknown = set(config.branches) - {"cnn", "vit", "age"}
        if unknown or not config.branches:
            raise ValueError(f"Unknown or no branches: {config.branches}")
        self.cnn = create_backbone(config.cnn, **config.cnn_kwargs) if "cnn" in config.branches else None
        self.vit = create_backbone(config.vit, **config.vit_kwargs) if "vit" in config.branches else None
        self.age = AgeBranch(config.age_hidden) if "age" in config.branches else None
        self.heads = nn.ModuleDict({name: BranchHead(self.feature_size(name), config.dropout)
                                    for name in self.image_branches})
        self.age_head = nn.Linear(config.age_hidden, 1) if self.age is not None else None

    @property
    def image_branches(self):
        """Names of the image branches present, in the fixed order (cnn, vit)."""
        return [name for name in IMAGE_BRANCHES if getattr(self, name) is not None]

    def feature_size(self, name):
        backbone = getattr(self, name)
        if name == "vit" and self.config.vit_pool == "token+avg":
            return 2 * backbone.num_features
        return backbone.num_features

    def forward(self, images, age):
        """images: (n, 3, H, W) normalised; age: (n, 2) from ml.preprocessing.age_to_tensor."""
        return self.fuse(self.image_features(images), age)

    def image_features(self, images):
        """Pooled features of each image branch, in branch order (cnn, vit)."""
        return [self.branch_features(name, images) for name in self.image_branches]

    def branch_features(self, name, images):
        if name == "cnn":
            return self.cnn(images)
        return self.pool_vit(self.vit.forward_features(fit_to(self.vit, images)))

    def cnn_evidence(self, feature_map):
        """The CNN branch's class-activation map: (n, h, w), each location's share of the
        branch logit, Σ_c w_c/scale_c · (A_c(x, y) − μ_c). Its spatial mean plus the head's bias is the
        branch's logit (the pooled-linear head makes CAM exact: Zhou et al. 2016), so the heatmap
        needs no backward pass; ``feature_map``: the CNN's final (n, C, h, w) map."""
        head = self.heads["cnn"]
        weight = head.linear.weight[0].float() / head.scale.float()
        centred = feature_map.float() - head.mean.float()[None, :, None, None]
        return torch.einsum("nchw,c->nhw", centred, weight)

    def pool_vit(self, tokens):
        """The ViT's pooled feature from its (normalised) output tokens."""
        cls = tokens[:, 0]
        if self.config.vit_pool == "token+avg":
            return torch.cat([cls, tokens[:, self.vit.num_prefix_tokens:].mean(1)], dim=1)
        return cls

    def branch_logits(self, image_features, age):
        """{branch: logit} for each image branch, and the age branch's logit (or 0)."""
        logits = {name: self.heads[name](features) for name, features in zip(self.image_branches, image_features)}
        age_logit = self.age_head(self.age(age)).squeeze(1) if self.age is not None else 0.0
        return logits, age_logit

    def fuse(self, image_features, age):
        """One logit per row from the image features and the age branch."""
        logits, age_logit = self.branch_logits(image_features, age)
        image_logit = torch.stack(list(logits.values())).mean(0) if logits else 0.0
        total = image_logit + age_logit
        return total if torch.is_tensor(total) else torch.zeros(len(age), device=age.device)

    def backbones(self):
        return [getattr(self, name) for name in self.image_branches]

    def head_parameters(self):
        """Everything but the backbones: the fusion layers and the age branch."""
        return [p for n, p in self.named_parameters() if not n.startswith(("cnn.", "vit."))]
