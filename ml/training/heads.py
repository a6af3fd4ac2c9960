"""The fusion layers (branch heads + age branch) and their loss; fitting them on fixed features.

One loss for both stages of training: the linear probe here (backbones fixed, features
cached) and end-to-end fine-tuning (``ml.training.loop``). The loss is the fused logit's cross-entropy plus ``aux_weight`` times each image branch's own (branch logit +
age logit), so each branch stays a predictor on its own.
"""

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics import roc_auc
from ..preprocessing import age_to_tensor


@dataclass
class FeatureSet:
    """Fixed features of some films: {branch: (n, d)}, recorded ages (None = missing), labels, sources."""

    features: dict
    ages: list
    labels: torch.Tensor
    sources: list

    def __len__(self):
        return len(self.labels)

    def rows(self, index):
        return [f[index] for f in self.features.values()]


def feature_set(features, samples, views=1):
    """A FeatureSet for view-major features of ``samples`` (as ``ml.training.features.extract`` returns)."""
    return FeatureSet(features, [s.age for s in samples] * views,
                      torch.tensor([float(s.label) for s in samples] * views), [s.source for s in samples] * views)


def drop_ages(ages, rng, probability):
    """Recorded ages, each fed as missing with ``probability``."""
    if not probability:
        return list(ages)
    return [None if age is not None and rng.random() < probability else age for age in ages]


def head_penalty(model):
    """L2 on the branch heads' weights (features are standardised, so one strength fits every branch)."""
    return sum(head.linear.weight.pow(2).sum() for head in model.heads.values())


def fusion_loss(model, image_features, ages, targets, *, aux_weight=1.0, l2=0.0):
    logits, age_logit = model.branch_logits(image_features, ages)
    total = (torch.stack(list(logits.values())).mean(0) if logits else 0.0) + age_logit
    loss = F.binary_cross_entropy_with_logits(total, targets)
    if aux_weight and len(logits) > 1:
        loss = loss + aux_weight * torch.stack(
            [F.binary_cross_entropy_with_logits(logit + age_logit, targets) for logit in logits.values()]).mean()
    return loss + l2 * head_penalty(model)


@torch.inference_mode()
def fused_logits(model, data, batch_size=1024):
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        index = slice(start, start + batch_size)
        out.append(model.fuse(data.rows(index), age_to_tensor(data.ages[index])))
    return torch.cat(out).numpy()


def source_aucs(labels_logits):
    """{source: AUC} from {source: (labels, logits)}, and their mean (the selection score)."""
    aucs = {name: roc_auc(labels, logits) for name, (labels, logits) in labels_logits.items()}
    finite = [a for a in aucs.values() if math.isfinite(a)]
    return aucs, (float(np.mean(finite)) if finite else -1.0)


def validation_loss(logits, labels):
    return float(F.binary_cross_entropy_with_logits(torch.as_tensor(logits, dtype=torch.float64),
                                                    torch.as_tensor(labels, dtype=torch.float64)))


def split_by_source(data, logits):
    sources = np.asarray(data.sources)
    labels = data.labels.numpy().astype(int)
    return {name: (labels[sources == name], logits[sources == name]) for name in sorted(set(data.sources))}


def fit_heads(model, train, val, *, weights, epochs=40, lr=1e-3, l2=0.01, aux_weight=1.0, age_dropout=0.3,
              batch_size=128, seed=0, log=print):
    """Fit the fusion layers on fixed features; keeps the epoch with the best mean per-source validation AUC.

    ``weights``: one sampling weight per training row (``ml.training.data.balance_weights``). The
    branch heads' standardisation must already be set (``BranchHead.set_statistics``).
    """
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    parameters = model.head_parameters()
    optimizer = torch.optim.Adam(parameters, lr=lr)
    weights = torch.as_tensor(weights, dtype=torch.float64)
    best, history = None, []
    for epoch in range(epochs):
        model.train()
        draw = torch.multinomial(weights, len(train), replacement=True, generator=generator)
        losses = []
        for index in draw.split(batch_size):
            ages = age_to_tensor(drop_ages([train.ages[i] for i in index.tolist()], rng, age_dropout))
            loss = fusion_loss(model, train.rows(index), ages, train.labels[index], aux_weight=aux_weight, l2=l2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        logits = fused_logits(model, val)
        aucs, score = source_aucs(split_by_source(val, logits))
        val_loss = validation_loss(logits, val.labels.numpy())
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                        "val_auc": aucs, "score": score})
        # Best = highest mean per-source AUC; equal AUCs (common on small sets) go to the lower loss.
        if best is None or (score, -val_loss) > best[0]:
            best = ((score, -val_loss), epoch + 1, copy.deepcopy(model.state_dict()))
        if log and ((epoch + 1) % 10 == 0 or epoch == epochs - 1):
            log(f"  heads epoch {epoch + 1}/{epochs}: loss {history[-1]['train_loss']:.4f} "
                + " ".join(f"{k} {v:.4f}" for k, v in aucs.items()))
    model.load_state_dict(best[2])
    return {"best_epoch": best[1], "best_score": best[0][0], "history": history}
