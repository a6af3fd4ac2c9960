"""What site calibration buys, simulated on validation films under shift: the card's point against a
point refit by ``ml.site_calibration`` on part of the same films, both scored on the rest.

    python bench/site_calibration_sim.py --films runs/splits/kermany-val.csv --age 3 \\
        --shifts none,equalise,gamma_1.6,zoom_out_85 --reviewed 300 --cache runs/site-sim.npz

A site's films differ from the training sources' (ml.shift's proxies stand in for that); the product
lets it refit the pediatric point on studies its reviewers confirmed (diagnosis/site_points.py). Here,
for each shift: the films are screened once (``ml.cli.shift.screen_shifted``: the population's
temperature, the OOD gate; refused films have no label and are left out, as the product leaves them
out), then ``--splits`` times the patients are shuffled, the first patients up to ``--reviewed`` films
are "reviewed" with their true labels and the point is refit on them with the product's rule and
refusals (``PNEUMOWEB_SITE_CALIBRATION_*`` defaults: 50 patients per class, recall bound ≤ 0.05 under
the floor); the rest are scored at the card's point and at the refit one (the card's when refused).
Printed per shift: the median and 5–95th percentile over splits of recall and specificity on the rest,
the share of splits meeting recall ≥ 0.97 and specificity ≥ 0.68, and how often the refit was refused.
``--cache`` keeps the screened logits, so another ``--reviewed`` or ``--splits`` costs no forward pass.
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import cli_args as flags  # noqa: E402
from ml.site_calibration import propose  # noqa: E402

GOAL = {"recall": 0.97, "specificity": 0.68}
MIN_PER_CLASS, MAX_SHORTFALL = 50, 0.05  # the product's defaults (pneumoweb/settings.py)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_model(parser)
    flags.add_films(parser)
    flags.add(parser, "--age")
    flags.add(parser, "--shifts", default="equalise,gamma_0.6,gamma_1.6,contrast_0.7,blur_1.5,zoom_out_85")
    parser.add_argument("--population", default="pediatric", help="the point refit (its recall floor is the card's)")
    parser.add_argument("--reviewed", type=int, default=300, help="films reviewed before the refit, per split")
    parser.add_argument("--splits", type=int, default=100, help="random splits of the patients per shift")
    flags.add(parser, "--cache")
    flags.add_seed(parser)
    flags.add_batch_size(parser)
    flags.add_threads(parser)
    flags.add_out(parser, metavar="JSON")
    return parser


def screen(args, shifts):
    import torch

    from ml.cli.shift import screen_shifted
    from ml.inference import Predictor
    from ml.training.data import load_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.model)
    point = predictor.points[args.population]
    samples = load_samples(args.films)
    if args.age is not None:
        samples = [replace(s, age=args.age) for s in samples]
    read, screened, _, _ = screen_shifted(predictor, samples, shifts, args.batch_size, gate=predictor.gate is not None)
    data = {"labels": np.array([s.label for s in read]), "patients": np.array([str(s.patient or s.path) for s in read]),
            "threshold": point.threshold, "temperature": point.temperature, "min_recall": point.min_recall}
    for name in shifts:
        logits, reasons = screened[name]
        data[f"logit:{name}"] = logits
        data[f"refused:{name}"] = np.array([bool(r) for r in reasons])
    return data


def rates(truth, probability, threshold):
    predicted = probability >= threshold
    return float(predicted[truth == 1].mean()), float((~predicted[truth == 0]).mean())


def simulate(data, shift, args):
    keep = ~data[f"refused:{shift}"]
    truth, patients = data["labels"][keep], data["patients"][keep]
    probability = 1 / (1 + np.exp(-data[f"logit:{shift}"][keep] / float(data["temperature"])))
    card = float(data["threshold"])
    rng = np.random.default_rng(args.seed)
    keys = np.unique(patients)
    rows = []
    for _ in range(args.splits):
        order = rng.permutation(keys)
        films = np.cumsum([np.count_nonzero(patients == k) for k in order])
        reviewed_keys = set(order[: int(np.searchsorted(films, args.reviewed)) + 1])
        reviewed = np.array([p in reviewed_keys for p in patients])
        proposal = propose(patients[reviewed], truth[reviewed], probability[reviewed], population=args.population,
                           min_recall=float(data["min_recall"]), current_threshold=card, min_per_class=MIN_PER_CLASS,
                           max_shortfall=MAX_SHORTFALL, resamples=200, seed=args.seed)
        site = card if proposal.refused else proposal.threshold
        rest = ~reviewed
        rows.append((*rates(truth[rest], probability[rest], card), *rates(truth[rest], probability[rest], site),
                     proposal.refused, int(rest.sum())))
    a = np.array(rows, dtype=float)

    def spread(column):
        return [float(np.median(a[:, column])), float(np.percentile(a[:, column], 5)), float(np.percentile(a[:, column], 95))]

    meets = lambda r, s: float(np.mean((a[:, r] >= GOAL["recall"]) & (a[:, s] >= GOAL["specificity"])))  # noqa: E731
    return {"films": int(keep.sum()), "refused_by_gate": int((~keep).sum()), "rest_films": float(np.median(a[:, 5])),
            "card": {"recall": spread(0), "specificity": spread(1), "meets_goal": meets(0, 1)},
            "site": {"recall": spread(2), "specificity": spread(3), "meets_goal": meets(2, 3)},
            "refit_refused": float(a[:, 4].mean())}


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ml.shift import SHIFTS

    names = list(SHIFTS) if args.shifts == "all" else args.shifts.split(",")
    shifts = ["none"] + [s for s in names if s and s != "none"]
    cached = dict(np.load(args.cache, allow_pickle=False)) if args.cache and args.cache.exists() else {}
    if not all(f"logit:{s}" in cached for s in shifts):
        cached = screen(args, shifts)
        if args.cache:
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(args.cache, **cached)
    results = {shift: simulate(cached, shift, args) for shift in shifts}
    print(f"{args.population} point, {args.reviewed} films reviewed per split, {args.splits} splits; "
          f"figures on the rest (median [5th, 95th percentile]); goal recall ≥ {GOAL['recall']}, "
          f"specificity ≥ {GOAL['specificity']}")
    print(f"{'shift':<16}{'card recall':>24}{'card spec':>24}{'site recall':>24}{'site spec':>24}"
          f"{'card/site meet':>16}{'refit refused':>15}")

    def cell(v):
        return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"

    for shift, r in results.items():
        print(f"{shift:<16}{cell(r['card']['recall']):>24}{cell(r['card']['specificity']):>24}"
              f"{cell(r['site']['recall']):>24}{cell(r['site']['specificity']):>24}"
              f"{r['card']['meets_goal']:>8.2f}/{r['site']['meets_goal']:.2f}{r['refit_refused']:>15.2f}")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                       indent=2))


if __name__ == "__main__":
    main()
