"""Pointing game and mass ratio on synthetic maps with known answers; the re-read and box loaders."""

import math

import numpy as np
import pytest
from PIL import Image

from ml.cli.evaluate import format_rereads, localise, reread_aucs
from ml.explain import Heatmaps
from ml.inference import Assessment, Screened
from ml.localisation import (
    box_mask,
    chance_pointing,
    film_record,
    format_summary,
    mass_ratio,
    pointing_hit,
    summarise,
    to_file_pixels,
)
from ml.training.data import Sample
from ml.training.rsna import load_boxes, load_rereads

SHAPE = (100, 200)  # (height, width) of the "file"
BOX = (50.0, 20.0, 40.0, 30.0)  # x, y, w, h: columns 50..89, rows 20..49 → 1200 of 20000 pixels


def peak_at(row, col, shape=SHAPE):
    heat = np.zeros(shape)
    heat[row, col] = 1.0
    return heat


def test_it_counts_the_pixels_whose_centre_is_in_a_box():
    mask = box_mask([BOX], SHAPE)
    assert mask.sum() == 40 * 30
    assert mask[20, 50] and mask[49, 89] and not mask[19, 50] and not mask[20, 90]
    assert chance_pointing([BOX], SHAPE) == pytest.approx(1200 / 20000)
    # Overlapping boxes count once (their union).
    assert chance_pointing([BOX, BOX, (70.0, 20.0, 40.0, 30.0)], SHAPE) == pytest.approx(30 * 60 / 20000)


def test_it_scores_a_peak_inside_a_box_as_a_hit_and_outside_as_a_miss():
    assert pointing_hit(peak_at(30, 60), [BOX])
    assert not pointing_hit(peak_at(10, 60), [BOX])
    assert not pointing_hit(peak_at(30, 90), [BOX])  # first column past the box
    assert pointing_hit(peak_at(10, 10), [BOX, (0.0, 0.0, 20.0, 20.0)])  # any box


def test_it_gives_a_uniform_map_a_mass_ratio_of_one():
    assert mass_ratio(np.full(SHAPE, 0.3), [BOX]) == pytest.approx(1.0)


def test_it_gives_a_map_with_all_its_mass_in_the_box_one_over_the_area_share():
    heat = box_mask([BOX], SHAPE).astype(float) * 0.7
    heat[0, 0] = -5.0  # negative values are not mass
    assert mass_ratio(heat, [BOX]) == pytest.approx(20000 / 1200)
    assert math.isnan(mass_ratio(np.zeros(SHAPE), [BOX]))  # no mass


def test_it_resizes_a_lower_resolution_map_to_the_file_first():
    # A 10×20 map whose one hot cell covers file rows 30..39, columns 60..69 (inside BOX).
    small = np.zeros((10, 20))
    small[3, 6] = 1.0
    assert to_file_pixels(small, SHAPE).shape == SHAPE
    assert pointing_hit(small, [BOX], SHAPE)
    assert not pointing_hit(small, [(0.0, 0.0, 40.0, 20.0)], SHAPE)
    assert mass_ratio(np.full((7, 7), 2.0), [BOX], SHAPE) == pytest.approx(1.0)
    # A square model-sized map stretches over a non-square file: the hot cell's file position follows.
    square = np.zeros((4, 4))
    square[0, 3] = 1.0  # top right quarter of the model's input → file columns 150..199, rows 0..24
    assert pointing_hit(square, [(150.0, 0.0, 50.0, 25.0)], SHAPE)
    assert chance_pointing([BOX], SHAPE) == pytest.approx(0.06)


def test_it_summarises_rates_and_ratios_with_the_chance_baseline():
    inside, outside = peak_at(30, 60), peak_at(90, 190)
    records = [film_record({"combined": inside, "cnn": outside, "vit": None}, [BOX], SHAPE, label="PNEUMONIA"),
               film_record({"combined": inside, "cnn": inside, "vit": None}, [BOX], SHAPE, label="NORMAL")]
    assert records[0]["label"] == "PNEUMONIA" and "vit" not in records[0]["hit"]
    result = summarise(records)
    assert result["n"] == 2
    assert result["chance"]["mean"] == pytest.approx(0.06)
    combined, cnn = result["maps"]["combined"], result["maps"]["cnn"]
    assert list(result["maps"]) == ["combined", "cnn"]
    assert combined["pointing"] == 1.0 and combined["pointing_interval"] == [1.0, 1.0]
    assert combined["pointing_minus_chance"] == pytest.approx(0.94)
    assert combined["mass_ratio"] == pytest.approx(20000 / 1200)
    assert cnn["pointing"] == 0.5 and cnn["n"] == 2
    low, high = cnn["pointing_interval"]
    assert low == 0.0 and high == 1.0
    assert cnn["mass_ratio"] == pytest.approx(0.5 * 20000 / 1200)
    table = format_summary(result)
    assert "n = 2 films" in table and "| combined | 2 | 1.000 [1.000, 1.000]" in table
    assert summarise([]) == {"n": 0, "chance": {"mean": None, "interval": None}, "maps": {}}
    assert "n = 0 films" in format_summary(summarise([]))


def test_it_is_deterministic_and_bounds_the_mean_mass_ratio():
    rng = np.random.default_rng(3)
    records = [film_record({"combined": rng.random((8, 8))}, [BOX], SHAPE) for _ in range(20)]
    first, second = summarise(records), summarise(records)
    assert first == second
    row = first["maps"]["combined"]
    assert row["mass_ratio_interval"][0] <= row["mass_ratio"] <= row["mass_ratio_interval"][1]
    assert math.isfinite(row["mass_ratio"])


RSNA_HEADER = "path,nih_label,rsna_class"
BOXES_HEADER = "path,source,x,y,w,h"


def test_it_loads_the_rereads_keyed_by_file_name(tmp_path):
    path = tmp_path / "rsna.csv"
    path.write_text(f"{RSNA_HEADER}\n"
                    "NORMAL/00001362_001.jpeg,NORMAL,No Lung Opacity / Not Normal\n"
                    "NORMAL/00001362_008.jpeg,NORMAL,Normal\n"
                    "PNEUMONIA/00000001_000.jpeg,PNEUMONIA,Lung Opacity\n")
    assert load_rereads(path) == {"00001362_001.jpeg": "not_normal", "00001362_008.jpeg": "normal",
                                  "00000001_000.jpeg": "opacity"}


def test_it_loads_the_boxes_of_a_film_together(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text(f"{BOXES_HEADER}\n"
                    "NORMAL/00003005_022.jpeg,rsna,303.0,271.5,73.0,97.5\n"
                    "NORMAL/00003005_022.jpeg,rsna,305.5,197.5,43.5,45.0\n"
                    "PNEUMONIA/00000001_000.jpeg,nih,10,20,30,40\n")
    assert load_boxes(path) == {"00003005_022.jpeg": [(303.0, 271.5, 73.0, 97.5), (305.5, 197.5, 43.5, 45.0)],
                                "00000001_000.jpeg": [(10.0, 20.0, 30.0, 40.0)]}


def test_it_names_a_missing_column(tmp_path):
    rereads = tmp_path / "rsna.csv"
    rereads.write_text("path,nih_label\nNORMAL/a.jpeg,NORMAL\n")
    with pytest.raises(ValueError, match="missing column.*rsna_class"):
        load_rereads(rereads)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("path,source,x,y,w\nNORMAL/a.jpeg,rsna,1,2,3\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) h "):
        load_boxes(boxes)


def test_it_refuses_an_unknown_class_or_a_bad_box(tmp_path):
    rereads = tmp_path / "rsna.csv"
    rereads.write_text(f"{RSNA_HEADER}\nNORMAL/a.jpeg,NORMAL,Opaque\n")
    with pytest.raises(ValueError, match="line 2: unknown rsna_class 'Opaque'"):
        load_rereads(rereads)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"{BOXES_HEADER}\nNORMAL/a.jpeg,rsna,1,2,three,4\n")
    with pytest.raises(ValueError, match="line 2: x, y, w, h must be numbers"):
        load_boxes(boxes)
    boxes.write_text(f"{BOXES_HEADER}\nNORMAL/a.jpeg,rsna,1,2,0,4\n")
    with pytest.raises(ValueError, match="positive width and height"):
        load_boxes(boxes)


def test_it_compares_the_auc_on_rereads_with_the_auc_on_the_data_labels():
    # Re-reads: opacity a, b; normal c, d; not_normal e. The scores rank them perfectly; the data's labels do not.
    names = ["a", "b", "c", "d", "e", "f"]
    labels = [1, 0, 1, 0, 1, 0]
    scores = [0.9, 0.8, 0.2, 0.1, 0.5, 0.3]
    read = [Sample(path=f"/x/{name}.jpeg", label=label, patient=name) for name, label in zip(names, labels)]
    answers = [Screened(0.0, score, 0.5, "adult") for score in scores]
    rereads = {"a.jpeg": "opacity", "b.jpeg": "opacity", "c.jpeg": "normal", "d.jpeg": "normal",
               "e.jpeg": "not_normal", "elsewhere.jpeg": "opacity"}
    result = reread_aucs(read, answers, rereads)
    assert result["n_reread"] == 5 and result["classes"] == {"opacity": 2, "normal": 2, "not_normal": 1}
    versus_normal = result["opacity_vs_normal"]
    assert versus_normal["reread"]["n"] == 4 and versus_normal["reread"]["auc"] == 1.0
    assert versus_normal["data_labels"]["auc"] == 0.75  # labels a=1, c=1 vs b=0, d=0: 3 of 4 pairs in order
    assert result["opacity_vs_rest"]["reread"]["n"] == 5 and result["opacity_vs_rest"]["reread"]["auc"] == 1.0
    assert "radiologists 1.0000" in format_rereads(result)


class FakePredictor:
    """assess_batch as the worker calls it; every map peaks at the top left of the model's input."""

    def __init__(self):
        self.calls = []

    def assess_batch(self, items, *, explain=False):
        self.calls.append((len(items), explain))
        heat = np.zeros((4, 4))
        heat[0, 0] = 1.0
        answers = []
        for _image, _, age, _ in items:
            if age is None:
                answers.append(Assessment(ood=True, ood_reason="refused"))
            else:
                answers.append(Assessment(probability=0.9, label="PNEUMONIA", heatmaps=Heatmaps(heat, heat, None)))
        return answers


def test_it_measures_the_maps_the_worker_shows_on_the_films_with_boxes(tmp_path):
    samples = []
    for name, age in (("hit", 40.0), ("miss", 40.0), ("refused", None), ("no_boxes", 40.0)):
        path = tmp_path / f"{name}.jpeg"
        Image.new("L", (160, 80), 128).save(path)
        samples.append(Sample(path=path, label=1, patient=name, age=age))
    boxes = {"hit.jpeg": [(0.0, 0.0, 40.0, 20.0)], "miss.jpeg": [(80.0, 40.0, 80.0, 40.0)],
             "refused.jpeg": [(0.0, 0.0, 160.0, 80.0)]}
    predictor = FakePredictor()
    result = localise(predictor, samples, boxes, batch_size=2)
    assert predictor.calls == [(2, True), (1, True)]
    assert result["n_with_boxes"] == 3 and [r["reason"] for r in result["refused"]] == ["refused"]
    combined = result["all"]["maps"]["combined"]
    assert result["all"]["n"] == 2 and combined["pointing"] == 0.5 and "vit" not in result["all"]["maps"]
    assert result["all"]["chance"]["mean"] == pytest.approx((800 / 12800 + 3200 / 12800) / 2)
    assert result["answered_pneumonia"]["n"] == 2 and result["skipped"] == []
