"""CPU runtimes for the shipped model, side by side in one run: PyTorch eager, torch.compile,
ONNX Runtime, and int8 dynamic quantisation (every Linear layer: the ViT and the heads).

    pip install -r requirements-bench.txt          # onnxruntime
    python bench/bench_runtimes.py --threads 2 [--films runs/splits/kermany-val.csv --films runs/splits/nih-val.csv]

For each runtime: milliseconds per film at batch 1 (median of interleaved rounds), films/s at
batch 16, and on the validation films (``--films``: CSVs from ``python -m ml.cli.export_split``, or the
60 fixture films by default) the AUC per source, the largest change of P(pneumonia) against eager
and how many decisions (at each film's population point) change. Every runtime computes the
classifier's logits from the same preprocessed tensors; the heatmaps need gradients, which only
eager PyTorch gives, so a runtime that wins here can only serve the score path.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import cli_args as flags
from ml.decode import decode_image
from ml.inference import Predictor
from ml.metrics import roc_auc
from ml.preprocessing import image_to_tensor
from ml.training.data import load_samples

FIXTURES = ROOT / "tests" / "fixtures" / "validation"


class Logits(torch.nn.Module):
    """images, model ages → logits: the part every runtime runs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, ages):
        return self.model(images, ages)


def eager(predictor):
    module = Logits(predictor.model).eval()
    return lambda x, a: module(x.contiguous(memory_format=torch.channels_last), a)


def compiled(predictor):
    module = torch.compile(Logits(predictor.model).eval(), dynamic=True)
    return lambda x, a: module(x.contiguous(memory_format=torch.channels_last), a)


def onnx_runtime(predictor, threads):
    import onnxruntime

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    module = Logits(predictor.model.to(memory_format=torch.contiguous_format)).eval()
    example = (torch.zeros(2, 3, 224, 224), torch.zeros(2, 2))
    torch.onnx.export(module, example, str(path), input_names=["images", "ages"], output_names=["logits"],
                      dynamic_axes={"images": {0: "n"}, "ages": {0: "n"}, "logits": {0: "n"}}, opset_version=18,
                      dynamo=False)
    predictor.model.to(memory_format=torch.channels_last)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x, a: torch.from_numpy(session.run(["logits"], {"images": x.numpy(), "ages": a.numpy()})[0])


def int8_dynamic(predictor):
    import copy

    model = copy.deepcopy(predictor.model).to(memory_format=torch.contiguous_format)
    quantized = torch.ao.quantization.quantize_dynamic(Logits(model).eval(), {torch.nn.Linear}, dtype=torch.qint8)
    return lambda x, a: quantized(x, a)


def films(args):
    sources = args.films or [FIXTURES / "kermany", FIXTURES / "nih" / "labels.csv"]
    samples = []
    for source in sources:
        name = Path(source).stem.split("-")[0] if Path(source).suffix == ".csv" else Path(source).name
        samples += [(name, s) for s in load_samples(source)]
    return samples


def timed(run, x, a, repeats):
    values = []
    for _ in range(repeats):
        run(x, a)  # re-warm after the other rows
        start = time.perf_counter()
        run(x, a)
        values.append((time.perf_counter() - start) * 1000 / len(x))
    return statistics.median(values)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_model(parser)
    flags.add_threads(parser, 2)
    flags.add(parser, "--repeats", default=15)
    flags.add_films(parser, several=True, required=False, old=("--data",))
    parser.add_argument("--skip", action="append", default=[], help="leave out a runtime (compile, onnx, int8)")
    return parser


def main():
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.model, device="cpu")

    runtimes = {"eager": eager(predictor)}
    builders = {"compile": lambda: compiled(predictor), "onnx": lambda: onnx_runtime(predictor, args.threads),
                "int8": lambda: int8_dynamic(predictor)}
    names = {"compile": "torch.compile (inductor)", "onnx": "ONNX Runtime", "int8": "int8 dynamic (Linear)"}
    failures = {}
    for key, build in builders.items():
        if key in args.skip:
            continue
        try:
            started = time.perf_counter()
            runtimes[names[key]] = build()
            runtimes[names[key]](torch.zeros(1, 3, 224, 224), torch.zeros(1, 2))  # compile/first-run cost here
            print(f"{names[key]}: ready in {time.perf_counter() - started:.1f} s", flush=True)
        except Exception as exc:  # noqa: BLE001 - a runtime that does not run here is a row that says why
            failures[names[key]] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"

    samples = films(args)
    tensors = torch.stack([image_to_tensor(decode_image(s.path), predictor.model.config) for _, s in samples])
    ages = predictor.model_ages([s.age if s.age is not None else 3.0 for _, s in samples])
    points = [predictor.point(s.age if s.age is not None else 3.0) for _, s in samples]
    labels = np.array([s.label for _, s in samples])
    groups = np.array([g for g, _ in samples])

    one, sixteen = tensors[:1], tensors[:16]
    results = {}
    with torch.inference_mode():
        for name, run in runtimes.items():
            logits = torch.cat([run(tensors[i:i + 32], ages[i:i + 32]) for i in range(0, len(tensors), 32)]).float()
            probabilities = np.array([torch.sigmoid(logit / p.temperature).item() for logit, p in zip(logits, points)])
            results[name] = {"probabilities": probabilities}
        for _ in range(2):  # warm-up rounds
            for run in runtimes.values():
                run(one, ages[:1])
        for name, run in runtimes.items():
            results[name]["b1"] = timed(run, one, ages[:1], args.repeats)
            results[name]["b16"] = 1000 / timed(run, sixteen, ages[:16], max(args.repeats // 3, 3))

    base = results["eager"]
    decisions = np.array([p.threshold for p in points])
    print(f"\ntorch {torch.__version__}, {args.threads} threads, {len(samples)} validation films "
          f"({', '.join(f'{g}: {int((groups == g).sum())}' for g in sorted(set(groups)))})")
    header = (f"{'runtime':<26} {'ms/film b1':>10} {'× eager':>8} {'films/s b16':>11} {'× eager':>8} "
              + " ".join(f"{'AUC ' + g:>12}" for g in sorted(set(groups))) + f" {'max |Δp|':>9} {'decisions Δ':>11}")
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        aucs = " ".join(f"{roc_auc(labels[groups == g], row['probabilities'][groups == g]):>12.4f}"
                        for g in sorted(set(groups)))
        changed = int(((row["probabilities"] >= decisions) != (base["probabilities"] >= decisions)).sum())
        delta = float(np.abs(row["probabilities"] - base["probabilities"]).max())
        print(f"{name:<26} {row['b1']:>10.1f} {row['b1'] / base['b1']:>8.2f} {row['b16']:>11.1f} "
              f"{row['b16'] / base['b16']:>8.2f} {aucs} {delta:>9.4f} {changed:>11}")
    for name, reason in failures.items():
        print(f"{name:<26} did not run: {reason}")


if __name__ == "__main__":
    main()
