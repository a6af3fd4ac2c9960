"""Do the card's operating points hold when the films shift? Every point, under every named shift.

    python -m ml.cli.shift --model models/pneumoweb-v3.safetensors --films runs/splits/kermany-val.csv --age 3 \\
        --out docs/shift-v3.json
    python -m ml.cli.shift --model models/pneumoweb-v3.safetensors --films runs/splits/nih-val.csv \\
        --out docs/shift-v3.json                   # the same JSON: each films file (and age) is its own entry

Each film is decoded once; each shift of ``ml.shift.SHIFTS`` (``--shifts``, default all; ``none`` always)
is applied to the decoded film before the standard preprocessing, and the film is screened as
``ml.cli.evaluate`` screens it (``Predictor.screen``: the film's point by its age, ``--age`` for every
film; the OOD gate's verdict). For each shift, on all films and, where the films fall in more than one
population by age, on each population's films (NIH: the children 7–17 apart from the adults):

- AUC with its bootstrap 95 % interval;
- at **every** operating point in the card, applied to every film (its temperature and threshold):
  recall, specificity, accuracy, precision and their bootstrap intervals (``ml.metrics.metrics_at``),
  and the threshold the point's own rule (best specificity at recall ≥ its floor) would choose on
  these films — how far the point would have to move;
- how many films the OOD gate refuses (the metrics are the classifier's on every readable film);
- the best specificity any threshold reaches at recall ≥ 0.98 (and at each point's floor): ranking
  loss, separate from threshold drift.

``--out`` is a JSON file (``.json``) or a folder (``shift.json`` in it). An existing file of the same
model keeps its entries for other films files, so the runs at different ages share one file.
``--sample N`` measures a fixed-seed subsample of N films (seed ``--seed``) of each ``--films``,
stratified by label and population.
"""

import argparse
import json
import math
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .. import cli_args as flags
from ..inference import Predictor
from ..metrics import metrics_at, roc_auc, sigmoid, summary, threshold_for_recall
from ..shift import SHIFTS, apply
from ..training.data import load_samples, readable_batches

RECALL_FLOOR = 0.98  # the recall the table's "best specificity" column holds (the pediatric point's floor)


def stratified_sample(samples, n, population_of, seed=0):
    """A fixed-seed subsample of ``n`` films, each (label, population) group in proportion, in the data's order."""
    if n is None or n >= len(samples):
        return list(samples)
    groups = defaultdict(list)
    for index, s in enumerate(samples):
        groups[(s.label, population_of(s))].append(index)
    rng = np.random.default_rng(seed)
    keys = sorted(groups)
    quota = {k: n * len(groups[k]) / len(samples) for k in keys}
    counts = {k: int(math.floor(quota[k])) for k in keys}
    for k in sorted(keys, key=lambda k: quota[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1  # largest remainders
    chosen = sorted(i for k in keys for i in rng.permutation(groups[k])[: counts[k]].tolist())
    return [samples[i] for i in chosen]


def screen_shifted(predictor, samples, shifts, batch_size=32, gate=True):
    """(films read, {shift: (logits, refusal reasons)}, populations, unreadable files); each film decoded once."""
    read, skipped, populations = [], [], []
    logits = {name: [] for name in shifts}
    reasons = {name: [] for name in shifts}
    for batch in readable_batches(samples, batch_size, skipped, "shift"):
        if not batch:
            continue
        for name in shifts:
            answers = predictor.screen([(apply(name, image), info, sample.age) for sample, image, info in batch],
                                       gate=gate)
            logits[name] += [a.logit for a in answers]
            reasons[name] += [a.reason for a in answers]
            if name == shifts[0]:
                populations += [a.population for a in answers]
        read += [sample for sample, _, _ in batch]
    return read, {name: (np.array(logits[name]), reasons[name]) for name in shifts}, populations, skipped


def best_specificity(labels, logits, floor):
    """The best specificity any threshold gives at recall ≥ ``floor`` (a property of the ranking alone)."""
    probabilities = sigmoid(logits)
    row = summary(labels, probabilities, threshold_for_recall(labels, probabilities, floor))
    return {"specificity": row["specificity"], "recall": row["recall"]}


def measure(labels, logits, reasons, points, gate):
    """One subset under one shift: AUC, every point's metrics, refusals, best specificity at the floors."""
    points_out, auc_interval = {}, None
    for name, point in points.items():
        probabilities = sigmoid(logits / point.temperature)
        row = metrics_at(labels, probabilities, [point.threshold] * len(labels))
        # The AUC and its interval are the same at every point (one ranking, the same resamples): kept once.
        row.pop("auc")
        auc_interval = row["intervals"].pop("auc", None)
        row["temperature"] = point.temperature
        row["min_recall"] = point.min_recall
        if point.min_recall is not None and len(set(labels.tolist())) == 2:
            row["refit_threshold"] = threshold_for_recall(labels, probabilities, point.min_recall)
        points_out[name] = row
    floors = sorted({RECALL_FLOOR} | {p.min_recall for p in points.values() if p.min_recall is not None})
    both = len(set(labels.tolist())) == 2
    return {
        "n": len(labels),
        "n_pneumonia": int(labels.sum()),
        "auc": roc_auc(labels, logits),
        "auc_interval": auc_interval if both else None,
        "refused": sum(bool(r) for r in reasons) if gate else None,
        "points": points_out,
        "best_specificity_at_recall": {f"{f:g}": best_specificity(labels, logits, f) for f in floors} if both else {},
    }


def shift_run(predictor, data, shifts, *, age=None, sample=None, seed=0, batch_size=32, gate=True):
    """One data file under every shift: the JSON entry (see the module's docstring)."""
    started = time.monotonic()
    samples = load_samples(data)
    if age is not None:
        samples = [replace(s, age=age) for s in samples]
    n_total = len(samples)
    samples = stratified_sample(samples, sample, lambda s: predictor.point(s.age).population, seed)
    gate = gate and predictor.gate is not None
    shifts = ["none"] + [name for name in shifts if name != "none"]
    read, screened, populations, skipped = screen_shifted(predictor, samples, shifts, batch_size, gate)
    if not read:
        raise SystemExit(f"No readable images in {data}.")
    labels = np.array([s.label for s in read], dtype=np.int64)
    subsets = {"all": np.arange(len(read))}
    if len(set(populations)) > 1:
        for name in dict.fromkeys(p for p in predictor.points if p in populations):
            subsets[name] = np.array([i for i, p in enumerate(populations) if p == name])
    results = {}
    for name in shifts:
        logits, reasons = screened[name]
        results[name] = {subset: measure(labels[index], logits[index], [reasons[i] for i in index],
                                         predictor.points, gate)
                         for subset, index in subsets.items()}
    return {
        "data": str(data),
        "age": age,
        "n_total": n_total,
        "sample": None if sample is None or sample >= n_total else {"n": len(samples), "seed": seed,
                                                                      "stratified_by": ["label", "population"]},
        "subsets": {name: {"n": len(index), "ages": _ages([read[i] for i in index])} for name, index in subsets.items()},
        "gate": gate,
        "skipped": skipped,
        "shifts": results,
        "wall_s": round(time.monotonic() - started, 1),
    }


def _ages(samples):
    ages = [s.age for s in samples if s.age is not None]
    return [min(ages), max(ages)] if ages else None


def run_key(data, age):
    return Path(data).stem + ("" if age is None else f"@age{age:g}")


def _cell(value, interval=None, digits=3):
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.{digits}f}" + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")


def format_tables(entry, point_names):
    """Markdown: one table per subset, one row per shift."""
    lines = []
    for subset in entry["subsets"]:
        head = ["shift", "AUC [95 % CI]", "refused"]
        for name in point_names:
            head += [f"{name} recall", f"{name} specificity"]
        head.append(f"best specificity at recall ≥ {RECALL_FLOOR:g}")
        n = entry["subsets"][subset]["n"]
        lines += ["", f"{run_key(entry['data'], entry['age'])}, {subset} (n = {n})", "",
                  "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for shift, by_subset in entry["shifts"].items():
            row = by_subset[subset]
            cells = [shift, _cell(row["auc"], row["auc_interval"]),
                     "—" if row["refused"] is None else str(row["refused"])]
            for name in point_names:
                point = row["points"][name]
                cells += [_cell(point["recall"], point["intervals"].get("recall")),
                          _cell(point["specificity"], point["intervals"].get("specificity"))]
            best = row["best_specificity_at_recall"].get(f"{RECALL_FLOOR:g}")
            cells.append(_cell(best["specificity"]) if best else "—")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(out, predictor, runs):
    """Merge ``runs`` ({key: entry}) into the JSON at ``out`` (kept entries: same model, other keys)."""
    path = out if out.suffix == ".json" else out / "shift.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    model = {"name": predictor.name, "weights_sha256": predictor.weights_sha256}
    kept = {}
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("model") == model:
            kept = old.get("runs", {})
    document = {
        "model": model,
        "points": {name: point.to_dict() for name, point in predictor.points.items()},
        "shifts": {name: " ".join((function.__doc__ or "").split()) for name, function in SHIFTS.items()},
        "runs": {**kept, **runs},
    }
    path.write_text(json.dumps(document, indent=2))
    return path


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_films(parser, several=True, old=("--data",))
    flags.add_model(parser)
    flags.add_out(parser, default=Path("shift"), metavar="FILE.json|DIR")
    flags.add_age(parser)
    flags.add(parser, "--shifts", default="all")
    parser.add_argument("--sample", type=int, help="a fixed-seed subsample of this many films per --films, "
                                                   "stratified by label and population")
    flags.add_seed(parser)
    flags.add_batch_size(parser, 32)
    flags.add_threads(parser)
    flags.add(parser, "--no-gate")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    flags.check_age(parser, args)
    shifts = list(SHIFTS) if args.shifts == "all" else [s.strip() for s in args.shifts.split(",") if s.strip()]
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown:
        parser.error(f"unknown shift(s) {', '.join(unknown)}; known: {', '.join(SHIFTS)}")
    if args.sample is not None and args.sample < 1:
        parser.error("--sample must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.model)
    runs = {}
    for data in args.films:
        entry = shift_run(predictor, data, shifts, age=args.age, sample=args.sample, seed=args.seed,
                          batch_size=args.batch_size, gate=not args.no_gate)
        runs[run_key(data, args.age)] = entry
        sampled = f", a stratified subsample (seed {args.seed})" if entry["sample"] else ""
        print(f"model {predictor.name} ({predictor.weights_sha256[:12]}) on {data}: {len(entry['shifts'])}"
              f" conditions, {entry['subsets']['all']['n']} of {entry['n_total']} films{sampled}, {entry['wall_s']} s")
        print(format_tables(entry, list(predictor.points)))
        if entry["skipped"]:
            print(f"skipped {len(entry['skipped'])} unreadable files (listed in the JSON)")
    print(f"wrote {write_json(args.out, predictor, runs)}")


if __name__ == "__main__":
    main()
