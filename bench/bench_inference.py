"""CPU (or GPU) latency of the model presets, measured side by side in one run.

    python bench/bench_inference.py [--threads 2] [--repeats 30] [--model models/pneumoweb-compact.safetensors]

Prints one row per model: milliseconds per image at batch 1 (median and p90 over
``--repeats`` runs after warm-up), images/s at batch 16, parameters, checkpoint size,
and each latency as a ratio to the shipped compact model. Target: compact ≤ 50 ms per
image at batch 1 with 2 threads.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.checkpoint import DEFAULT_WEIGHTS  # noqa: E402
from ml.config import get_preset  # noqa: E402
from ml.inference import Predictor  # noqa: E402
from ml.model import HybridNet  # noqa: E402
from ml.preprocessing import decode_image  # noqa: E402

XRAY = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "xrays" / "pneumonia-1.jpeg"


def time_predictor(predictor, image, batch, repeats):
    items = [(image, 3.0)] * batch
    for _ in range(3):
        predictor.predict(items)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(items)
        samples.append((time.perf_counter() - start) * 1000 / batch)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--model", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-full", action="store_true", help="leave out the (slow) full preset")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = decode_image(XRAY)

    rows = []
    shipped = Predictor.load(args.model, device=args.device)
    size = args.model.stat().st_size / 1e6 if args.model.exists() else float("nan")
    rows.append((f"compact (shipped: {shipped.name})", shipped, size))
    # The same weights in PyTorch's default layout: what channels-last buys.
    contiguous = Predictor.load(args.model, device=args.device)
    contiguous.model.to(memory_format=torch.contiguous_format)
    contiguous.layout = torch.contiguous_format
    rows.append(("compact, contiguous layout", contiguous, size))
    if not args.skip_full:
        torch.manual_seed(0)
        full = HybridNet(get_preset("full")).to(args.device).eval()
        rows.append(("full (resnet50 + vit_base, random weights)", Predictor(full, "full", "-"), float("nan")))

    results = []
    for name, predictor, size_mb in rows:
        p50, p90 = time_predictor(predictor, image, 1, args.repeats)
        b16, _ = time_predictor(predictor, image, 16, max(args.repeats // 5, 3))
        params = sum(p.numel() for p in predictor.model.parameters()) / 1e6
        results.append((name, p50, p90, 1000 / b16, params, size_mb))

    base = results[0][1]
    print(f"device {args.device}, torch threads {args.threads}, torch {torch.__version__}")
    header = f"{'model':<46} {'ms/img b1 p50':>13} {'p90':>7} {'img/s b16':>10} {'params M':>9} {'ckpt MB':>8} {'× compact':>10}"
    print(header)
    print("-" * len(header))
    for name, p50, p90, throughput, params, size_mb in results:
        print(f"{name:<46} {p50:>13.1f} {p90:>7.1f} {throughput:>10.1f} {params:>9.1f} {size_mb:>8.1f} {p50 / base:>10.2f}")


if __name__ == "__main__":
    main()
