"""Site-shift proxies (ml.shift) and the operating points under them (ml.cli.shift)."""

import json

import numpy as np
import pytest
from PIL import Image

from ml.cli.shift import RECALL_FLOOR, measure, stratified_sample
from ml.metrics import sigmoid, summary
from ml.populations import OperatingPoint
from ml.shift import GEOMETRIC, PHOTOMETRIC, SHIFTS, apply, body_box, border_median
from ml.training.data import Sample

from ..base import run_module

BACKGROUND, BRIGHT = 40, 220


def film(size=(200, 160), box=(60, 40, 140, 120)):
    """A synthetic film: a dark background, a bright rectangle, a gradient and a little texture inside it."""
    w, h = size
    a = np.full((h, w), BACKGROUND, dtype=np.uint8)
    left, top, right, bottom = box
    inside = BRIGHT - (np.arange(right - left)[None, :] % 7) * 3 - (np.arange(bottom - top)[:, None] % 5) * 2
    a[top:bottom, left:right] = inside.astype(np.uint8)
    return Image.fromarray(a, mode="L")


def bright_share(image):
    return float((np.asarray(image) > 120).mean())


def test_it_names_every_shift_once_and_documents_each():
    assert set(SHIFTS) == {"none", *PHOTOMETRIC, *GEOMETRIC}
    assert len(PHOTOMETRIC) == 10 and len(GEOMETRIC) == 6
    for name, function in SHIFTS.items():
        assert function.__doc__ and len(function.__doc__.split()) > 5, name


@pytest.mark.parametrize("name", list(SHIFTS))
def test_it_keeps_size_and_mode_and_is_deterministic(name):
    image = film()
    first, second = apply(name, image), apply(name, image.copy())
    assert first.size == image.size and first.mode == "L"
    assert first.tobytes() == second.tobytes()
    assert image.tobytes() == film().tobytes()  # the input is not modified
    if name not in ("none", "tight_frame"):  # tight framing leaves a film that is already tight (below) alone
        assert first.tobytes() != image.tobytes(), name


def test_it_takes_none_as_the_identity():
    image = film()
    assert apply("none", image).tobytes() == image.tobytes()
    rgb = image.convert("RGB")
    assert apply("none", rgb).mode == "L" and apply("none", rgb).tobytes() == image.tobytes()


def test_it_moves_the_gray_levels_the_way_each_photometric_shift_says():
    image = film()
    mean, std = np.asarray(image, float).mean(), np.asarray(image, float).std()

    def stats(name):
        a = np.asarray(apply(name, image), float)
        return a.mean(), a.std()

    assert stats("gamma_0.6")[0] > mean + 10 and stats("gamma_1.6")[0] < mean - 10
    assert stats("brightness_+0.1")[0] == pytest.approx(mean + 25.5, abs=1)
    assert stats("brightness_-0.1")[0] == pytest.approx(mean - 25.5, abs=1)
    assert stats("contrast_0.7")[1] == pytest.approx(0.7 * std, rel=0.02)
    assert stats("contrast_0.7")[0] == pytest.approx(mean, abs=1)  # around the mean
    assert stats("contrast_1.3")[1] == pytest.approx(1.3 * std, rel=0.02)
    noisy = np.asarray(apply("noise_0.03", film((224, 224))), float) - np.asarray(film((224, 224)), float)
    assert np.abs(noisy.mean()) < 0.5 and noisy.std() == pytest.approx(0.03 * 255, rel=0.1)
    edge = np.abs(np.diff(np.asarray(image, float), axis=1)).max()
    assert np.abs(np.diff(np.asarray(apply("blur_1.5", image), float), axis=1)).max() < edge / 2
    # Equalisation: a monotone map of the gray levels that stretches them over the full range.
    before, after = np.asarray(image).ravel(), np.asarray(apply("equalise", image)).ravel()
    order = np.argsort(before, kind="stable")
    assert (np.diff(after[order].astype(int)) >= 0).all()
    assert (after.min(), after.max()) == (0, 255) and np.ptp(after[before > 120]) > np.ptp(before[before > 120])


def test_it_zooms_in_and_out_by_85_percent_of_each_side():
    image = film(size=(200, 200), box=(60, 60, 140, 140))  # 40 % of each side: 16 % of the area
    assert bright_share(image) == pytest.approx(0.16, abs=0.005)
    assert bright_share(apply("zoom_in_85", image)) == pytest.approx(0.16 / 0.85**2, abs=0.01)
    zoomed_out = apply("zoom_out_85", image)
    assert bright_share(zoomed_out) == pytest.approx(0.16 * 0.85**2, abs=0.01)
    # The new margin takes the gray of the film's border, and the content stays centred.
    a = np.asarray(zoomed_out)
    assert border_median(image) == BACKGROUND and (a[:12] == BACKGROUND).all() and (a[:, :12] == BACKGROUND).all()
    rows, cols = np.nonzero(a > 120)
    assert (rows.min() + rows.max()) / 2 == pytest.approx(99.5, abs=1.5)
    assert (cols.min() + cols.max()) / 2 == pytest.approx(99.5, abs=1.5)


def test_it_translates_rotates_and_fills_with_the_border_gray():
    image = film(size=(200, 200), box=(60, 60, 140, 140))
    moved = np.asarray(apply("translate_8", image))
    rows, cols = np.nonzero(moved > 120)
    assert (rows.min(), cols.min()) == (76, 76)  # 8 % of 200 px, right and down
    assert (moved[:16] == BACKGROUND).all() and (moved[:, :16] == BACKGROUND).all()
    rotated = np.asarray(apply("rotate_+8", image))
    assert bright_share(rotated) == pytest.approx(0.16, abs=0.01)  # the same square, turned
    assert rotated[0, 0] == BACKGROUND and rotated[0, -1] == BACKGROUND
    assert not np.array_equal(rotated, np.asarray(apply("rotate_-8", image)))


def test_it_frames_the_body_tightly():
    image = film(size=(200, 160), box=(30, 20, 130, 100))  # off centre, half the width and height
    assert body_box(image) == (30, 20, 130, 100)
    framed = apply("tight_frame", image)
    assert framed.size == image.size and bright_share(framed) > 0.97
    # A small bright marker in a corner does not widen the box; a film that is already tight is left alone.
    marked = np.asarray(image).copy()
    marked[150:153, 190:194] = 255
    assert body_box(Image.fromarray(marked)) == (30, 20, 130, 100)
    tight = film(size=(120, 100), box=(0, 0, 120, 100))
    assert body_box(tight) == (0, 0, 120, 100) and apply("tight_frame", tight).tobytes() == tight.tobytes()


def test_it_samples_each_label_and_population_in_proportion():
    samples = [Sample(path=f"{i}.jpeg", label=int(i % 4 == 0), patient=f"p{i}", age=10.0 if i < 20 else 50.0) for i in range(100)]
    population = {10.0: "pediatric", 50.0: "adult"}

    chosen = stratified_sample(samples, 20, lambda s: population[s.age], seed=0)
    assert len(chosen) == 20 and chosen == stratified_sample(samples, 20, lambda s: population[s.age], seed=0)
    assert sum(s.label for s in chosen) == 5 and sum(s.age == 10.0 for s in chosen) == 4
    assert [s.path for s in chosen] == sorted((s.path for s in chosen), key=lambda p: int(p.split(".")[0]))
    assert stratified_sample(samples, 500, lambda s: "x") == samples


def test_it_measures_every_point_refusals_and_the_best_specificity():
    labels = np.array([0] * 10 + [1] * 10)
    logits = np.concatenate([np.linspace(-4, 1, 10), np.linspace(-1, 4, 10)])
    points = {"pediatric": OperatingPoint("pediatric", 0.2, 1.2, (0, 18), min_recall=0.98),
              "adult": OperatingPoint("adult", 0.5, 1.0, (18, 121), min_recall=0.95)}
    reasons = [""] * 17 + ["refused", "refused", ""]
    row = measure(labels, logits, reasons, points, gate=True)
    assert row["n"] == 20 and row["n_pneumonia"] == 10 and row["refused"] == 2
    assert 0.5 < row["auc"] < 1 and row["auc_interval"][0] <= row["auc"] <= row["auc_interval"][1]
    for name, point in points.items():
        expected = summary(labels, sigmoid(logits / point.temperature), point.threshold)
        got = row["points"][name]
        assert (got["recall"], got["specificity"]) == (expected["recall"], expected["specificity"])
        assert set(got["intervals"]) == {"accuracy", "recall", "specificity", "precision"}
        # The point's own rule on these films: recall at the floor, at the best specificity.
        refit = summary(labels, sigmoid(logits / point.temperature), got["refit_threshold"])
        assert refit["recall"] >= point.min_recall
    # Every pneumonia kept (recall 1 ≥ 0.98): the lowest pneumonia logit is -1, above 6 of the 10 normals.
    assert row["best_specificity_at_recall"][f"{RECALL_FLOOR:g}"] == {"specificity": 0.6, "recall": 1.0}
    assert set(row["best_specificity_at_recall"]) == {"0.95", "0.98"}
    assert measure(labels, logits, reasons, points, gate=False)["refused"] is None


def run_cli(*args):
    return run_module("ml.cli.shift", *args)  # in this process: tests/base.py says why


def test_it_runs_end_to_end_and_writes_every_point_under_every_shift(trained, kermany, adults, tmp_path):
    # The tiny adults' CSV with two children in it: the films fall in two populations by age.
    lines = adults.read_text().splitlines()
    mixed = tmp_path / "mixed.csv"
    rows = [line.split(",") for line in lines[1:]]
    for row in rows[:2]:
        row[2] = "12"
    mixed.write_text("\n".join([lines[0], *(",".join(r).replace("img/", f"{adults.parent}/img/", 1) for r in rows)]))
    out = tmp_path / "shift.json"
    result = run_cli("--model", str(trained[0]), "--films", str(mixed), "--shifts", "gamma_0.6,zoom_out_85",
                     "--out", str(out), "--threads", "1")
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert set(document) == {"model", "points", "shifts", "runs"}
    assert document["model"]["name"] == "tiny-test" and set(document["points"]) == {"pediatric", "adult"}
    assert set(document["shifts"]) == set(SHIFTS)
    entry = document["runs"]["mixed"]
    assert entry["n_total"] == 8 and entry["sample"] is None and entry["skipped"] == []
    assert list(entry["shifts"]) == ["none", "gamma_0.6", "zoom_out_85"]
    assert {k: v["n"] for k, v in entry["subsets"].items()} == {"all": 8, "pediatric": 2, "adult": 6}
    assert entry["subsets"]["pediatric"]["ages"] == [12.0, 12.0]
    for shift, by_subset in entry["shifts"].items():
        assert set(by_subset) == {"all", "pediatric", "adult"}, shift
        for row in by_subset.values():
            assert 0 <= row["auc"] <= 1 and row["refused"] is None  # the tiny model has no gate
            assert set(row["points"]) == {"pediatric", "adult"}
            for point in row["points"].values():
                assert 0 <= point["recall"] <= 1 and 0 <= point["specificity"] <= 1
                assert {"recall", "specificity"} <= set(point["intervals"])
            assert set(row["best_specificity_at_recall"]) == {"0.95", "0.98"}
    assert "| zoom_out_85 |" in result.stdout and "mixed, pediatric (n = 2)" in result.stdout
    # A second run, a folder at one age, a subsample: its own entry beside the first in the same JSON.
    result = run_cli("--model", str(trained[0]), "--films", str(kermany), "--age", "4", "--shifts", "blur_1.5",
                     "--sample", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert set(document["runs"]) == {"mixed", f"{kermany.name}@age4"}
    entry = document["runs"][f"{kermany.name}@age4"]
    assert entry["n_total"] == 8 and entry["sample"]["n"] == 4 and list(entry["subsets"]) == ["all"]
    assert entry["shifts"]["none"]["all"]["n_pneumonia"] == 2 and list(entry["shifts"]) == ["none", "blur_1.5"]


def test_it_refuses_an_unknown_shift(trained, adults, tmp_path):
    result = run_cli("--model", str(trained[0]), "--films", str(adults), "--shifts", "sepia", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown shift" in result.stderr
