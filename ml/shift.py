"""Named, deterministic site shifts of a decoded film, applied before the standard preprocessing. No torch.

Each function takes an 8-bit grayscale PIL image (``ml.decode``'s output) and returns one of the same
size and mode, so ``ml.preprocessing.image_to_tensor`` then does exactly what it does in serving. None
draws at random: the same film always gives the same shifted film (the noise is seeded by the film's
own pixels). ``SHIFTS`` maps each name to its function; ``"none"`` is the identity, the in-source
reference. ``python -m ml.cli.shift`` measures a model's operating points under each of them.

These are proxies for another hospital, not another hospital: they move one property of the film at a
time, by a fixed amount. The training augmentation (``ml.training.augment``) draws from ranges that
include most of the photometric ones and the zoom-in and rotation, so the model was trained to ignore
them; histogram equalisation, zoom-out, translation and tight framing are outside what it saw.

Sizes "at 224 scale" (the blur, the noise) are given in pixels of the model's 224×224 input and scaled
to the film's own size, so a 512-px film and a 224-px film are disturbed alike once resized.
"""

import io
import zlib

import numpy as np
from PIL import Image, ImageFilter, ImageOps

MODEL_SIDE = 224  # the model's input side: the scale of the blur and noise sizes


def _lut(image, function):
    table = np.clip(np.rint(function(np.arange(256, dtype=np.float64))), 0, 255).astype(np.uint8)
    return image.point(table.tolist())


def border_median(image):
    """The median gray level of the film's outermost pixels: what a detector shows where there is no body."""
    a = np.asarray(image)
    return int(np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])))


def _on_canvas(image, content, offset):
    """``content`` pasted at ``offset`` on a canvas of ``image``'s size filled with its border's median."""
    canvas = Image.new("L", image.size, border_median(image))
    canvas.paste(content, offset)
    return canvas


# --- photometric: the same anatomy, another machine, exposure or export -----------------------------------


def none(image):
    """The film as it is: the in-source reference."""
    return image


def gamma(g):
    def shift(image):
        return _lut(image, lambda x: 255.0 * (x / 255.0) ** g)

    shift.__doc__ = (f"Gamma {g}: another detector response or exposure curve (look-up table); below 1 the film "
                     "is lighter, above 1 darker.")
    return shift


def contrast(factor):
    def shift(image):
        mean = float(np.asarray(image).mean())
        return _lut(image, lambda x: mean + factor * (x - mean))

    shift.__doc__ = (f"Contrast ×{factor} around the film's mean: another kVp, window or post-processing "
                     "(flatter or harder films).")
    return shift


def brightness(amount):
    def shift(image):
        return _lut(image, lambda x: x + 255.0 * amount)

    shift.__doc__ = f"Brightness {amount:+} of full scale: over- or under-exposure, another default window level."
    return shift


def blur(image, sigma=1.5):
    """Gaussian blur, σ = 1.5 px at 224 scale: a softer detector or focal spot, a film digitised by a scanner."""
    w, h = image.size
    return image.filter(ImageFilter.GaussianBlur((sigma * w / MODEL_SIDE, sigma * h / MODEL_SIDE)))


def noise(image, sigma=0.03):
    """Gaussian noise, σ = 0.03 of full scale at 224 scale: a lower dose, a noisier detector.

    The noise field is drawn on the 224×224 grid (seeded by the film's pixels) and resized to the film.
    """
    rng = np.random.default_rng(zlib.crc32(image.tobytes()))
    field = Image.fromarray(rng.normal(0.0, sigma * 255.0, (MODEL_SIDE, MODEL_SIDE)).astype(np.float32), mode="F")
    field = np.asarray(field.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.asarray(image, dtype=np.float32) + field
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="L")


def jpeg(image, quality=25):
    """JPEG re-encoding at quality 25, at the film's own size: a PACS or teleradiology export, a screenshot."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L")


def equalise(image):
    """Global histogram equalisation: sites that process films for display (flattens the gray levels)."""
    return ImageOps.equalize(image)


# --- geometric: the same film, framed or positioned otherwise --------------------------------------------


def zoom_in(image, keep=0.85):
    """Centre crop of 85 % of each side, resized back: tighter collimation, a larger patient on the same detector."""
    w, h = image.size
    cw, ch = round(w * keep), round(h * keep)
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch)).resize(image.size, Image.Resampling.BILINEAR)


def zoom_out(image, keep=0.85):
    """Shrunk to 85 % of each side, centred, padded with the border's median: wider collimation, a small child
    on a large detector."""
    w, h = image.size
    small = image.resize((round(w * keep), round(h * keep)), Image.Resampling.BILINEAR)
    return _on_canvas(image, small, ((w - small.width) // 2, (h - small.height) // 2))


def rotate(degrees):
    def shift(image):
        return image.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=border_median(image))

    shift.__doc__ = (f"Rotation by {degrees:+}° (counter-clockwise positive), corners filled with the border's "
                     "median: a patient not square to the detector (common in bedside and pediatric films).")
    return shift


def translate(image, fraction=0.08):
    """Moved right and down by 8 % of each side, the gap filled with the border's median: an off-centre patient."""
    w, h = image.size
    return _on_canvas(image, image, (round(w * fraction), round(h * fraction)))


def body_box(image, tolerance=20, min_share=0.1):
    """(left, top, right, bottom) of the body: the rows and columns of which at least ``min_share`` of the pixels
    differ from the border's median by more than ``tolerance`` gray levels (measured on a 3×3-median-filtered
    copy, so noise and small text markers do not count). The whole film when nothing qualifies."""
    a = np.asarray(image.filter(ImageFilter.MedianFilter(3)), dtype=np.int16)
    body = np.abs(a - border_median(image)) > tolerance
    rows = np.flatnonzero(body.mean(1) >= min_share)
    cols = np.flatnonzero(body.mean(0) >= min_share)
    if not rows.size or not cols.size:
        return 0, 0, image.width, image.height
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def tight_frame(image):
    """The whole chest framed tightly: cropped to :func:`body_box` and resized back to the film's size, as
    sites that collimate hard or crop before export send it (the OOD gate is reported to refuse such films)."""
    box = body_box(image)
    if box == (0, 0, image.width, image.height):
        return image.copy()
    return image.crop(box).resize(image.size, Image.Resampling.BILINEAR)


SHIFTS = {
    "none": none,
    "gamma_0.6": gamma(0.6),
    "gamma_1.6": gamma(1.6),
    "contrast_0.7": contrast(0.7),
    "contrast_1.3": contrast(1.3),
    "brightness_+0.1": brightness(0.1),
    "brightness_-0.1": brightness(-0.1),
    "blur_1.5": blur,
    "noise_0.03": noise,
    "jpeg_25": jpeg,
    "equalise": equalise,
    "zoom_in_85": zoom_in,
    "zoom_out_85": zoom_out,
    "rotate_+8": rotate(8.0),
    "rotate_-8": rotate(-8.0),
    "translate_8": translate,
    "tight_frame": tight_frame,
}
PHOTOMETRIC = ("gamma_0.6", "gamma_1.6", "contrast_0.7", "contrast_1.3", "brightness_+0.1", "brightness_-0.1",
               "blur_1.5", "noise_0.03", "jpeg_25", "equalise")
GEOMETRIC = ("zoom_in_85", "zoom_out_85", "rotate_+8", "rotate_-8", "translate_8", "tight_frame")


def apply(name, image):
    """``SHIFTS[name]`` applied to a grayscale film (converted to mode L first)."""
    if image.mode != "L":
        image = image.convert("L")
    return SHIFTS[name](image)
