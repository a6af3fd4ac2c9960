"""Radiologists' re-reads (RSNA Pneumonia Detection Challenge) and opacity boxes for the NIH films.

``rsna.csv``: ``path,nih_label,rsna_class`` — ``rsna_class`` one of ``Lung Opacity``, ``Normal``,
``No Lung Opacity / Not Normal``. ``boxes.csv``: ``path,source,x,y,w,h`` — boxes in the file's
pixels, origin top left (``source`` ``rsna`` or ``nih``). Both are keyed here by the image's file
name (``Path(path).name``; NIH file names are unique), so they match the films of any CSV or folder
that holds the same files (``Path(sample.path).name``).
"""

import csv
from pathlib import Path

REREAD_CLASSES = {
    "lung opacity": "opacity",
    "normal": "normal",
    "no lung opacity / not normal": "not_normal",
}
REREAD_COLUMNS = ("path", "rsna_class")
BOX_COLUMNS = ("path", "x", "y", "w", "h")


def _rows(csv_path, required):
    """The CSV's rows as dicts, after checking that every required column is in its header."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)}"
                             f" (expected {', '.join(required)}; found {', '.join(header) or 'no header'})")
        reader.fieldnames = header
        yield from enumerate(reader, start=2)


def load_rereads(csv_path):
    """{image file name: "opacity" | "normal" | "not_normal"} from ``rsna.csv``."""
    rereads = {}
    for line, row in _rows(csv_path, REREAD_COLUMNS):
        text = (row["rsna_class"] or "").strip()
        if text.lower() not in REREAD_CLASSES:
            raise ValueError(f"{csv_path}, line {line}: unknown rsna_class {text!r}"
                             f" (expected one of {', '.join(repr(k) for k in REREAD_CLASSES)}, any case)")
        rereads[Path(row["path"].strip()).name] = REREAD_CLASSES[text.lower()]
    return rereads


def load_boxes(csv_path):
    """{image file name: [(x, y, w, h), ...]} in file pixels from ``boxes.csv`` (several rows per film add up)."""
    boxes = {}
    for line, row in _rows(csv_path, BOX_COLUMNS):
        try:
            box = tuple(float(row[key]) for key in ("x", "y", "w", "h"))
        except (TypeError, ValueError):
            raise ValueError(f"{csv_path}, line {line}: x, y, w, h must be numbers") from None
        if box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{csv_path}, line {line}: a box needs a positive width and height")
        boxes.setdefault(Path(row["path"].strip()).name, []).append(box)
    return boxes
