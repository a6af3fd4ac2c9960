"""Evaluate a checkpoint on any folder in the Kermany layout.

    python -m ml.evaluate --data path/to/test --model models/pneumoweb-compact.safetensors --out eval/

Writes metrics.json (AUC, accuracy, precision, recall, specificity, F1 at the shipped
threshold, confusion matrix, n), roc.png and confusion.png, and prints a short table.
Images go through the same decode and preprocessing as the worker's. The metrics are the
classifier's on every readable image; beside them, ``ood`` says how many of these images the
platform's out-of-distribution gate (``Predictor.assess``) would have refused, and which.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import deduplicate, load_samples
from .constants import DEFAULT_WEIGHTS
from .inference import Predictor
from .metrics import roc_curve, summary
from .decode import ImageDecodeError, decode_with_tags


def score(predictor, samples, batch_size=32, gate=True):
    """(labels, P(pneumonia), unreadable files, files the gate refuses); unreadable files are skipped."""
    scores, labels, skipped, refused = [], [], [], []
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
        batch_scores, reasons = predictor.screen(batch, gate=gate)
        refused += [{"file": str(s.path), "label": s.label, "reason": reason}
                    for s, reason in zip(batch_samples, reasons) if reason]
        scores += batch_scores
        labels += [s.label for s in batch_samples]
    return np.asarray(labels), np.asarray(scores), skipped, refused


def plot_roc(labels, scores, metrics, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot(fpr, tpr, label=f"AUC {metrics['auc']:.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.scatter([1 - metrics["specificity"]], [metrics["recall"]], color="red", zorder=3,
               label=f"threshold {metrics['threshold']:.3f}")
    ax.set(xlabel="1 − specificity", ylabel="sensitivity (recall)", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(metrics, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    matrix = np.asarray(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    names = metrics["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=120)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black", fontsize=13)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names, xlabel="predicted", ylabel="true")
    ax.set_title(f"Confusion at threshold {metrics['threshold']:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(data, model_path, out_dir, batch_size=32, dedupe=False, gate=True):
    predictor = Predictor.from_checkpoint(model_path)
    samples = load_samples(data)
    if dedupe:
        samples, _ = deduplicate(samples)
    gate = gate and predictor.gate is not None
    labels, scores, skipped, refused = score(predictor, samples, batch_size, gate=gate)
    if len(labels) == 0:
        raise SystemExit("No readable images found.")
    metrics = summary(labels, scores, predictor.threshold)
    metrics.update(
        model={"name": predictor.name, "weights_sha256": predictor.weights_sha256},
        data=str(data),
        skipped=skipped,
        ood=({"rejected": len(refused), "rate": len(refused) / len(labels), "files": refused} if gate else None),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_roc(labels, scores, metrics, out_dir / "roc.png")
    plot_confusion(metrics, out_dir / "confusion.png")
    return metrics


def format_table(metrics):
    rows = [("n", f"{metrics['n']}")] + [
        (key, f"{metrics[key]:.4f}") for key in ("auc", "accuracy", "precision", "recall", "specificity", "f1", "threshold")
    ]
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]["rows_true_cols_predicted"]
    rows.append(("confusion", f"TN {tn}  FP {fp}  FN {fn}  TP {tp}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with NORMAL/ and PNEUMONIA/ (or a CSV)")
    parser.add_argument("--model", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--out", type=Path, default=Path("eval"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dedupe", action="store_true", help="drop byte-identical duplicates first")
    parser.add_argument("--no-gate", action="store_true", help="skip counting what the OOD gate would refuse")
    args = parser.parse_args(argv)
    metrics = evaluate(args.data, args.model, args.out, args.batch_size, args.dedupe, gate=not args.no_gate)
    print(f"model {metrics['model']['name']} ({metrics['model']['weights_sha256'][:12]}) on {args.data}")
    print(format_table(metrics))
    if metrics["ood"] is not None:
        print(f"the OOD gate would refuse {metrics['ood']['rejected']} of {metrics['n']} images"
              f" ({metrics['ood']['rate']:.1%}; listed in metrics.json)")
    if metrics["skipped"]:
        print(f"skipped {len(metrics['skipped'])} unreadable files (listed in metrics.json)")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'roc.png'}, {args.out / 'confusion.png'}")


if __name__ == "__main__":
    main()
