"""Predict chest X-rays from the command line, through the worker's code path.

    python -m ml.predict IMAGE... [--age YEARS] [--model PATH]

IMAGE may be a JPEG, PNG or DICOM file; a DICOM's PatientAge is used when --age is
not given. Prints one JSON object per line per image: file, label, probability,
threshold, age (and where it came from), intended-use warnings, model (name + weights sha256). Unreadable
or non-image files give a JSON error line and a non-zero exit status.
"""

import argparse
import json
import sys
from pathlib import Path

from .checkpoint import DEFAULT_WEIGHTS
from .inference import Predictor
from .intended_use import intended_use_warnings
from .preprocessing import ImageDecodeError, decode_with_tags


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--age", type=float, help="age in years at acquisition (0-120)")
    parser.add_argument("--model", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.age is not None and not 0 <= args.age <= 120:
        parser.error("--age must be between 0 and 120 years")

    predictor = Predictor.load(args.model, device=args.device)
    model = {"name": predictor.name, "weights_sha256": predictor.weights_sha256}
    failures = 0
    for path in args.images:
        try:
            image, info = decode_with_tags(path)
        except (ImageDecodeError, OSError) as exc:
            failures += 1
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(json.dumps({"file": str(path), "error": message}), flush=True)
            continue
        age, age_source = args.age, "--age" if args.age is not None else None
        if age is None and info.dicom is not None and info.dicom.age_years is not None:
            age, age_source = info.dicom.age_years, "DICOM PatientAge"
        [probability] = predictor.predict([(image, age)])
        print(json.dumps({
            "file": str(path),
            "label": predictor.label(probability),
            "probability": round(probability, 6),
            "threshold": predictor.threshold,
            "age": age,
            "age_source": age_source,
            "warnings": intended_use_warnings(
                predictor.card, age_years=age, view=info.dicom.view_position if info.dicom else None
            ),
            "model": model,
        }), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
