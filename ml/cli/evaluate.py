"""Evaluate a checkpoint on a Kermany-layout folder or a CSV with ages, per population.

    python -m ml.cli.evaluate --data path/to/test --model models/pneumoweb-v3.safetensors --out eval/
    python -m ml.cli.evaluate --data labels.csv --out eval/          # path,label,age[,patient][,view]
    python -m ml.cli.evaluate --data path/to/children --age 3 --out eval/

Every film takes the operating point of its population, picked by its age exactly as the worker
picks it (a CSV's ``age`` column, or ``--age`` for every film; a film without an age takes the
most sensitive point). Writes metrics.json — for all films and for each population used: n, AUC,
accuracy, precision, recall, specificity, F1, confusion matrix, each with a bootstrap 95 %
interval; the same for each recorded view (PA / AP, from a CSV's ``view`` column: a check that
the model separates the classes within a view, not only across views); and the metrics every
operating point of the card would give on all films — plus scores.csv (every film's probability,
threshold, population and gate verdict), roc.png and confusion.png, and prints the tables.
Beside the metrics, ``ood`` says how many of these films the out-of-distribution gate would
refuse, and which; the metrics are the classifier's on every readable film.
"""

import argparse
import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from ..constants import AGE_MAX_YEARS, DEFAULT_WEIGHTS
from ..decode import ImageDecodeError, decode_with_tags
from ..inference import Predictor
from ..metrics import bootstrap_intervals, roc_curve, sigmoid, summary
from ..training.data import deduplicate, load_samples


def score(predictor, samples, batch_size=32, gate=True):
    """(samples read, their Screened answers, unreadable files); unreadable files are skipped."""
    read, answers, skipped = [], [], []
    for start in tqdm(range(0, len(samples), batch_size), desc="evaluate", file=sys.stderr, leave=False):
        batch, batch_samples = [], []
        for sample in samples[start : start + batch_size]:
            try:
                image, info = decode_with_tags(sample.path)
            except ImageDecodeError as exc:
                skipped.append({"file": str(sample.path), "error": str(exc)})
                continue
            batch.append((image, info, sample.age))
            batch_samples.append(sample)
        answers += predictor.screen(batch, gate=gate)
        read += batch_samples
    return read, answers, skipped


def metrics_at(labels, scores, thresholds):
    """Metrics with per-film thresholds: compared on the margin ``score - threshold`` (AUC on the scores)."""
    labels, scores, thresholds = (np.asarray(a, dtype=np.float64) for a in (labels, scores, thresholds))
    if np.ptp(thresholds) == 0:
        row = summary(labels.astype(int), scores, float(thresholds[0]))
        row["intervals"] = bootstrap_intervals(labels.astype(int), scores, float(thresholds[0]))
        return row
    # Mixed points: the label is score >= own threshold; AUC stays the one of the probabilities.
    margin = scores - thresholds
    row = summary(labels.astype(int), margin, 0.0)
    row["auc"] = summary(labels.astype(int), scores, 0.5)["auc"]
    row["threshold"] = None
    row["intervals"] = bootstrap_intervals(labels.astype(int), margin, 0.0)
    row["intervals"]["auc"] = bootstrap_intervals(labels.astype(int), scores, 0.5)["auc"]
    return row


def plot_roc(labels, scores, metrics, path):
    # A Figure without pyplot: no GUI backend, no global figure state.
    fpr, tpr, _ = roc_curve(labels, scores)
    fig = Figure(figsize=(4.5, 4.5), dpi=120)
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"AUC {metrics['auc']:.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.scatter([1 - metrics["specificity"]], [metrics["recall"]], color="red", zorder=3, label="operating point(s)")
    ax.set(xlabel="1 − specificity", ylabel="sensitivity (recall)", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def plot_confusion(metrics, path):
    matrix = np.asarray(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    names = metrics["confusion_matrix"]["labels"]
    fig = Figure(figsize=(4, 3.6), dpi=120)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black", fontsize=13)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names, xlabel="predicted", ylabel="true")
    ax.set_title("Confusion at each film's operating point")
    fig.tight_layout()
    fig.savefig(path)


def evaluate(data, model_path, out_dir, batch_size=32, dedupe=False, gate=True, age=None):
    predictor = Predictor.from_checkpoint(model_path)
    samples = load_samples(data)
    if dedupe:
        samples, _ = deduplicate(samples)
    if age is not None:
        samples = [replace(s, age=age) for s in samples]
    gate = gate and predictor.gate is not None
    read, answers, skipped = score(predictor, samples, batch_size, gate=gate)
    if not read:
        raise SystemExit("No readable images found.")
    labels = np.array([s.label for s in read])
    scores = np.array([a.probability for a in answers])
    metrics = metrics_at(labels, scores, [a.threshold for a in answers])

    def metrics_of(index):
        return metrics_at(labels[index], scores[index], [answers[i].threshold for i in index])

    populations = {}
    for name in sorted({a.population for a in answers}):
        index = [i for i, a in enumerate(answers) if a.population == name]
        populations[name] = {"n_without_age": sum(read[i].age is None for i in index), **metrics_of(index)}
    # Per recorded view (a CSV's ``view`` column): in NIH, AP films are commoner among the normals, so a
    # model could score well across views while separating little within one. Groups need both classes.
    views = {}
    for name in sorted({s.view for s in read if s.view}):
        index = [i for i, s in enumerate(read) if s.view == name]
        if len(set(labels[index])) == 2:
            views[name] = metrics_of(index)
    # What each of the card's points would give on every film (e.g. the pediatric point on a folder without ages).
    logits = np.array([a.logit for a in answers])
    at_each_point = {name: metrics_at(labels, sigmoid(logits / point.temperature), [point.threshold] * len(read))
                     for name, point in predictor.points.items()}
    refused = [{"file": str(s.path), "label": s.label, "reason": a.reason} for s, a in zip(read, answers) if a.reason]
    metrics.update(
        model={"name": predictor.name, "weights_sha256": predictor.weights_sha256},
        data=str(data),
        populations=populations,
        views=views,
        at_each_point=at_each_point,
        skipped=skipped,
        ood=({"rejected": len(refused), "rate": len(refused) / len(read), "files": refused} if gate else None),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_scores(out_dir / "scores.csv", read, answers)
    plot_roc(labels, scores, metrics, out_dir / "roc.png")
    plot_confusion(metrics, out_dir / "confusion.png")
    return metrics


def write_scores(path, samples, answers):
    """One row per film: what it was, and what the model said of it (for audits and re-analysis)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "age", "view", "population", "probability", "threshold", "refused"])
        for s, a in zip(samples, answers):
            writer.writerow([s.path, s.label, "" if s.age is None else s.age, s.view, a.population,
                             f"{a.probability:.6f}", f"{a.threshold:.6f}", a.reason])


def format_table(metrics):
    """One row per group: all films, each population used, then every operating point on all films."""
    keys = ("auc", "accuracy", "recall", "specificity", "precision")
    rows = [("all films", metrics)]
    rows += [(f"population {name}", row) for name, row in metrics["populations"].items()]
    rows += [(f"view {name}", row) for name, row in metrics.get("views", {}).items()]
    rows += [(f"{name} point, all films", row) for name, row in metrics["at_each_point"].items()]
    lines = ["| films | n | " + " | ".join(keys) + " | TN FP FN TP |", "|---" * (len(keys) + 3) + "|"]
    for name, row in rows:
        intervals = row.get("intervals") or {}
        cells = []
        for key in keys:
            low_high = intervals.get(key)
            cells.append(f"{row[key]:.4f}" + (f" [{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else ""))
        (tn, fp), (fn, tp) = row["confusion_matrix"]["rows_true_cols_predicted"]
        lines.append(f"| {name} | {row['n']} | " + " | ".join(cells) + f" | {tn} {fp} {fn} {tp} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with NORMAL/ and PNEUMONIA/, or a CSV")
    parser.add_argument("--model", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--out", type=Path, default=Path("eval"))
    parser.add_argument("--age", type=float, help="the age (years) of every film, where the data records none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dedupe", action="store_true", help="drop byte-identical duplicates first")
    parser.add_argument("--no-gate", action="store_true", help="skip counting what the OOD gate would refuse")
    args = parser.parse_args(argv)
    if args.age is not None and not 0 <= args.age <= AGE_MAX_YEARS:
        parser.error(f"--age must be between 0 and {AGE_MAX_YEARS:g} years")
    metrics = evaluate(args.data, args.model, args.out, args.batch_size, args.dedupe, gate=not args.no_gate,
                       age=args.age)
    print(f"model {metrics['model']['name']} ({metrics['model']['weights_sha256'][:12]}) on {args.data}")
    print(format_table(metrics))
    without_age = sum(row["n_without_age"] for row in metrics["populations"].values())
    if without_age:
        print(f"{without_age} films had no age and took the most sensitive point (pass --age or a CSV with ages)")
    if metrics["ood"] is not None:
        print(f"the OOD gate would refuse {metrics['ood']['rejected']} of {metrics['n']} images"
              f" ({metrics['ood']['rate']:.1%}; listed in metrics.json)")
    if metrics["skipped"]:
        print(f"skipped {len(metrics['skipped'])} unreadable files (listed in metrics.json)")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'scores.csv'}, {args.out / 'roc.png'},"
          f" {args.out / 'confusion.png'}")


if __name__ == "__main__":
    main()
