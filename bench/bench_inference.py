"""CPU (or GPU) latency of the shipped model beside others, measured side by side in one run.

    python bench/bench_inference.py [--threads 2] [--repeats 30] [--compare models/pneumoweb-v3.safetensors]

Prints one row per model: milliseconds per image at batch 1 (median and p90 over
``--repeats`` rounds after warm-up), images/s at batch 16, parameters, checkpoint size,
and each latency as a ratio to the shipped model (``--compare``: another checkpoint, e.g. an
earlier version; the retired ``full`` preset's row, and ``--skip-full``, went with it). Then one study
with its heatmaps (``assess(explain=True)``, the worker's job) for the shipped model and each
``--compare`` checkpoint, as ratios to the shipped one: issue 17's budget is v4 ≤ 2× v3 there. A second
table times what the worker does per study with the shipped model: ``assess`` (image checks,
features, OOD gate, head), and with the heatmaps (in a second pass, or from the same forward
pass as the worker does), as ratios to the bare forward pass. Budget: one study with its
heatmaps ≤ 150 ms p50 on 2 CPU threads. A third table: the worker's batched call
(``assess_batch(..., explain=True)``) per study at batch 1, 8 and 32.

The calls of one table run interleaved, one of each per round, so a slow stretch of the
machine (frequency scaling, a neighbour) weighs on every row alike and the ratios hold. Each
timed call follows an untimed one of the same model, so it finds that model's weights in the
caches, as a worker serving one model does.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml import cli_args as flags
from ml.decode import decode_image
from ml.inference import Predictor

XRAY = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "xrays" / "pneumonia-1.jpeg"
WARM_UP = 3


def time_interleaved(calls, repeats):
    """{name: (median, p90)} milliseconds per item; ``calls`` maps a name to (call, items per call)."""
    for call, _ in calls.values():
        for _ in range(WARM_UP):
            call()
    samples = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (call, per) in calls.items():
            call()  # re-warm the caches after the other rows' calls
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1000 / per)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = (statistics.median(values), values[int(0.9 * (len(values) - 1))])
    return out


def predict_call(predictor, image, batch):
    items = [(image, 3.0)] * batch
    return (lambda: predictor.predict(items)), batch


def batch_call(predictor, image, batch):
    items = [(image, None, 3.0, "PA")] * batch
    return (lambda: predictor.assess_batch(items, explain=True)), batch


def worker_calls(predictor, image):
    """The worker's per-study calls, by step name."""
    def assess_then_explain():
        answer = predictor.assess(image, age=3.0, view="PA")
        predictor.explain(image, age=3.0, label=answer.label)

    return {
        "forward only (predict, batch 1)": predict_call(predictor, image, 1),
        "assess: checks + features + OOD gate + head": ((lambda: predictor.assess(image, age=3.0, view="PA")), 1),
        "assess, then explain (two forward passes)": (assess_then_explain, 1),
        "assess(explain=True) (the worker's job)": ((lambda: predictor.assess(image, age=3.0, view="PA",
                                                                             explain=True)), 1),
    }


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_threads(parser, 2)
    flags.add(parser, "--repeats", default=30)
    flags.add_model(parser)
    flags.add_device(parser, "cpu")
    flags.retire(parser, "--skip-full", "the full preset is retired: there is no such row")
    parser.add_argument("--compare", type=Path, action="append", default=[], help="another checkpoint to time")
    return parser


def main():
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    image = decode_image(XRAY)

    rows = []
    shipped = Predictor.load(args.model, device=args.device)
    size = args.model.stat().st_size / 1e6 if args.model.exists() else float("nan")
    rows.append((f"shipped: {shipped.name}", shipped, size))
    # The same weights in PyTorch's default layout: what channels-last buys.
    contiguous = Predictor.load(args.model, device=args.device)
    contiguous.model.to(memory_format=torch.contiguous_format)
    contiguous.layout = torch.contiguous_format
    rows.append(("shipped, contiguous layout", contiguous, size))
    for path in args.compare:
        other = Predictor.load(path, device=args.device)
        rows.append((f"{other.name}", other, path.stat().st_size / 1e6))

    single = time_interleaved({name: predict_call(p, image, 1) for name, p, _ in rows}, args.repeats)
    batched = time_interleaved({name: predict_call(p, image, 16) for name, p, _ in rows}, max(args.repeats // 5, 3))

    base = single[rows[0][0]][0]
    print(f"device {args.device}, torch threads {args.threads}, torch {torch.__version__}, {args.repeats} rounds")
    header = f"{'model':<46} {'ms/img b1 p50':>13} {'p90':>7} {'img/s b16':>10} {'params M':>9} {'ckpt MB':>8} {'× shipped':>10}"
    print(header)
    print("-" * len(header))
    for name, predictor, size_mb in rows:
        p50, p90 = single[name]
        params = sum(p.numel() for p in predictor.model.parameters()) / 1e6
        print(f"{name:<46} {p50:>13.1f} {p90:>7.1f} {1000 / batched[name][0]:>10.1f} {params:>9.1f} {size_mb:>8.1f}"
              f" {p50 / base:>10.2f}")

    # The budget's measure: one study with its heatmaps, as the worker runs it, for every checkpoint side by side.
    studies = time_interleaved({name: ((lambda p=p: p.assess(image, age=3.0, view="PA", explain=True)), 1)
                                for name, p, _ in rows if name != rows[1][0]},
                               args.repeats)
    print()
    header = f"{'one study with heatmaps: assess(explain=True)':<46} {'ms p50':>8} {'p90':>7} {'× shipped':>10}"
    print(header)
    print("-" * len(header))
    base_study = studies[rows[0][0]][0]
    for name, (p50, p90) in studies.items():
        print(f"{name:<46} {p50:>8.1f} {p90:>7.1f} {p50 / base_study:>10.2f}")

    steps = time_interleaved(worker_calls(shipped, image), args.repeats)
    forward = next(iter(steps.values()))[0]
    print()
    header = f"{'per study, shipped model (gate: ' + ('yes' if shipped.gate else 'no') + ')':<46} {'ms p50':>8} {'p90':>7} {'× forward':>10}"
    print(header)
    print("-" * len(header))
    for name, (p50, p90) in steps.items():
        print(f"{name:<46} {p50:>8.1f} {p90:>7.1f} {p50 / forward:>10.2f}")

    batches = {f"assess_batch(explain=True), batch {b}": batch_call(shipped, image, b) for b in (1, 8, 32)}
    per_study = time_interleaved(batches, max(args.repeats // 5, 3))
    first = next(iter(per_study.values()))[0]
    print()
    header = f"{'the worker, batched':<46} {'ms/study':>8} {'p90':>7} {'studies/s':>10} {'× batch 1':>10}"
    print(header)
    print("-" * len(header))
    for name, (p50, p90) in per_study.items():
        print(f"{name:<46} {p50:>8.1f} {p90:>7.1f} {1000 / p50:>10.1f} {first / p50:>10.2f}")


if __name__ == "__main__":
    main()
