"""Datasets: the Kermany folder layout (``{NORMAL,PNEUMONIA}/*.jpeg``) or a CSV with ages.

Deduplication by content, a patient-grouped train/validation split, and a torch
Dataset that runs the shared preprocessing (plus training-time augmentation).
"""

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import RandomAffine

from .checkpoint import file_sha256
from .decode import decode_image
from .preprocessing import age_to_tensor, image_to_tensor

LABELS = {"NORMAL": 0, "PNEUMONIA": 1}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}

_PATIENT_PATTERNS = [
    re.compile(r"^(person\d+)_"),  # personN_bacteria_M.jpeg / personN_virus_M.jpeg
    re.compile(r"^((?:NORMAL\d+-)?IM-\d+)-"),  # IM-NNNN-MMMM.jpeg / NORMAL2-IM-NNNN-MMMM.jpeg
]


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    patient: str
    age: float = None  # years; None when the source has no age


def patient_of(path):
    """Patient key from a Kermany file name; the file stem when the name carries none."""
    name = Path(path).name
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.group(1)
    return Path(path).stem


def scan_folder(root):
    """Samples of a ``{NORMAL,PNEUMONIA}/`` folder (any case), sorted by path (deterministic)."""
    root = Path(root)
    folders = {p.name.upper(): p for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}
    samples = []
    for label_name, label in LABELS.items():
        folder = folders.get(label_name)
        if folder is None:
            raise FileNotFoundError(f"{root / label_name} is missing: expected {root}/NORMAL and {root}/PNEUMONIA")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(path, label, patient_of(path)))
    return samples


def read_csv(csv_path):
    """Samples of a CSV with columns ``path,label[,age][,patient]`` (paths relative to the CSV)."""
    csv_path = Path(csv_path)
    samples = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            label = row["label"].strip().upper()
            label = LABELS[label] if label in LABELS else int(label)
            path = (csv_path.parent / row["path"]).resolve()
            age = row.get("age", "").strip()
            patient = row.get("patient", "").strip() or patient_of(path)
            samples.append(Sample(path, label, patient, float(age) if age else None))
    return samples


def load_samples(source):
    source = Path(source)
    return read_csv(source) if source.suffix.lower() == ".csv" else scan_folder(source)


def deduplicate(samples):
    """Keep the first sample of each group of byte-identical files; returns (kept, dropped)."""
    seen, kept, dropped = set(), [], []
    for sample in samples:
        digest = file_sha256(sample.path)
        (dropped if digest in seen else kept).append(sample)
        seen.add(digest)
    return kept, dropped


def dataset_digest(samples):
    """One hash of the file list and contents: names the training data in the model card."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: str(s.path)):
        digest.update(f"{sample.path.parent.name}/{sample.path.name}:{sample.label}:".encode())
        digest.update(file_sha256(sample.path).encode())
    return digest.hexdigest()


def split_by_patient(samples, val_fraction=0.15, seed=0):
    """Deterministic split in which no patient is on both sides, stratified by class.

    Within each class, patients are ordered by a seeded hash of their key and the first
    ``val_fraction`` of them (at least one, when the class has two or more) go to validation.
    """
    by_patient = {}
    for sample in samples:
        by_patient.setdefault(sample.patient, []).append(sample)

    def order(patient):
        return hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()

    val_patients = set()
    for label in sorted({s.label for s in samples}):
        patients = sorted(
            (p for p, group in by_patient.items() if round(sum(s.label for s in group) / len(group)) == label),
            key=order,
        )
        n_val = round(val_fraction * len(patients))
        if len(patients) >= 2:
            n_val = min(max(n_val, 1), len(patients) - 1)
        val_patients.update(patients[:n_val])
    train = [s for s in samples if s.patient not in val_patients]
    val = [s for s in samples if s.patient in val_patients]
    return train, val


def class_weights(samples):
    """Positive-class weight for BCE (n_negative / n_positive)."""
    positives = sum(s.label for s in samples)
    negatives = len(samples) - positives
    return negatives / max(positives, 1)


def training_augmentation():
    # Small rotations, shifts and zoom. No flips: a mirrored chest moves the heart to the right.
    return RandomAffine(degrees=10, translate=(0.06, 0.06), scale=(0.9, 1.1), fill=0)


class XrayDataset(Dataset):
    def __init__(self, samples, config, augment=None):
        self.samples = list(samples)
        self.config = config
        self.augment = augment

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        sample = self.samples[index]
        image = decode_image(sample.path)
        if self.augment is not None:
            image = self.augment(image)
        return (
            image_to_tensor(image, self.config),
            age_to_tensor([sample.age])[0],
            torch.tensor(float(sample.label)),
        )
