"""Each population's threshold and temperature describe the weights as saved.

(``ml.cli.train`` calibrates them; ``python -m ml.cli.calibrate`` refits them on the recorded split.)
"""

import json
import shutil

import pytest
import torch

from ml.checkpoint import file_sha256, load_checkpoint, round_to_shipped_precision, save_checkpoint
from ml.config import get_preset
from ml.decode import decode_image
from ml.inference import Predictor
from ml.metrics import summary
from ml.model import HybridNet
from ml.training.calibration import population_of
from ml.training.splits import recorded_validation_split

from ..base import run_module


def run_calibrate(*args):
    return run_module("ml.cli.calibrate", *args)  # in this process: tests/base.py says why


def same_weights(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_it_saves_exactly_the_weights_it_rounded(tmp_path):
    torch.manual_seed(0)
    model = HybridNet(get_preset("lite0-dinov2s8", branches=("cnn", "age")))
    save_checkpoint(model, {"name": "raw"}, tmp_path / "raw.safetensors")
    assert not same_weights(model, load_checkpoint(tmp_path / "raw.safetensors")[0])  # fp32 in memory, fp16 on disk

    round_to_shipped_precision(model)
    save_checkpoint(model, {"name": "rounded"}, tmp_path / "rounded.safetensors")
    assert same_weights(model, load_checkpoint(tmp_path / "rounded.safetensors")[0])


def data_of(kermany, adults):
    return {"kermany": kermany, "nih": adults}


def test_it_states_each_populations_validation_metrics_of_the_shipped_weights(trained, kermany, adults):
    path, card = trained
    predictor = Predictor.from_checkpoint(path, device="cpu")
    val, _ = recorded_validation_split(card, data_of(kermany, adults))
    for population, entry in card["populations"].items():
        films = [s for s in val if population_of(s.age, s.source) == population]
        # As the worker sees them: a Kermany film at the pediatric point, an adult film by its age.
        ages = [s.age if s.age is not None else 3.0 for s in films]
        scores = predictor.predict([(decode_image(s.path), age) for s, age in zip(films, ages)])
        measured = summary([s.label for s in films], scores, entry["threshold"])
        assert measured["confusion_matrix"] == entry["validation_metrics"]["confusion_matrix"]
        assert measured["recall"] >= entry["min_recall"]
    assert card["calibrated_on"] == "validation split per population, weights at float16 as shipped"


def test_it_recalibrates_a_checkpoint_on_its_recorded_split(trained, kermany, adults, tmp_path):
    path, card = trained
    model = tmp_path / path.name
    shutil.copy(path, model)
    tampered = {name: {**entry, "threshold": 0.5, "temperature": 3.0} for name, entry in card["populations"].items()}
    model.with_suffix(".json").write_text(json.dumps({**card, "populations": tampered}))

    result = run_calibrate("--data", f"kermany={kermany}", "--data", f"nih={adults}", "--model", model)

    assert result.returncode == 0, result.stderr
    again = json.loads(model.with_suffix(".json").read_text())
    for name, entry in card["populations"].items():
        assert again["populations"][name]["threshold"] == pytest.approx(entry["threshold"], abs=1e-5)
        assert again["populations"][name]["temperature"] == pytest.approx(entry["temperature"], abs=1e-4)
        assert (again["populations"][name]["validation_metrics"]["confusion_matrix"]
                == entry["validation_metrics"]["confusion_matrix"])
        points = again["populations"][name]["other_operating_points"]
        assert all(p["recall"] >= p["min_recall"] for p in points)
    assert "calibrated" in again and again["name"] == "tiny-test"
    assert file_sha256(model) == card["weights_sha256"] == again["weights_sha256"]  # weights untouched
    assert "pediatric: temperature" in result.stdout and "adult: temperature" in result.stdout


def test_it_refuses_data_the_model_was_not_trained_on(trained, kermany, adults, tmp_path):
    path, card = trained
    model = tmp_path / path.name
    shutil.copy(path, model)
    shutil.copy(path.with_suffix(".json"), model.with_suffix(".json"))
    before = model.with_suffix(".json").read_text()
    other = tmp_path / "other"
    shutil.copytree(kermany, other)
    next(other.rglob("*.jpeg")).unlink()

    result = run_calibrate("--data", f"kermany={other}", "--data", f"nih={adults}", "--model", model)
    assert result.returncode == 2
    assert "does not match the data this model was trained on" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_calibrate("--data", f"kermany={kermany}", "--model", model)
    assert missing.returncode == 2 and "missing nih" in missing.stderr
    assert model.with_suffix(".json").read_text() == before


def test_it_needs_the_card_beside_the_weights(tmp_path, kermany):
    weights = tmp_path / "lonely.safetensors"
    weights.write_bytes(b"")
    result = run_calibrate("--data", f"kermany={kermany}", "--model", weights)
    assert result.returncode == 2 and "no model card beside" in result.stderr
