"""Train v4 from v3: the CNN branch fine-tuned end to end with the right-for-the-right-reasons loss.

    python -m ml.cli.train_focus --base models/pneumoweb-v3.safetensors \\
        --data kermany=../shared/data/chest_xray/train --data nih=../shared/data/nih_pneumonia/labels.csv \\
        --rereads ../shared/data/nih_pneumonia/rsna.csv --boxes ../shared/data/nih_pneumonia/boxes.csv \\
        --out runs/v4/pneumoweb-v4.safetensors        # resumable: run it again after an interruption

What is trained and why: ``ml/training/focus.py``. The split is the base card's (rebuilt and checked
by digest), so v4's validation films are v3's and none of v3's training films are among them. Each
epoch is measured on validation: the fused model's AUC per source (the selection score, their mean,
as for v3), the CNN branch's own AUC, the AUC on radiologists' re-reads (opacity vs normal), and the
served map's pointing game and mass ratio on the boxed validation films. The best epoch's CNN is
written into a copy of the base checkpoint (fp16); then run ``ml.cli.calibrate``, ``ml.cli.fit_ood``
and ``ml.cli.fit_subtype`` on it (the card says so until they have run).
"""

import argparse
import datetime
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import cli_args as flags
from ..checkpoint import load_checkpoint, round_to_shipped_precision, save_checkpoint
from ..config import ModelConfig, get_preset
from ..explain import cam_heatmap
from ..localisation import film_record, summarise
from ..metrics import roc_auc
from ..model import HybridNet
from ..preprocessing import age_to_tensor
from ..training.features import Views
from ..training.focus import FocusConfig, cnn_outputs, fine_tune_cnn, grid_of, reread_labels
from ..training.loop import seed_everything
from ..training.rsna import load_boxes, load_rereads
from ..training.splits import SplitError, recorded_validation_split

log = logging.getLogger(__name__)


@torch.inference_mode()
def frozen_logits(model, samples, cache):
    """(ViT logits, age logits) of films as recorded: the frozen parts of v4, computed once and cached."""
    if cache.exists():
        return torch.load(cache, weights_only=True)
    model.eval()
    loader = torch.utils.data.DataLoader(Views(samples, model.config, 1, None, 0), batch_size=32)
    vit = []
    for images in loader:
        vit.append(model.heads["vit"](model.branch_features("vit", images)).float())
    ages = model.age_head(model.age(age_to_tensor([s.age for s in samples]))).squeeze(1).float()
    out = {"vit": torch.cat(vit), "age": ages}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, cache)
    return out


def measure(model, val, boxes, rereads, frozen, *, grid):
    """(selection score, report) of the current CNN on the validation films."""
    cnn, cams = cnn_outputs(model, val, boxes, grid=grid)
    fused = (cnn + frozen["vit"].numpy()) / 2 + frozen["age"].numpy()
    labels = np.array([s.label for s in val])
    sources = np.array([s.source for s in val])
    report = {"auc": {}, "cnn_auc": {}}
    for name in sorted(set(sources)):
        pick = sources == name
        report["auc"][name] = roc_auc(labels[pick], fused[pick])
        report["cnn_auc"][name] = roc_auc(labels[pick], cnn[pick])
    score = float(np.mean(list(report["auc"].values())))
    reread = [(i, rereads.get(Path(s.path).name)) for i, s in enumerate(val)]
    pairs = [(i, r == "opacity") for i, r in reread if r in ("opacity", "normal")]
    if pairs:
        index, y = zip(*pairs, strict=True)
        report["reread_auc"] = roc_auc(np.array(y, dtype=int), fused[list(index)])
        report["reread_n"] = len(pairs)
    records = []
    for i, sample in enumerate(val):
        film_boxes = boxes.get(Path(sample.path).name)
        if not film_boxes or sample.label != 1:
            continue
        with Image.open(sample.path) as im:
            shape = (im.height, im.width)
        heat = cam_heatmap(torch.from_numpy(cams[i]), model.config.image_size, sign=1.0)
        records.append(film_record({"combined": heat}, film_boxes, shape))
    if records:
        summary = summarise(records, resamples=200)
        report["pointing"] = summary["maps"]["combined"]["pointing"]
        report["mass_ratio"] = summary["maps"]["combined"]["mass_ratio"]
        report["chance"] = summary["chance"]["mean"]
        report["boxed_n"] = len(records)
    return score, report


def assemble(base_path, model, chosen, card, history, args, counts):
    """v3's checkpoint with the chosen CNN (fp16), its card saying what changed and what is still to run."""
    model.load_state_dict({**model.state_dict(), **chosen})
    round_to_shipped_precision(model)
    card = {k: v for k, v in card.items() if k not in ("weights_sha256", "config", "ood", "subtype")}
    card.update(
        name=args.name,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        base_model={"name": card.get("name"), "path": str(base_path)},
        training={**(card.get("training") or {}),
                  "focus": {"history": history, "args": json.loads(json.dumps(vars(args), default=str)),
                            "rereads": counts, "trained": "cnn.* and heads.cnn.* only; the rest is the base's"}},
        pending=["ml.cli.calibrate", "ml.cli.fit_ood", "ml.cli.fit_subtype"],
    )
    return save_checkpoint(model.cpu().to(memory_format=torch.contiguous_format), card, args.out)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, metavar="WEIGHTS",
                        help="the v3 checkpoint trained from (its split, ViT and age branch are kept)")
    flags.add_sources(parser)
    flags.add(parser, "--rereads", required=True)
    flags.add(parser, "--boxes", required=True)
    flags.add_out(parser, required=True, metavar="WEIGHTS.safetensors")
    flags.add(parser, "--name", default="pneumoweb-v4")
    parser.add_argument("--output-stride", type=int, default=16)
    flags.add(parser, "--epochs", default=3)
    flags.add(parser, "--epoch-samples", default=3000)
    flags.add_batch_size(parser, 24)
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of the CNN backbone")
    # Was --lr-head, which in ml.cli.train is the linear probe's rate: here it is the CNN head's while fine-tuning.
    flags.add(parser, "--lr-finetune-head", default=5e-4, old=("--lr-head",))
    flags.add(parser, "--weight-decay", default=0.05)
    flags.add(parser, "--age-dropout", default=0.3)
    parser.add_argument("--box-weight", type=float, default=FocusConfig.box_weight)
    parser.add_argument("--border-weight", type=float, default=FocusConfig.border_weight)
    parser.add_argument("--select", choices=("last", "score"), default="last",
                        help="the weights kept: the last epoch of the schedule (default), or the epoch with the best "
                             "mean per-source validation AUC")
    parser.add_argument("--no-rereads", action="store_true", help="train on NIH's labels (ablation)")
    parser.add_argument("--no-erasure", action="store_true", help="no border and marker erasure (ablation)")
    parser.add_argument("--stop-after", type=int, default=0,
                        help="ablation: stop after this many epochs of the --epochs schedule, write no checkpoint")
    flags.add_threads(parser)
    flags.add_workers(parser)
    flags.add_seed(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    base, card = load_checkpoint(args.base)
    try:
        val, train = recorded_validation_split(card.raw, dict(args.data))
    except SplitError as exc:
        parser.exit(2, f"ml.cli.train_focus: {exc}\n")
    rereads, boxes = load_rereads(args.rereads), load_boxes(args.boxes)
    train, counts = (train, {}) if args.no_rereads else reread_labels(train, rereads)
    focus_preset = get_preset("lite0os16-dinov2s8-cam")  # v4's architecture
    config = ModelConfig.from_dict({**base.config.to_dict(), "name": focus_preset.name,
                                    "cnn_kwargs": {"output_stride": args.output_stride},
                                    "cnn_map": focus_preset.cnn_map, "maps": focus_preset.maps})
    model = HybridNet(config)
    model.load_state_dict(base.state_dict())
    model = model.float().to(memory_format=torch.channels_last)
    grid = grid_of(model)
    run_dir = args.out.with_suffix(".run")
    frozen = frozen_logits(model, val, run_dir / "val-frozen.pt")
    boxed_train = sum(1 for s in train if s.label == 1 and Path(s.path).name in boxes)
    log.info("train %d films (%d with boxes), val %d; re-reads %s; grid %d×%d", len(train), boxed_train, len(val),
             counts, grid, grid)

    def evaluate(m, epoch):
        score, report = measure(m, val, boxes, rereads, frozen, grid=grid)
        return score, report

    if not (run_dir / "focus.state.pt").exists():
        score, report = evaluate(model, 0)
        log.info("start (base CNN, dilated): score %.4f %s", score, report)
    focus = replace(FocusConfig(), box_weight=args.box_weight, border_weight=args.border_weight)
    if args.no_erasure:
        focus = replace(focus, p_border=0.0, p_marker=0.0, p_corner=0.0)
    best, history, last = fine_tune_cnn(
        model, train, val, boxes=boxes, run_dir=run_dir, epochs=args.epochs, epoch_samples=args.epoch_samples,
        batch_size=args.batch_size, lr=args.lr, lr_head=args.lr_finetune_head, weight_decay=args.weight_decay,
        age_dropout=args.age_dropout, seed=args.seed, evaluate=evaluate, focus=focus, workers=args.workers,
        stop_after=args.stop_after, log=log.info)
    if args.stop_after:
        log.info("stopped after epoch %d (ablation): %s", args.stop_after, json.dumps(history[-1], default=str))
        return
    chosen = last if args.select == "last" else best
    saved = assemble(args.base, model, chosen, card.raw, history, args, counts)
    log.info("wrote %s (sha256 %s); next: ml.cli.calibrate, ml.cli.fit_ood, ml.cli.fit_subtype", args.out,
             saved["weights_sha256"])


if __name__ == "__main__":
    main()
