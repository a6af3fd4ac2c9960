"""The training, evaluation and prediction commands on a few real X-rays (CPU, seconds)."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ml.cli.train import parse_args
from ml.decode import decode_image
from ml.inference import Predictor
from ml.training.loop import train

from ..base import run_module
from ..factories import TINY_TRAINING as FAST
from ..factories import XRAYS


def training_set_loss(model, folder):
    import torch

    from ml.training.data import XrayDataset, scan_folder

    images, ages, labels = (torch.stack(t) for t in zip(*XrayDataset(scan_folder(folder), model.config)))
    with torch.inference_mode():
        return torch.nn.functional.binary_cross_entropy_with_logits(model.eval()(images, ages), labels).item()


def test_it_trains_on_two_sources_and_lowers_the_loss(trained, kermany):
    import torch

    from ml.checkpoint import load_checkpoint
    from ml.config import get_preset
    from ml.model import HybridNet
    from ml.training.pretrained import load_pretrained

    path, card = trained
    torch.manual_seed(0)  # the initial weights train() started from (--seed 0)
    initial = HybridNet(get_preset("lite0-dinov2s8", branches=("cnn", "age")))
    load_pretrained(initial)
    assert training_set_loss(load_checkpoint(path)[0], kermany) < training_set_loss(initial, kermany)
    data = card["training_data"]
    assert set(data["sources"]) == {"kermany", "nih"}
    assert data["sources"]["kermany"]["train"]["images"] == 6 and data["sources"]["kermany"]["val"]["images"] == 2
    assert data["sources"]["nih"]["val"]["with_age"] == 2 and data["sources"]["kermany"]["val"]["with_age"] == 0
    assert card["uses_age"] is True and card["age_input_range_years"][0] >= 30
    assert card["weight_sources"]["cnn"]["licence"] == "Apache-2.0"
    assert [row["alpha"] for row in card["training"]["wise"]] == [0.0, 0.5, 1.0]
    assert card["training"]["wise_alpha"] in (0.0, 0.5, 1.0)
    assert path.with_suffix(".json").exists() and (path.with_suffix(".run") / "finetune.state.pt").exists()


def test_it_fits_one_operating_point_per_population(trained):
    _, card = trained
    pediatric, adult = card["populations"]["pediatric"], card["populations"]["adult"]
    assert pediatric["sources"] == {"kermany": 2} and adult["sources"] == {"nih": 2}
    assert pediatric["age_band"] == [0.0, 18.0] and adult["age_band"][0] == 18.0
    assert pediatric["validated_ages"] == [1.0, 5.0]  # Kermany's documented ages; no per-film age
    assert pediatric["min_recall"] == 0.98 and adult["min_recall"] == 0.95
    for entry in (pediatric, adult):
        assert 0 < entry["threshold"] < 1 and entry["temperature"] > 0
        assert entry["validation_metrics"]["recall"] >= entry["min_recall"]
        assert set(entry["validation_intervals"]) >= {"auc", "recall", "specificity"}


def test_it_resumes_from_the_saved_run(trained, sources, tmp_path):
    path, first = trained
    copy = tmp_path / path.name
    shutil.copytree(path.with_suffix(".run"), copy.with_suffix(".run"))
    # Every stage is on disk already: resuming only interpolates, calibrates and saves again.
    card = train(parse_args([*sources, "--out", str(copy), "--name", "tiny-test", "--resume", *FAST]))
    assert card["training"]["finetune_history"] == first["training"]["finetune_history"]
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
    card = train(parse_args(["--data", f"ages={tmp_path / 'ages.csv'}", "--out", str(out), "--branches", "age",
                             "--probe-epochs", "60", "--lr-head", "3e-2", "--epochs", "0", "--age-dropout", "0",
                             "--val-fraction", "0.3", "--no-pretrained", "--workers", "0", "--no-augment"]))
    assert card["uses_age"] is True
    predictor = Predictor.from_checkpoint(out, device="cpu")
    image = decode_image(XRAYS / "normal-1.jpeg")
    young, old = predictor.predict([(image, 30), (image, 75)])
    assert old - young > 0.3


def run_cli(module, *args):
    return run_module(module, *args)  # in this process: tests/base.py says why


def test_it_evaluates_a_folder_and_writes_metrics_and_plots(trained, kermany, tmp_path):
    result = run_cli("ml.cli.evaluate", "--films", str(kermany), "--model", str(trained[0]), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 8
    for key in ("auc", "accuracy", "precision", "recall", "specificity", "f1"):
        assert 0 <= metrics[key] <= 1, key
    for key in ("auc", "accuracy", "precision", "recall", "specificity"):
        low, high = metrics["intervals"][key]
        assert 0 <= low <= high <= 1, key
    matrix = np.asarray(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    assert matrix.sum() == 8 and matrix[1].sum() == 4
    # A folder records no ages: every film takes the most sensitive point, and each point is reported too.
    [(population, row)] = metrics["populations"].items()
    assert row["n"] == row["n_without_age"] == 8
    assert set(metrics["at_each_point"]) == {"pediatric", "adult"}
    for png in ("roc.png", "confusion.png"):
        with Image.open(tmp_path / png) as image:
            assert image.format == "PNG" and image.size[0] > 200
    assert "auc" in result.stdout and "tiny-test" in result.stdout and "most sensitive point" in result.stdout
    assert metrics["ood"] is None  # trained with --no-ood: no gate to report on
    assert metrics["views"] == {}  # a folder records no views


def test_it_evaluates_a_csv_per_population_by_age(trained, adults, tmp_path):
    result = run_cli("ml.cli.evaluate", "--films", str(adults), "--model", str(trained[0]), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["populations"]) == ["adult"] and metrics["populations"]["adult"]["n_without_age"] == 0
    card = json.loads(trained[0].with_suffix(".json").read_text())
    assert metrics["populations"]["adult"]["threshold"] == pytest.approx(card["populations"]["adult"]["threshold"])
    # The CSV records views: each view is measured on its own films (the NIH view shortcut check).
    assert {name: row["n"] for name, row in metrics["views"].items()} == {"AP": 4, "PA": 4}
    assert "| view AP | 4 |" in result.stdout
    with open(tmp_path / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["view"] for r in rows} == {"AP", "PA"} and {r["population"] for r in rows} == {"adult"}
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)
    # --age gives every film that age: the pediatric point.
    result = run_cli("ml.cli.evaluate", "--films", str(adults), "--age", "4", "--model", str(trained[0]),
                     "--out", str(tmp_path / "as-children"))
    metrics = json.loads((tmp_path / "as-children" / "metrics.json").read_text())
    assert list(metrics["populations"]) == ["pediatric"]


def test_it_predicts_images_as_json_lines(trained, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    result = run_cli("ml.cli.predict", str(XRAYS / "normal-1.jpeg"), str(junk), "--age", "4",
                     "--model", str(trained[0]))
    assert result.returncode == 1
    ok, error = [json.loads(line) for line in result.stdout.splitlines()]
    assert ok["label"] in ("NORMAL", "PNEUMONIA") and 0 <= ok["probability"] <= 1
    assert (ok["ood"], ok["ood_reason"], ok["heatmap"]) == (False, "", None)
    assert ok["model"]["name"] == "tiny-test" and len(ok["model"]["weights_sha256"]) == 64
    card = json.loads(trained[0].with_suffix(".json").read_text())
    assert ok["population"] == "pediatric"
    assert ok["threshold"] == pytest.approx(card["populations"]["pediatric"]["threshold"])
    assert error["file"] == str(junk) and "JPEG, PNG or DICOM" in error["error"]
    assert "Traceback" not in result.stderr


def test_it_runs_as_python_dash_m_in_a_new_interpreter(trained):
    # The other tests run the commands in this process (tests/base.py run_module); this one the real way.
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ml.cli.predict", str(XRAYS / "normal-1.jpeg"), "--age", "4",
                             "--model", str(trained[0])], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] in ("NORMAL", "PNEUMONIA")


def test_it_predicts_with_the_same_code_path_as_the_worker(trained):
    predictor = Predictor.from_checkpoint(trained[0], device="cpu")
    image = decode_image(XRAYS / "pneumonia-2.jpeg")
    expected = predictor.assess(image, age=4.0)
    result = json.loads(run_cli("ml.cli.predict", str(XRAYS / "pneumonia-2.jpeg"), "--age", "4",
                                "--model", str(trained[0])).stdout)
    assert result["probability"] == pytest.approx(expected.probability, abs=1e-6)
    assert result["label"] == expected.label and result["warnings"] == expected.warnings
    # assess() (the worker's call) and the batch path give the same probability.
    assert predictor.predict([(image, 4.0)])[0] == pytest.approx(expected.probability, abs=1e-6)


def test_it_writes_heatmaps_and_gives_no_label_to_a_photo(trained, tmp_path):
    from skimage import data as photos

    photo = tmp_path / "astronaut.png"
    Image.fromarray(photos.astronaut()).save(photo)
    result = run_cli("ml.cli.predict", str(XRAYS / "pneumonia-1.jpeg"), str(photo), "--model", str(trained[0]),
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
    result = run_cli("ml.cli.predict", str(XRAYS / "normal-1.jpeg"), "--age", "-2", "--model", str(trained[0]))
    assert result.returncode == 2 and "--age" in result.stderr


def test_it_ablates_branches_and_age_on_pretrained_and_trained_backbones(trained, sources, tmp_path):
    from ml.cli.ablation import main as ablation_main

    out = tmp_path / "ablation.json"
    ablation_main([*sources, "--model", str(trained[0]), "--probe-epochs", "3", "--workers", "0", "--out", str(out)])
    results = json.loads(out.read_text())
    pretrained = {row["branches"] for row in results["heads_on_pretrained_features"]}
    assert pretrained == {"cnn", "vit", "cnn+vit", "cnn+age", "vit+age", "cnn+vit+age", "age"}
    # The tiny checkpoint was trained without a ViT: only its CNN (with and without age) can be ablated.
    assert {row["branches"] for row in results["heads_on_checkpoint_features"]} == {"cnn", "cnn+age", "age"}
    assert results["groups"] == {"kermany": 2, "nih": 2, "adult": 2}
    shift = results["shift_proxies_pretrained"]
    assert {(row["trained_on"], row["held_out"]) for row in shift} == {("kermany", "nih"), ("nih", "kermany")}
    assert all(0 <= auc <= 1 for row in shift for auc in row["val_auc"].values())
    masked = results["checkpoint_age_masked"]
    assert set(masked) == {"with_recorded_ages", "ages_fed_as_missing"}
    assert set(masked["with_recorded_ages"]) == {"kermany", "nih", "adult"}


def test_it_predicts_a_dicom_and_reads_its_age(trained, tmp_path):
    from ..dicoms import bundled, make_dicom

    dicom, ct = tmp_path / "chest.dcm", tmp_path / "ct.dcm"
    dicom.write_bytes(make_dicom("normal-1.jpeg", age="090Y"))
    ct.write_bytes(bundled("CT_small.dcm"))
    result = run_cli("ml.cli.predict", str(dicom), str(ct), "--model", str(trained[0]))
    assert result.returncode == 1
    ok, error = [json.loads(line) for line in result.stdout.splitlines()]
    assert ok["age"] == 90 and ok["age_source"] == "DICOM PatientAge" and ok["label"] in ("NORMAL", "PNEUMONIA")
    assert ok["population"] == "adult"
    assert ok["warnings"][0] == (
        "Age 90 years is outside the ages the model was validated on (1–65 years): its answer is less reliable.")
    # The tiny model was trained with --no-ood; the shipped one carries the gate.
    assert ok["warnings"][1:] == ["This model has no learned out-of-distribution check: only the image checks ran."]
    assert "a CT scan, not a radiograph" in error["error"]
    # The pixels of the JPEG it was made from (stretched to the full 0–255 range) give the same answer.
    jpeg = json.loads(run_cli("ml.cli.predict", str(XRAYS / "normal-1.jpeg"), "--age", "90",
                              "--model", str(trained[0])).stdout)
    assert ok["label"] == jpeg["label"] and ok["probability"] == pytest.approx(jpeg["probability"], abs=0.1)


def test_it_fits_and_measures_the_ood_gate_into_a_checkpoint(trained, sources, tmp_path):
    from ml.cli.fit_ood import main as fit_ood_main

    out = tmp_path / "gated.safetensors"
    fit_ood_main(["--model", str(trained[0]), *sources, "--out", str(out), "--ood-probe-images", "6"])
    card = json.loads(out.with_suffix(".json").read_text())
    report = card["ood"]["report"]
    assert set(report["rejection"]) == {"natural", "other modality", "noise", "blank", "text", "inverted", "crop"}
    assert report["rejection"]["blank"]["rate"] == 1.0  # the image checks alone catch these
    assert 0 <= report["false_rejection_rate_val_b"] <= 1
    assert set(report["false_rejections_val_b"]) == {"kermany", "nih"}  # measured per source
    predictor = Predictor.from_checkpoint(out, device="cpu")
    assert predictor.gate is not None and predictor.gate.distance.threshold == card["ood"]["distance_threshold"]
    # The gate's tensors do not change the classifier.
    image = decode_image(XRAYS / "pneumonia-1.jpeg")
    plain = Predictor.from_checkpoint(trained[0], device="cpu")
    assert predictor.predict([(image, None)]) == pytest.approx(plain.predict([(image, None)]), abs=1e-6)
