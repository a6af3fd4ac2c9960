"""The narrow interface the worker uses: load once, predict a batch of (image, age)."""

import io

import pytest
import torch
from PIL import Image

from ml.checkpoint import load_checkpoint, save_checkpoint
from ml.config import get_preset
from ml.decode import ImageDecodeError, decode_image
from ml.inference import Predictor
from ml.preprocessing import age_to_tensor, image_to_tensor

from ..factories import XRAYS, xray_bytes


@pytest.fixture(scope="module")
def predictor():
    return Predictor.untrained("lite0-dinov2s8", device="cpu", seed=0)


def test_it_decodes_a_real_xray_to_grayscale():
    image = decode_image(xray_bytes())
    assert image.mode == "L" and image.size == (224, 224)


def test_it_decodes_from_a_path_and_a_file_the_same():
    path = XRAYS / "pneumonia-1.jpeg"
    with open(path, "rb") as fh:
        assert decode_image(path).tobytes() == decode_image(fh).tobytes()


@pytest.mark.parametrize(
    "data,message",
    [
        (b"not an image at all", "JPEG, PNG or DICOM"),
        (xray_bytes()[:2000], "truncated"),
    ],
)
def test_it_refuses_bad_bytes(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)


def test_it_refuses_other_formats():
    buffer = io.BytesIO()
    Image.new("L", (100, 100)).save(buffer, format="BMP")
    with pytest.raises(ImageDecodeError):
        decode_image(buffer.getvalue())


def test_it_turns_rgb_and_16_bit_images_into_the_same_tensor_shape():
    config = get_preset("lite0-dinov2s8")
    rgb = Image.new("RGB", (300, 200), (10, 200, 30))
    deep = Image.new("I;16", (300, 200), 40000)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    for image in (rgb, deep):
        tensor = image_to_tensor(image, config)
        assert tensor.shape == (3, 224, 224)
        pixels = tensor * std + mean  # back to [0, 1]: the three channels are the same grayscale
        assert torch.allclose(pixels[0], pixels[1], atol=1e-6) and torch.allclose(pixels[1], pixels[2], atol=1e-6)


def test_it_encodes_missing_and_invalid_ages():
    ages = age_to_tensor([60, None, -3, 500, "abc", float("nan")])
    assert ages[0].tolist() == [0.5, 0.0]
    for row in ages[1:]:
        assert row.tolist() == [0.0, 1.0]


def test_it_predicts_a_batch_of_probabilities(predictor):
    images = [decode_image(xray_bytes(name)) for name in ("normal-1.jpeg", "pneumonia-1.jpeg")]
    probabilities = predictor.predict([(images[0], 3), (images[1], 3)])
    assert len(probabilities) == 2
    assert all(0.0 < p < 1.0 for p in probabilities)
    assert probabilities[0] != probabilities[1]
    # Batched and single predictions agree.
    assert predictor.predict([(images[1], 3)])[0] == pytest.approx(probabilities[1], abs=1e-5)
    assert predictor.predict([]) == []


def test_it_labels_each_study_at_its_populations_operating_point(predictor, tmp_path):
    path = tmp_path / "model.safetensors"
    image = decode_image(xray_bytes("pneumonia-1.jpeg"))
    [logit] = [s.logit for s in predictor.screen([(image, None, None)], gate=False)]
    populations = {  # thresholds either side of this film's probability, so the label tells the point used
        "pediatric": {"threshold": 0.999, "temperature": 1.0, "age_band": [0, 18], "validated_ages": [1, 17]},
        "adult": {"threshold": 0.001, "temperature": 2.0, "age_band": [18, 121], "validated_ages": [18, 83]},
    }
    save_checkpoint(predictor.model, {"name": "points", "populations": populations}, path)
    loaded = Predictor.from_checkpoint(path, device="cpu")
    child, grown_up, unknown = (loaded.assess(image, age=age) for age in (4, 40, None))
    assert (child.population, child.label, child.threshold) == ("pediatric", "NORMAL", 0.999)
    assert (grown_up.population, grown_up.label) == ("adult", "PNEUMONIA")
    assert grown_up.probability == pytest.approx(torch.sigmoid(torch.tensor(logit / 2.0)).item(), abs=2e-3)
    # No age: the most sensitive point (the lower threshold on the raw logit), with a warning.
    assert unknown.population == "adult" and "No age given" in unknown.warnings[0]
    screened = loaded.screen([(image, None, 4), (image, None, 40)], gate=False)
    assert [(s.population, s.label) for s in screened] == [("pediatric", "NORMAL"), ("adult", "PNEUMONIA")]


def test_it_names_untrained_weights_as_such(predictor):
    assert "untrained" in predictor.name and predictor.trained is False
    assert predictor.weights_sha256 == Predictor.untrained("lite0-dinov2s8", device="cpu", seed=0).weights_sha256
    assert predictor.weights_sha256 != Predictor.untrained("lite0-dinov2s8", device="cpu", seed=1).weights_sha256


def test_it_round_trips_a_checkpoint(predictor, tmp_path):
    path = tmp_path / "model.safetensors"
    card = save_checkpoint(predictor.model, {"name": "roundtrip", "threshold": 0.4}, path)
    loaded = Predictor.from_checkpoint(path, device="cpu")
    assert loaded.name == "roundtrip" and loaded.point(30).threshold == 0.4  # a one-threshold (v1/v2) card
    assert loaded.weights_sha256 == card["weights_sha256"]
    image = decode_image(xray_bytes())
    # fp16 storage: outputs agree to fp16 precision.
    assert loaded.predict([(image, 2)])[0] == pytest.approx(predictor.predict([(image, 2)])[0], abs=2e-3)
    model, _ = load_checkpoint(path)
    assert not model.training


def test_it_falls_back_to_the_untrained_architecture_without_a_checkpoint(tmp_path):
    # "hybrid": v3's former preset name, still PNEUMOWEB_FALLBACK_PRESET's default (ml.config.LEGACY_PRESET_NAMES).
    loaded = Predictor.load(tmp_path / "missing.safetensors", fallback_preset="hybrid", device="cpu")
    assert loaded.trained is False


@pytest.mark.parametrize("precision", ["bf16"])
def test_the_gpu_precision_path_runs_on_a_cpu_and_agrees_with_fp32(precision):
    # CUDA serves in bf16 autocast by default; the same code path, run here on the CPU, must agree.
    from ml.constants import DEFAULT_WEIGHTS

    full = Predictor.load(DEFAULT_WEIGHTS, device="cpu", precision="fp32")
    half = Predictor.load(DEFAULT_WEIGHTS, device="cpu", precision=precision)
    assert full.precision == "fp32" and half.precision == precision
    items = [(decode_image(xray_bytes(name)), None, 4.0, "PA") for name in ("normal-1.jpeg", "pneumonia-1.jpeg")]
    exact, approx = full.assess_batch(items, explain=True), half.assess_batch(items, explain=True)
    for a, b in zip(exact, approx):
        assert b.probability == pytest.approx(a.probability, abs=0.05) and b.heatmaps.combined.dtype.kind == "f"
        assert b.heatmaps.combined.shape == a.heatmaps.combined.shape


def test_it_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        Predictor.untrained("lite0-dinov2s8", device="cpu", seed=0).__class__(
            model=Predictor.untrained("lite0-dinov2s8", device="cpu").model, name="x", weights_sha256="", precision="int4")


def test_every_precision_the_settings_accept_has_an_autocast_dtype():
    from ml import constants, device

    assert set(device.PRECISIONS) | {"auto"} == set(constants.PRECISIONS)
