"""Throughput against batch size on a GPU (or the CPU), for the shipped model.

    python bench/bench_gpu.py --device cuda --batches 1,8,32,128,256 [--precision bf16] [--peak-tflops 989]
    python bench/bench_gpu.py --device cpu --batches 1,8 --threads 2        # the same code path, here

For each batch size: films/s of the forward pass (score path) and of the worker's
``assess_batch(..., explain=True)`` (with the heatmaps), p50/p99 milliseconds per batch, peak device
memory, and the achieved FLOP/s as a share of the device's peak (the roofline ratio; FLOPs
counted with ``torch.utils.flop_counter``). Autocast bf16 and channels-last on CUDA, as the worker
serves them.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import cli_args as flags
from ml.constants import DEFAULT_WEIGHTS
from ml.decode import decode_image
from ml.device import pick_device
from ml.inference import Predictor
from ml.preprocessing import image_to_tensor

XRAY = ROOT / "tests" / "fixtures" / "xrays" / "pneumonia-1.jpeg"


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_film(predictor, tensor, ages):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        predictor.model(tensor[:1], ages[:1])
    return counter.get_total_flops()


def measure(call, device, repeats):
    for _ in range(3):
        call()
    synchronise(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronise(device)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_device(parser)
    flags.add(parser, "--batches", default="1,8,32,128")
    parser.add_argument("--precision", default="auto")
    flags.add(parser, "--repeats", default=20)
    flags.add_threads(parser)
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the device's dense peak, for the roofline ratio")
    flags.retire(parser, "--skip-full", "the full preset is retired: there is no such row")
    return parser


def main():
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    image = decode_image(XRAY)
    models = {"shipped": Predictor.load(DEFAULT_WEIGHTS, device=device, precision=args.precision)}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}, precision {next(iter(models.values())).precision}")
    header = (f"{'model':<30} {'batch':>5} {'films/s fwd':>11} {'p50 ms':>8} {'p99 ms':>8} {'films/s +maps':>13}"
              f" {'GFLOP/film':>10} {'TFLOP/s':>8} {'% peak':>7} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for label, predictor in models.items():
        for batch in [int(b) for b in args.batches.split(",")]:
            tensor = torch.stack([image_to_tensor(image, predictor.model.config)] * batch)
            tensor = tensor.to(device, memory_format=torch.channels_last)
            ages = predictor.model_ages([40.0] * batch).to(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)

            def forward(predictor=predictor, tensor=tensor, ages=ages):
                with torch.inference_mode(), predictor.autocast():
                    predictor.model(tensor, ages)

            items = [(image, None, 40.0, "PA")] * batch
            p50, p99 = measure(forward, device, args.repeats)
            maps_p50, _ = measure(lambda predictor=predictor, items=items: predictor.assess_batch(items, explain=True), device, max(args.repeats // 4, 3))
            flops = flops_per_film(predictor, tensor, ages)
            achieved = flops * batch / (p50 / 1000) / 1e12
            share = f"{100 * achieved / args.peak_tflops:.1f}" if args.peak_tflops else "—"
            memory = torch.cuda.max_memory_allocated(device) / 1e6 if device.type == "cuda" else float("nan")
            print(f"{label:<30} {batch:>5} {batch * 1000 / p50:>11.1f} {p50:>8.1f} {p99:>8.1f}"
                  f" {batch * 1000 / maps_p50:>13.1f} {flops / 1e9:>10.2f} {achieved:>8.2f} {share:>7} {memory:>8.0f}")


if __name__ == "__main__":
    main()
