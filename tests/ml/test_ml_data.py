"""Dataset loading, deduplication and the patient-grouped split (pure ml/, no Django)."""

from pathlib import Path

import pytest

from ml.training import data as D

from ..factories import XRAYS, make_kermany


@pytest.mark.parametrize(
    "name,patient",
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("person1_virus_11_2.jpeg", "person1"),
        ("IM-0117-0001.jpeg", "IM-0117"),
        ("IM-0656-0001-0001.jpeg", "IM-0656"),
        ("NORMAL2-IM-0656-0001.jpeg", "NORMAL2-IM-0656"),
        ("scan.png", "scan"),
    ],
)
def test_it_reads_the_patient_from_the_file_name(name, patient):
    assert D.patient_of(name) == patient


def test_it_scans_the_kermany_layout_and_drops_duplicates(tmp_path):
    root = make_kermany(tmp_path, {
        "NORMAL/IM-0001-0001.jpeg": "normal-1.jpeg",
        "NORMAL/IM-0002-0001.jpeg": "normal-2.jpeg",
        "NORMAL/IM-0003-0001.jpeg": "normal-2.jpeg",  # byte-identical copy
        "PNEUMONIA/person1_virus_1.jpeg": "pneumonia-1.jpeg",
        "PNEUMONIA/person2_bacteria_2.jpeg": "pneumonia-2.jpeg",
    })
    samples = D.scan_folder(root)
    assert [s.label for s in samples] == [0, 0, 0, 1, 1]
    kept, dropped = D.deduplicate(samples)
    assert len(kept) == 4 and [s.path.name for s in dropped] == ["IM-0003-0001.jpeg"]
    assert D.dataset_digest(kept) == D.dataset_digest(list(reversed(kept)))


def test_it_reads_class_folders_in_any_case(tmp_path):
    root = make_kermany(tmp_path, {"normal/a.jpeg": "normal-1.jpeg", "Pneumonia/b.png": "pneumonia-1.jpeg"})
    (root / "normal" / ".DS_Store").write_bytes(b"junk")  # not an image suffix: not a sample
    assert [(s.path.name, s.label) for s in D.scan_folder(root)] == [("a.jpeg", 0), ("b.png", 1)]


def test_it_refuses_a_folder_without_the_class_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="NORMAL"):
        D.scan_folder(tmp_path)


def test_it_never_puts_a_patient_on_both_sides_of_the_split():
    samples = [
        D.Sample(Path(f"PNEUMONIA/person{p}_virus_{i}.jpeg"), 1, f"person{p}") for p in range(300) for i in range(3)
    ] + [D.Sample(Path(f"NORMAL/IM-{p:04d}-000{i}.jpeg"), 0, f"IM-{p:04d}") for p in range(100) for i in range(2)]
    train, val = D.split_by_patient(samples, val_fraction=0.2, seed=0)
    assert {s.patient for s in train}.isdisjoint({s.patient for s in val})
    assert len(train) + len(val) == len(samples)
    assert 0.1 < len(val) / len(samples) < 0.3
    assert D.split_by_patient(samples, 0.2, seed=0) == (train, val)
    assert D.split_by_patient(samples, 0.2, seed=1) != (train, val)


def test_it_reads_a_csv_with_ages(tmp_path):
    root = make_kermany(tmp_path / "img", {"a.jpeg": "normal-1.jpeg", "b.jpeg": "pneumonia-1.jpeg"})
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label,age\nimg/a.jpeg,NORMAL,34\nimg/b.jpeg,1,\n")
    a, b = D.read_csv(csv_path)
    assert (a.label, a.age, a.path) == (0, 34.0, (root / "a.jpeg").resolve())
    assert (b.label, b.age) == (1, None)


def test_it_reads_a_csv_age_that_is_not_a_valid_age_as_missing(tmp_path):
    make_kermany(tmp_path / "img", {"a.jpeg": "normal-1.jpeg", "b.jpeg": "normal-2.jpeg", "c.jpeg": "pneumonia-1.jpeg"})
    (tmp_path / "labels.csv").write_text("path,label,age,view\nimg/a.jpeg,0,abc,pa\nimg/b.jpeg,0,150,AP\nimg/c.jpeg,1,nan,\n")
    assert [(s.age, s.view) for s in D.read_csv(tmp_path / "labels.csv")] == [(None, "PA"), (None, "AP"), (None, "")]


def test_it_loads_each_source_split_by_its_own_patients(kermany, adults):
    children = D.load_source("kermany", kermany, seed=0)
    grown_ups = D.load_source("nih", adults, seed=0)
    assert (children.val_fraction, grown_ups.val_fraction) == (0.15, 0.25)  # the built-in defaults
    for source in (children, grown_ups):
        assert {s.source for s in source.train + source.val} == {source.name}
        assert {s.patient for s in source.train}.isdisjoint({s.patient for s in source.val})
        assert {s.label for s in source.val} == {0, 1}
    assert all(s.age is None for s in children.train) and all(s.age >= 30 for s in grown_ups.train)
    info = grown_ups.info()
    assert info["age_range_years"] == [30.0, 65.0] and info["train"]["with_age"] == len(grown_ups.train)
    assert D.parse_source(f"nih={adults}") == ("nih", adults)
    assert D.parse_source(str(kermany)) == (kermany.name, kermany)


def weighted_share(samples, weights, where):
    return sum(w for s, w in zip(samples, weights) if where(s)) / sum(weights)


def test_it_balances_source_label_and_view_so_none_predicts_another():
    def films(source, label, view, n, age=None):
        return [D.Sample(Path(f"{source}{label}{view}{i}"), label, f"{source}{i}", age, source, view) for i in range(n)]

    # Kermany-like: 3 pneumonia per normal, no view; NIH-like: AP mostly among the normals.
    samples = (films("k", 1, "", 300) + films("k", 0, "", 100)
               + films("n", 0, "AP", 66, 50) + films("n", 0, "PA", 34, 50)
               + films("n", 1, "AP", 45, 50) + films("n", 1, "PA", 55, 50))
    weights = D.balance_weights(samples)
    assert weights.mean() == pytest.approx(1.0)
    assert weighted_share(samples, weights, lambda s: s.source == "k") == pytest.approx(0.5)
    for source in ("k", "n"):  # within each source, the label is a coin flip: the missing-age flag tells nothing
        mine = [(s, w) for s, w in zip(samples, weights) if s.source == source]
        assert weighted_share(*zip(*mine), lambda s: s.label == 1) == pytest.approx(0.5)
    nih = [(s, w) for s, w in zip(samples, weights) if s.source == "n"]
    for label in (0, 1):  # and AP is as common among the normals as among the pneumonias
        group = [(s, w) for s, w in nih if s.label == label]
        assert weighted_share(*zip(*group), lambda s: s.view == "AP") == pytest.approx(0.5)
    tilted = D.balance_weights(samples, {"k": 3.0, "n": 1.0})
    assert weighted_share(samples, tilted, lambda s: s.source == "k") == pytest.approx(0.75)


def test_it_feeds_training_and_serving_the_same_preprocessing():
    from ml.config import get_preset
    from ml.decode import decode_image
    from ml.preprocessing import image_to_tensor
    from ml.training.augment import augment

    config = get_preset("lite0-dinov2s8")
    sample = D.Sample(XRAYS / "pneumonia-2.jpeg", 1, "p", age=None)
    image, age, label = D.XrayDataset([sample], config)[0]
    assert image.equal(image_to_tensor(decode_image(sample.path), config))
    assert age.tolist() == [0.0, 1.0] and label.item() == 1.0
    augmented, _, _ = D.XrayDataset([sample], config, augment=augment)[0]
    assert augmented.shape == image.shape and not augmented.equal(image)


def test_it_feeds_a_recorded_age_as_missing_at_the_dropout_rate():
    from ml.config import get_preset

    config = get_preset("lite0-dinov2s8")
    samples = [D.Sample(XRAYS / "normal-1.jpeg", 0, f"p{i}", age=40.0) for i in range(200)]
    dataset = D.XrayDataset(samples, config, age_dropout=0.3)
    missing = [dataset[i][1][1].item() for i in range(200)]
    assert 0.2 < sum(missing) / 200 < 0.4
    assert all(dataset[i][1].tolist() == [0.0, 1.0] or dataset[i][1][0].item() == pytest.approx(40 / 120)
               for i in range(20))
