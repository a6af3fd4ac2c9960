"""Predict chest X-rays from the command line, through the worker's code path.

    python -m ml.cli.predict IMAGE... [--age YEARS] [--model PATH] [--heatmap DIR]

IMAGE may be a JPEG, PNG or DICOM file; a DICOM's PatientAge is used when --age is
not given. Prints one JSON object per line per image: file, label, probability,
population and threshold (the operating point picked by the age), ood and ood_reason (an input the model was not validated on gets no label),
age (and where it came from), intended-use warnings, heatmap (a PNG path, with
--heatmap DIR) and model (name + weights sha256). Unreadable or non-image files give a
JSON error line and a non-zero exit status.
"""

import argparse
import json
import sys
from pathlib import Path

from .. import cli_args as flags
from ..decode import ImageDecodeError, decode_with_tags
from ..explain import heatmap_png
from ..inference import Predictor


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path)
    flags.add_age(parser)
    flags.add_model(parser)
    flags.add_device(parser)
    parser.add_argument("--heatmap", type=Path, metavar="DIR",
                        help="write each accepted image's heatmap overlay here as NAME.heatmap.png")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    flags.check_age(parser, args)

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
        view = info.dicom.view_position if info.dicom else None
        answer = predictor.assess(image, info, age=age, view=view, explain=args.heatmap is not None)
        heatmap = None
        if answer.heatmaps is not None:
            args.heatmap.mkdir(parents=True, exist_ok=True)
            heatmap = args.heatmap / f"{path.stem}.heatmap.png"
            heatmap.write_bytes(heatmap_png(answer.heatmaps.combined))
        print(json.dumps({
            "file": str(path),
            "label": answer.label or None,
            "probability": None if answer.probability is None else round(answer.probability, 6),
            "population": answer.population or None,
            "threshold": answer.threshold,
            "ood": answer.ood,
            "ood_reason": answer.ood_reason,
            "age": age,
            "age_source": age_source,
            "warnings": answer.warnings,
            "heatmap": str(heatmap) if heatmap else None,
            "model": model,
        }), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
