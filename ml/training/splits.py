"""The patient-grouped split a model card records, rebuilt from the training sources.

Every source is split again with the card's seed and validation share (``ml.training.data``)
and must hash to the digest the card recorded, so no other films can tune or measure the
model as if they were its validation split. Used by the commands that work on a trained
checkpoint's split: ``ml.cli.calibrate``, ``ml.cli.fit_ood``, ``ml.cli.ablation``,
``ml.cli.export_split``.
"""

from .data import load_source


class SplitError(Exception):
    """The card's split cannot be rebuilt from the data given (a message for people)."""


def recorded_validation_split(card, data, *, sources=None):
    """(validation, training) films the card was trained with, rebuilt from ``data`` ({source name: path}).

    ``card``: the card's dict (``ml.card.ModelCard.raw``). ``sources``: only these of the card's sources
    (default: all of them, each of which ``data`` must then give). Refuses other data with :class:`SplitError`.
    """
    info = card.get("training_data") or {}
    recorded = info.get("sources") or {}
    if not recorded or "seed" not in (info.get("split") or {}) or (card.get("args") or {}).get("limit"):
        raise SplitError("the card records no rebuildable validation split (trained on a random subset?)")
    if sources is not None:
        unknown = sorted(set(sources) - set(recorded))
        if unknown:
            raise SplitError(f"the card records no training source {', '.join(unknown)}")
        recorded = {name: spec for name, spec in recorded.items() if name in sources}
    missing = sorted(set(recorded) - set(data))
    if missing:
        raise SplitError(f"give the path of every training source: missing {', '.join(missing)}")
    val, train = [], []
    for name, spec in recorded.items():
        source = load_source(name, data[name], val_fraction=spec["val_fraction"], seed=info["split"]["seed"])
        if source.digest != spec["sha256"]:
            raise SplitError(f"{data[name]} does not match the data this model was trained on "
                             f"(source {name}: sha256 differs)")
        val += source.val
        train += source.train
    return val, train
