"""Dataset loading, deduplication and the patient-grouped split (pure ml/, no Django)."""

from pathlib import Path

import pytest

from ml import data as D

from .factories import XRAYS, make_kermany


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


def test_it_weights_the_positive_class_by_the_imbalance():
    samples = [D.Sample(Path("x"), 1, "p")] * 3 + [D.Sample(Path("y"), 0, "q")]
    assert D.class_weights(samples) == pytest.approx(1 / 3)


def test_it_feeds_training_and_serving_the_same_preprocessing():
    from ml.config import get_preset
    from ml.decode import decode_image
    from ml.preprocessing import image_to_tensor

    config = get_preset("compact")
    sample = D.Sample(XRAYS / "pneumonia-2.jpeg", 1, "p", age=None)
    image, age, label = D.XrayDataset([sample], config)[0]
    assert image.equal(image_to_tensor(decode_image(sample.path), config))
    assert age.tolist() == [0.0, 1.0] and label.item() == 1.0
    augmented, _, _ = D.XrayDataset([sample], config, augment=D.training_augmentation())[0]
    assert augmented.shape == image.shape
