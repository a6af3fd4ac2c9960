"""Does a heatmap point at the opacity? Pointing game and mass ratio against radiologists' boxes.

Contract (numpy and PIL only, no torch):

- A *heatmap* is a 2-D array over the whole image as the model was given it. The model squashes
  the whole file to ``size × size`` (``ml.preprocessing.image_to_tensor``: no crop, no padding,
  aspect ratio not kept), and ``ml.explain`` returns its maps at that ``size × size``; so a map
  maps back to the file by resizing it to the file's ``(height, width)`` — :func:`to_file_pixels`
  (bilinear), which every measure here calls first. Any lower resolution works the same way.
- A *box* is ``(x, y, w, h)`` in file pixels, origin at the top left, x to the right, y down
  (``ml.training.rsna.load_boxes``). Pixel ``(row, col)`` covers ``[col, col + 1) × [row, row + 1)``
  and is inside a box when its centre ``(col + ½, row + ½)`` is: ``x ≤ col + ½ < x + w`` and
  ``y ≤ row + ½ < y + h``. The boxes of a film count as their union.
- :func:`pointing_hit`: whether the map's peak pixel (the first one in row-major order on a tie)
  is inside a box. :func:`chance_pointing`: the union's share of the image's pixels, i.e. the hit
  rate of a peak placed uniformly at random.
- :func:`mass_ratio`: the share of the map's non-negative mass (negative values count as 0) inside
  the union, divided by the union's share of the area: 1.0 for a uniform map (no better than
  chance), ``1 / area share`` when all the mass is inside. NaN when the map has no positive mass
  or the film no box pixel.
- :func:`film_record` measures one film's maps; :func:`summarise` turns such records into per-map
  pointing rates and mean mass ratios with the chance baseline, each with a percentile-bootstrap
  95 % interval over films (films resampled jointly across maps, 1,000 resamples, seed 0, as in
  ``ml.metrics.bootstrap_intervals``).
"""

import numpy as np
from PIL import Image

MAP_NAMES = ("combined", "cnn", "vit")


def to_file_pixels(heatmap, shape):
    """The map resized (bilinear) to the file's ``(height, width)``, as float64; unchanged when it already is."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2:
        raise ValueError(f"a heatmap is 2-D, got shape {heatmap.shape}")
    height, width = (int(v) for v in shape)
    if heatmap.shape == (height, width):
        return heatmap
    resized = Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def box_mask(boxes, shape):
    """Boolean (height, width) mask of the union of the boxes (pixel centres inside, see the module doc)."""
    height, width = (int(v) for v in shape)
    mask = np.zeros((height, width), dtype=bool)
    centres_x = np.arange(width) + 0.5
    centres_y = np.arange(height) + 0.5
    for x, y, w, h in boxes:
        cols = (centres_x >= x) & (centres_x < x + w)
        rows = (centres_y >= y) & (centres_y < y + h)
        mask |= rows[:, None] & cols[None, :]
    return mask


def chance_pointing(boxes, shape):
    """The boxes' (union's) share of the image's pixels: the expected hit rate of a uniformly random peak."""
    return float(box_mask(boxes, shape).mean())


def peak(heatmap, shape):
    """(row, col) of the map's peak in file pixels (first in row-major order on a tie)."""
    resized = to_file_pixels(heatmap, shape)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(resized)), resized.shape))


def pointing_hit(heatmap, boxes, shape=None):
    """Whether the map's peak, in file pixels, lies inside any box; ``shape`` is the file's (height, width)."""
    shape = np.shape(heatmap) if shape is None else shape
    row, col = peak(heatmap, shape)
    return bool(box_mask(boxes, shape)[row, col])


def mass_ratio(heatmap, boxes, shape=None):
    """(share of the map's non-negative mass inside the boxes) ÷ (the boxes' share of the area); NaN if undefined."""
    shape = np.shape(heatmap) if shape is None else shape
    heat = np.clip(to_file_pixels(heatmap, shape), 0, None)
    mask = box_mask(boxes, shape)
    total, share = heat.sum(), mask.mean()
    if total <= 0 or share == 0:
        return float("nan")
    return float(heat[mask].sum() / total / share)


def film_record(maps, boxes, shape, **extra):
    """One film's measures: ``maps`` is {name: 2-D map or None}; ``shape`` the file's (height, width).

    Returns {"chance": …, "hit": {name: bool}, "mass": {name: float}, **extra} (maps that are None are left out).
    """
    maps = {name: heat for name, heat in maps.items() if heat is not None}
    return {
        "chance": chance_pointing(boxes, shape),
        "hit": {name: pointing_hit(heat, boxes, shape) for name, heat in maps.items()},
        "mass": {name: mass_ratio(heat, boxes, shape) for name, heat in maps.items()},
        **extra,
    }


def _interval(values, index, level):
    """Percentile interval of the mean of ``values`` over bootstrap ``index`` rows (NaN values skipped)."""
    samples = values[index]
    valid = np.isfinite(samples)
    counts = valid.sum(1)
    means = np.where(valid, samples, 0).sum(1)[counts > 0] / counts[counts > 0]
    if not means.size:
        return None
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def summarise(records, *, resamples=1000, level=0.95, seed=0):
    """Per map: pointing-game rate, mean mass ratio, and the pointing rate minus chance; plus the chance baseline.

    ``records``: :func:`film_record` results. Returns {"n", "chance": {"mean", "interval"},
    "maps": {name: {"n", "pointing", "pointing_interval", "pointing_minus_chance",
    "pointing_minus_chance_interval", "mass_ratio", "mass_ratio_interval", "n_mass"}}}; intervals
    are percentile-bootstrap over films, the same resampled films for every figure.
    """
    records = list(records)
    n = len(records)
    out = {"n": n, "chance": {"mean": None, "interval": None}, "maps": {}}
    if not n:
        return out
    index = np.random.default_rng(seed).integers(0, n, (resamples, n))
    chance = np.array([r["chance"] for r in records], dtype=np.float64)
    out["chance"] = {"mean": float(chance.mean()), "interval": _interval(chance, index, level)}
    names = [name for name in MAP_NAMES if any(name in r["hit"] for r in records)]
    names += sorted({name for r in records for name in r["hit"]} - set(names))
    for name in names:
        hits = np.array([float(r["hit"][name]) if name in r["hit"] else np.nan for r in records])
        mass = np.array([r["mass"].get(name, np.nan) for r in records], dtype=np.float64)
        above = hits - chance
        out["maps"][name] = {
            "n": int(np.isfinite(hits).sum()),
            "pointing": float(np.nanmean(hits)),
            "pointing_interval": _interval(hits, index, level),
            "pointing_minus_chance": float(np.nanmean(above)),
            "pointing_minus_chance_interval": _interval(above, index, level),
            "n_mass": int(np.isfinite(mass).sum()),
            "mass_ratio": float(np.nanmean(mass)) if np.isfinite(mass).any() else float("nan"),
            "mass_ratio_interval": _interval(mass, index, level),
        }
    return out


def format_summary(summary, title="heatmaps vs boxes"):
    """A small Markdown table of :func:`summarise`'s result."""

    def cell(value, interval, fmt="{:.3f}"):
        text = "—" if value is None or not np.isfinite(value) else fmt.format(value)
        return text + (f" [{fmt.format(interval[0])}, {fmt.format(interval[1])}]" if interval else "")

    chance = summary["chance"]
    lines = [f"{title}: n = {summary['n']} films, chance (box area share) "
             + cell(chance["mean"], chance["interval"]),
             "| map | n | pointing game | pointing − chance | mass ratio (1 = chance) |", "|---|---|---|---|---|"]
    for name, row in summary["maps"].items():
        lines.append(f"| {name} | {row['n']} | {cell(row['pointing'], row['pointing_interval'])}"
                     f" | {cell(row['pointing_minus_chance'], row['pointing_minus_chance_interval'])}"
                     f" | {cell(row['mass_ratio'], row['mass_ratio_interval'], '{:.2f}')} |")
    return "\n".join(lines)
