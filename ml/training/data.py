"""Training data from several sources: each a Kermany-layout folder or a CSV with ages.

A *source* is one named collection (``kermany=../chest_xray/train``, ``nih=../nih/labels.csv``).
Each is deduplicated by content and split by patient on its own, so every source has its own
patient-grouped validation split; training draws from the sources with weights that balance
source, label and (where recorded) view, so neither the source nor a view can stand in for the
label. A torch Dataset runs the shared preprocessing plus training-time augmentation.
"""

import csv
import hashlib
import math
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..checkpoint import file_sha256
from ..constants import AGE_MAX_YEARS, AGE_MIN_YEARS
from ..decode import ImageDecodeError, decode_image, decode_with_tags
from ..preprocessing import age_to_tensor, image_to_tensor

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
    patient: str  # unique within its source
    age: float = None  # years; None when the source has no age
    source: str = ""
    view: str = ""  # PA / AP when the source records it


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
    """Samples of a CSV with columns ``path,label[,age][,patient][,view]`` (paths relative to the CSV)."""
    csv_path = Path(csv_path)
    samples = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            label = row["label"].strip().upper()
            label = LABELS[label] if label in LABELS else int(label)
            path = (csv_path.parent / row["path"]).resolve()
            patient = (row.get("patient") or "").strip() or patient_of(path)
            view = (row.get("view") or "").strip().upper()
            samples.append(Sample(path, label, patient, parse_age(row.get("age")), view=view))
    return samples


def parse_age(text):
    """A CSV's age in years; None when empty, not a number or outside 0–120."""
    try:
        age = float(str(text or "").strip())
    except ValueError:
        return None
    return age if math.isfinite(age) and AGE_MIN_YEARS <= age <= AGE_MAX_YEARS else None


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
    A patient's class is the majority label of their films.
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


# --- several sources ------------------------------------------------------------------------

# Validation share per known source: the Kermany split is v2's (15 %), so the two models are
# compared on the same films; NIH is small, so a quarter of its patients validate.
DEFAULT_VAL_FRACTION = {"kermany": 0.15, "nih": 0.25}


@dataclass
class SourceData:
    name: str
    path: Path
    train: list
    val: list
    digest: str
    n_files: int
    n_duplicates: int
    val_fraction: float

    def info(self):
        def count(samples):
            return {"images": len(samples), "patients": len({s.patient for s in samples}),
                    "pneumonia": sum(s.label for s in samples),
                    "with_age": sum(s.age is not None for s in samples)}

        ages = [s.age for s in self.train + self.val if s.age is not None]
        return {"path": str(self.path), "sha256": self.digest, "n_files": self.n_files,
                "n_duplicates_dropped": self.n_duplicates, "val_fraction": self.val_fraction,
                "train": count(self.train), "val": count(self.val),
                "age_range_years": [min(ages), max(ages)] if ages else None}


def parse_source(spec):
    """``name=path`` (or a bare path, named after its folder) → (name, Path)."""
    name, sep, path = str(spec).partition("=")
    if not sep:
        path = Path(spec)
        name = (path.parent.name if path.suffix.lower() == ".csv" else path.name) or "data"
        return name, path
    return name.strip(), Path(path.strip())


def load_source(name, path, *, val_fraction=None, seed=0):
    """One source, deduplicated and split by patient; every sample carries the source's name."""
    samples = [replace(s, source=name) for s in load_samples(path)]
    kept, dropped = deduplicate(samples)
    fraction = DEFAULT_VAL_FRACTION.get(name, 0.15) if val_fraction is None else val_fraction
    train, val = split_by_patient(kept, val_fraction=fraction, seed=seed)
    return SourceData(name, Path(path), train, val, dataset_digest(kept), len(samples), len(dropped), fraction)


def balance_weights(samples, source_share=None):
    """Per-sample weights: each source gets its share of the total (equal by default), each label half
    of its source, and each recorded view an equal part of its label, so that in the weighted draw
    neither the source (nor the age-missing flag that marks it) nor the view predicts the label."""
    sources = sorted({s.source for s in samples})
    share = {name: (source_share or {}).get(name, 1.0) for name in sources}
    total_share = sum(share.values())
    cells = {}
    for index, s in enumerate(samples):
        cells.setdefault(s.source, {}).setdefault(s.label, {}).setdefault(s.view, []).append(index)
    weights = np.zeros(len(samples))
    for name, labels in cells.items():
        for views in labels.values():
            for members in views.values():
                weights[members] = share[name] / total_share / len(labels) / len(views) / len(members)
    return weights * len(samples)


class XrayDataset(Dataset):
    """(image tensor, age tensor, label) per sample; ``augment(image, rng)`` for training views.

    ``age_dropout`` feeds a recorded age as missing with that probability, so the model also
    works when no age is given (and the missing flag cannot mark one source).
    """

    def __init__(self, samples, config, augment=None, *, seed=0, age_dropout=0.0):
        self.samples = list(samples)
        self.config = config
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.age_dropout = age_dropout

    def __len__(self):
        return len(self.samples)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, index):
        sample = self.samples[index]
        # A loader's worker gets a fresh seed each epoch from the loader's generator; in-process, the epoch.
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng((self.seed, worker.seed if worker else self.epoch, index))
        image = decode_image(sample.path)
        if self.augment is not None:
            image = self.augment(image, rng)
        age = sample.age
        if age is not None and self.age_dropout and rng.random() < self.age_dropout:
            age = None
        return (
            image_to_tensor(image, self.config),
            age_to_tensor([age])[0],
            torch.tensor(float(sample.label)),
        )


def readable_batches(samples, batch_size, skipped, desc):
    """Batches of (sample, image, info) for the films that decode; the others go to ``skipped``."""
    for start in tqdm(range(0, len(samples), batch_size), desc=desc, file=sys.stderr, leave=False):
        batch = []
        for sample in samples[start : start + batch_size]:
            try:
                image, info = decode_with_tags(sample.path)
            except ImageDecodeError as exc:
                skipped.append({"file": str(sample.path), "error": str(exc)})
                continue
            batch.append((sample, image, info))
        yield batch
