"""The training, evaluation and prediction commands on a few real X-rays (CPU, seconds)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ml.inference import Predictor
from ml.train import parse_args, train
from ml.decode import decode_image

from .factories import TINY_TRAINING as FAST, XRAYS

def training_set_loss(model, kermany):
    import torch

    from ml.data import XrayDataset, scan_folder

    images, ages, labels = (torch.stack(t) for t in zip(*XrayDataset(scan_folder(kermany), model.config)))
    with torch.inference_mode():
        return torch.nn.functional.binary_cross_entropy_with_logits(model.eval()(images, ages), labels).item()


def test_it_trains_and_lowers_the_loss(trained, kermany):
    import torch

    from ml.checkpoint import load_checkpoint
    from ml.config import get_preset
    from ml.model import HybridNet

    from ml.pretrained import load_pretrained

    path, card = trained
    torch.manual_seed(0)  # the initial weights train() started from (--seed 0)
    initial = HybridNet(get_preset("compact", branches=("cnn", "age")))
    load_pretrained(initial)
    before = training_set_loss(initial, kermany)
    after = training_set_loss(load_checkpoint(path)[0], kermany)
    assert after < before
    assert card["training_data"]["n_duplicates_dropped"] == 0
    split = card["training_data"]["split"]
    assert (split["n_train"], split["n_val"]) == (6, 2)
    assert split["positives_val"] == 1
    assert card["uses_age"] is False
    assert card["weight_sources"]["cnn"]["licence"] == "Apache-2.0"
    assert 0 < card["threshold"] <= 1 and card["temperature"] > 0
    assert card["validation_metrics"]["recall"] >= 0.98
    assert path.with_suffix(".json").exists() and path.with_suffix(".state.pt").exists()


def test_it_round_trips_the_trained_checkpoint(trained):
    path, card = trained
    predictor = Predictor.from_checkpoint(path, device="cpu")
    again = Predictor.from_checkpoint(path, device="cpu")
    image = decode_image(XRAYS / "pneumonia-1.jpeg")
    assert predictor.predict([(image, 3)]) == again.predict([(image, 3)])
    assert predictor.name == "tiny-test" and predictor.weights_sha256 == card["weights_sha256"]


def test_it_ignores_age_when_training_had_none(trained):
    predictor = Predictor.from_checkpoint(trained[0], device="cpu")
    image = decode_image(XRAYS / "normal-2.jpeg")
    probabilities = predictor.predict([(image, age) for age in (1, 2.5, 5, None)])
    assert max(probabilities) - min(probabilities) < 0.01


def test_it_resumes_from_the_saved_state(trained, kermany, tmp_path):
    path, first = trained
    copy = tmp_path / path.name
    shutil.copy(path.with_suffix(".state.pt"), copy.with_suffix(".state.pt"))
    # Every epoch is done already: resuming only refits threshold and temperature on the best weights.
    card = train(parse_args(["--data", str(kermany), "--out", str(copy), "--epochs-frozen", "8", "--epochs", "0",
                             "--resume", *FAST]))
    assert card["history"] == first["history"]
    assert card["weights_sha256"] == first["weights_sha256"]


def test_it_trains_the_age_branch_when_the_data_has_ages(tmp_path):
    # Identical images whose label only the age explains; the age branch alone keeps it fast.
    root = tmp_path / "img"
    root.mkdir()
    rows = ["path,label,age,patient"]
    base = Image.open(XRAYS / "normal-1.jpeg").convert("L")
    for i in range(16):
        copy = base.copy()
        copy.putpixel((0, 0), i)  # byte-distinct, so deduplication keeps every row
        copy.save(root / f"{i}.jpeg", quality=95)
        age = 10 + 5 * i
        rows.append(f"img/{i}.jpeg,{int(age > 50)},{age},p{i}")
    (tmp_path / "ages.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "age.safetensors"
    card = train(parse_args(["--data", str(tmp_path / "ages.csv"), "--out", str(out), "--branches", "age",
                             "--epochs-frozen", "40", "--epochs", "0", "--lr", "3e-2", "--patience", "40",
                             "--batch-size", "4", "--val-fraction", "0.3", "--no-pretrained", "--workers", "0",
                             "--no-augment"]))
    assert card["uses_age"] is True
    predictor = Predictor.from_checkpoint(out, device="cpu")
    image = decode_image(XRAYS / "normal-1.jpeg")
    young, old = predictor.predict([(image, 15), (image, 80)])
    assert old - young > 0.3


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)


def test_it_evaluates_a_folder_and_writes_metrics_and_plots(trained, kermany, tmp_path):
    result = run_cli("ml.evaluate", "--data", str(kermany), "--model", str(trained[0]), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 8
    for key in ("auc", "accuracy", "precision", "recall", "specificity", "f1", "threshold"):
        assert 0 <= metrics[key] <= 1, key
    matrix = np.asarray(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    assert matrix.sum() == 8 and matrix[1].sum() == 4
    for png in ("roc.png", "confusion.png"):
        with Image.open(tmp_path / png) as image:
            assert image.format == "PNG" and image.size[0] > 200
    assert "auc" in result.stdout and "tiny-test" in result.stdout
    assert metrics["ood"] is None  # trained with --no-ood: no gate to report on


def test_it_predicts_images_as_json_lines(trained, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    result = run_cli("ml.predict", str(XRAYS / "normal-1.jpeg"), str(junk), "--age", "4", "--model", str(trained[0]))
    assert result.returncode == 1
    ok, error = [json.loads(line) for line in result.stdout.splitlines()]
    assert ok["label"] in ("NORMAL", "PNEUMONIA") and 0 <= ok["probability"] <= 1
    assert (ok["ood"], ok["ood_reason"], ok["heatmap"]) == (False, "", None)
    assert ok["model"]["name"] == "tiny-test" and len(ok["model"]["weights_sha256"]) == 64
    assert ok["threshold"] == pytest.approx(json.loads(trained[0].with_suffix(".json").read_text())["threshold"])
    assert error["file"] == str(junk) and "JPEG, PNG or DICOM" in error["error"]
    assert "Traceback" not in result.stderr


def test_it_predicts_with_the_same_code_path_as_the_worker(trained):
    predictor = Predictor.from_checkpoint(trained[0], device="cpu")
    image = decode_image(XRAYS / "pneumonia-2.jpeg")
    expected = predictor.assess(image, age=4.0)
    result = json.loads(run_cli("ml.predict", str(XRAYS / "pneumonia-2.jpeg"), "--age", "4",
                                "--model", str(trained[0])).stdout)
    assert result["probability"] == pytest.approx(expected.probability, abs=1e-6)
    assert result["label"] == expected.label and result["warnings"] == expected.warnings
    # assess() (the worker's call) and the batch path give the same probability.
    assert predictor.predict([(image, 4.0)])[0] == pytest.approx(expected.probability, abs=1e-6)


def test_it_writes_heatmaps_and_gives_no_label_to_a_photo(trained, tmp_path):
    from skimage import data as photos

    photo = tmp_path / "astronaut.png"
    Image.fromarray(photos.astronaut()).save(photo)
    result = run_cli("ml.predict", str(XRAYS / "pneumonia-1.jpeg"), str(photo), "--model", str(trained[0]),
                     "--heatmap", str(tmp_path / "maps"))
    assert result.returncode == 0
    xray, rejected = [json.loads(line) for line in result.stdout.splitlines()]
    assert xray["heatmap"] == str(tmp_path / "maps" / "pneumonia-1.heatmap.png")
    with Image.open(xray["heatmap"]) as heat:
        assert heat.mode == "RGBA" and heat.size == (224, 224)
        assert len(np.unique(np.asarray(heat.getchannel("A")))) > 10  # a map, not a flat picture
    assert rejected["ood"] is True and "colour" in rejected["ood_reason"]
    assert (rejected["label"], rejected["probability"], rejected["heatmap"]) == (None, None, None)


def test_it_rejects_a_bad_age_on_the_command_line(trained):
    result = run_cli("ml.predict", str(XRAYS / "normal-1.jpeg"), "--age", "-2", "--model", str(trained[0]))
    assert result.returncode == 2 and "--age" in result.stderr


def test_it_ablates_each_branch_subset_on_pretrained_and_trained_backbones(trained, kermany, tmp_path):
    from ml.ablation import main as ablation_main

    out = tmp_path / "ablation.json"
    ablation_main(["--data", str(kermany), "--checkpoint", str(trained[0]), "--epochs", "3",
                   "--val-fraction", "0.25", "--workers", "0", "--out", str(out)])
    results = json.loads(out.read_text())
    rows = {(r["backbones"], r["branches"]): r for r in results["rows"]}
    # The tiny checkpoint was trained without a ViT: only its CNN can be ablated.
    assert set(rows) == {("pretrained", "cnn"), ("pretrained", "vit"), ("pretrained", "cnn+vit"),
                         ("pretrained", "cnn+vit+age"), ("fine-tuned", "cnn")}
    assert (results["n_train"], results["n_val"]) == (6, 2)
    for row in rows.values():
        assert 0 <= row["auc"] <= 1 and row["recall"] >= 0.98


def test_it_predicts_a_dicom_and_reads_its_age(trained, tmp_path):
    from .dicoms import bundled, make_dicom

    dicom, ct = tmp_path / "chest.dcm", tmp_path / "ct.dcm"
    dicom.write_bytes(make_dicom("normal-1.jpeg", age="045Y"))
    ct.write_bytes(bundled("CT_small.dcm"))
    result = run_cli("ml.predict", str(dicom), str(ct), "--model", str(trained[0]))
    assert result.returncode == 1
    ok, error = [json.loads(line) for line in result.stdout.splitlines()]
    assert ok["age"] == 45 and ok["age_source"] == "DICOM PatientAge" and ok["label"] in ("NORMAL", "PNEUMONIA")
    assert ok["warnings"][0] == (
        "Age 45 years is outside the ages the model was validated on (1–5 years): its answer is less reliable.")
    # The tiny model was trained with --no-ood; the shipped one carries the gate.
    assert ok["warnings"][1:] == ["This model has no learned out-of-distribution check: only the image checks ran."]
    assert "a CT scan, not a radiograph" in error["error"]
    # The same pixels as the JPEG it was made from give the same answer.
    jpeg = json.loads(run_cli("ml.predict", str(XRAYS / "normal-1.jpeg"), "--model", str(trained[0])).stdout)
    assert ok["probability"] == pytest.approx(jpeg["probability"], abs=0.02)


def test_it_fits_and_measures_the_ood_gate_into_a_checkpoint(trained, kermany, tmp_path):
    from ml.fit_ood import main as fit_ood_main

    out = tmp_path / "gated.safetensors"
    fit_ood_main(["--model", str(trained[0]), "--data", str(kermany), "--out", str(out), "--probe-images", "6"])
    card = json.loads(out.with_suffix(".json").read_text())
    report = card["ood"]["report"]
    assert set(report["rejection"]) == {"natural", "other modality", "noise", "blank", "text", "inverted", "crop"}
    assert report["rejection"]["blank"]["rate"] == 1.0  # the image checks alone catch these
    assert 0 <= report["false_rejection_rate_val_b"] <= 1
    predictor = Predictor.from_checkpoint(out, device="cpu")
    assert predictor.gate is not None and predictor.gate.distance.threshold == card["ood"]["distance_threshold"]
    # The gate's tensors do not change the classifier.
    image = decode_image(XRAYS / "pneumonia-1.jpeg")
    plain = Predictor.from_checkpoint(trained[0], device="cpu")
    assert predictor.predict([(image, None)]) == pytest.approx(plain.predict([(image, None)]), abs=1e-6)
