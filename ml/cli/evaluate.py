"""Evaluate a checkpoint on a Kermany-layout folder or a CSV with ages, per population.

    python -m ml.cli.evaluate --films path/to/test --model models/pneumoweb-v3.safetensors --out eval/
    python -m ml.cli.evaluate --films labels.csv --out eval/          # path,label,age[,patient][,view]
    python -m ml.cli.evaluate --films path/to/children --age 3 --out eval/

Every film takes the operating point of its population, picked by its age exactly as the worker
picks it (a CSV's ``age`` column, or ``--age`` for every film; a film without an age takes the
most sensitive point). Writes, in the folder ``--out`` (default ``eval/``), metrics.json — for all films and for each population used: n, AUC,
accuracy, precision, recall, specificity, F1, confusion matrix, each with a bootstrap 95 %
interval; the same for each recorded view (PA / AP, from a CSV's ``view`` column: a check that
the model separates the classes within a view, not only across views); and the metrics every
operating point of the card would give on all films — plus scores.csv (every film's probability,
threshold, population and gate verdict), roc.png and confusion.png, and prints the tables.
Beside the metrics, ``ood`` says how many of these films the out-of-distribution gate would
refuse, and which; the metrics are the classifier's on every readable film.

Radiologists' re-reads and boxes (``ml.training.rsna``; matched to the films by file name):

    python -m ml.cli.evaluate --films runs/splits/nih-val.csv --rereads ../shared/data/nih_pneumonia/rsna.csv \
        --boxes ../shared/data/nih_pneumonia/boxes.csv

``--rereads``: on the films that have a re-read, the AUC for the radiologists' classes (opacity
positive, normal negative; and opacity against every other re-read) beside the AUC on the data's
own labels of the same films (``rereads`` in metrics.json). ``--boxes``: the films with boxes are
run as the worker runs them (``Predictor.assess_batch(..., explain=True)``) and each map a
clinician is shown (combined, CNN, and v3's legacy ViT map; resized to the file's pixels) is measured against the
boxes: pointing game, mass ratio, the chance baseline (``ml.localisation``; ``localisation`` in
metrics.json). A film the gate refuses gets no map and is counted apart.
"""

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .. import cli_args as flags
from ..inference import PNEUMONIA, Predictor
from ..localisation import film_record, format_summary, summarise
from ..metrics import bootstrap_intervals, metrics_at, roc_auc, roc_curve, sigmoid
from ..training.data import deduplicate, load_samples, readable_batches
from ..training.rsna import load_boxes, load_rereads


def score(predictor, samples, batch_size=32, gate=True):
    """(samples read, their Screened answers, unreadable files); unreadable files are skipped."""
    read, answers, skipped = [], [], []
    for batch in readable_batches(samples, batch_size, skipped, "evaluate"):
        answers += predictor.screen([(image, info, sample.age) for sample, image, info in batch], gate=gate)
        read += [sample for sample, _, _ in batch]
    return read, answers, skipped


def reread_aucs(read, answers, rereads):
    """AUCs on the re-read films: radiologists' classes vs the data's labels of the same films."""
    scores = {Path(s.path).name: a.probability for s, a in zip(read, answers)}
    labels = {Path(s.path).name: s.label for s in read}
    matched = {name: reread for name, reread in rereads.items() if name in scores}

    def auc_row(names, positive):
        y = np.array([int(positive(name)) for name in names])
        x = np.array([scores[name] for name in names])
        if not len(names):
            return {"n": 0, "n_positive": 0, "auc": None, "interval": None}
        return {"n": len(names), "n_positive": int(y.sum()), "auc": roc_auc(y, x),
                "interval": bootstrap_intervals(y, x, 0.5).get("auc")}

    out = {"n_reread": len(matched), "classes": {c: sum(v == c for v in matched.values())
                                                  for c in ("opacity", "normal", "not_normal")}}
    for key, names in (("opacity_vs_normal", sorted(n for n, v in matched.items() if v in ("opacity", "normal"))),
                       ("opacity_vs_rest", sorted(matched))):
        out[key] = {"reread": auc_row(names, lambda n: matched[n] == "opacity"),
                    "data_labels": auc_row(names, lambda n: labels[n] == 1)}
    return out


def localise(predictor, samples, boxes, batch_size=32):
    """Pointing game and mass ratio of the maps the worker would show, on the films that have boxes."""
    records, refused, skipped = [], [], []
    chosen = [s for s in samples if Path(s.path).name in boxes]
    for batch in readable_batches(chosen, batch_size, skipped, "localise"):
        items = [(image, info, sample.age, sample.view or None) for sample, image, info in batch]
        for (sample, image, _), answer in zip(batch, predictor.assess_batch(items, explain=True), strict=True):
            if answer.heatmaps is None:
                refused.append({"file": str(sample.path), "reason": answer.ood_reason})
                continue
            # The ViT map is legacy (v3 only; None for v4, which serves the CNN's map alone).
            maps = {"combined": answer.heatmaps.combined, "cnn": answer.heatmaps.cnn, "vit": answer.heatmaps.vit}
            records.append(film_record(maps, boxes[Path(sample.path).name], (image.height, image.width),
                                       label=answer.label))
    said_pneumonia = [r for r in records if r["label"] == PNEUMONIA]
    return {"n_with_boxes": len(chosen), "all": summarise(records), "answered_pneumonia": summarise(said_pneumonia),
            "refused": refused, "skipped": skipped}


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


def evaluate(data, model_path, out_dir, batch_size=32, dedupe=False, gate=True, age=None, rereads=None, boxes=None):
    rereads = None if rereads is None else (rereads, load_rereads(rereads))  # read first: a bad file fails at once
    boxes = None if boxes is None else (boxes, load_boxes(boxes))
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
    if rereads is not None:
        metrics["rereads"] = {"file": str(rereads[0]), **reread_aucs(read, answers, rereads[1])}
    if boxes is not None:
        metrics["localisation"] = {"file": str(boxes[0]), **localise(predictor, read, boxes[1], batch_size)}
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


def format_rereads(rereads):
    """Lines: each re-read comparison's AUC on the radiologists' classes and on the data's labels."""
    def cell(row):
        if row["auc"] is None or not np.isfinite(row["auc"]):
            return f"— (n {row['n']}, {row['n_positive']} positive)"
        interval = f" [{row['interval'][0]:.3f}, {row['interval'][1]:.3f}]" if row["interval"] else ""
        return f"{row['auc']:.4f}{interval} (n {row['n']}, {row['n_positive']} positive)"

    lines = [f"re-read films: {rereads['n_reread']} ({', '.join(f'{k} {v}' for k, v in rereads['classes'].items())})"]
    for key in ("opacity_vs_normal", "opacity_vs_rest"):
        lines.append(f"AUC {key.replace('_', ' ')}: radiologists {cell(rereads[key]['reread'])};"
                     f" data labels, same films {cell(rereads[key]['data_labels'])}")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_films(parser, old=("--data",))
    flags.add_model(parser)
    flags.add_out(parser, default=Path("eval"), metavar="DIR")
    flags.add_age(parser)
    flags.add_batch_size(parser, 32)
    parser.add_argument("--dedupe", action="store_true", help="drop byte-identical duplicates first")
    flags.add(parser, "--no-gate")
    flags.add(parser, "--rereads")
    flags.add(parser, "--boxes")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    flags.check_age(parser, args)
    metrics = evaluate(args.films, args.model, args.out, args.batch_size, args.dedupe, gate=not args.no_gate,
                       age=args.age, rereads=args.rereads, boxes=args.boxes)
    print(f"model {metrics['model']['name']} ({metrics['model']['weights_sha256'][:12]}) on {args.films}")
    print(format_table(metrics))
    without_age = sum(row["n_without_age"] for row in metrics["populations"].values())
    if without_age:
        print(f"{without_age} films had no age and took the most sensitive point (pass --age or a CSV with ages)")
    if metrics["ood"] is not None:
        print(f"the OOD gate would refuse {metrics['ood']['rejected']} of {metrics['n']} images"
              f" ({metrics['ood']['rate']:.1%}; listed in metrics.json)")
    if "rereads" in metrics:
        print(format_rereads(metrics["rereads"]))
    if "localisation" in metrics:
        found = metrics["localisation"]
        print(format_summary(found["all"], "heatmaps vs boxes, every answered film"))
        print(format_summary(found["answered_pneumonia"], "heatmaps vs boxes, films the model called PNEUMONIA"))
        print(f"{found['n_with_boxes']} films with boxes; {len(found['refused'])} refused by the gate (no map),"
              f" {len(found['skipped'])} unreadable")
    if metrics["skipped"]:
        print(f"skipped {len(metrics['skipped'])} unreadable files (listed in metrics.json)")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'scores.csv'}, {args.out / 'roc.png'},"
          f" {args.out / 'confusion.png'}")


if __name__ == "__main__":
    main()
