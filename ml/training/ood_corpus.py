"""Images that are not frontal chest X-rays, for fitting and measuring the OOD gate.

``misuse_copies`` makes the negatives the probe trains on (inverted and cropped copies of
training X-rays); ``corpus`` gathers what the gate is measured on: natural photographs
and drawings (scikit-image's bundled images), other modalities (pydicom's bundled CT and
MR slices, a CT phantom), noise, blank images, text/documents, and inverted and cropped
copies of held-out X-rays. Needs the training requirements (scikit-image).
"""

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.data import get_testdata_file

from ..decode import SourceInfo
from ..pixels import colourfulness

# Bundled with scikit-image (no download). Colour ones are caught by the colour check.
SKIMAGE_NATURAL = ["astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
                   "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
                   "logo", "microaneurysms", "moon", "retina", "rocket", "stereo_motorcycle"]
SKIMAGE_TEXT = ["page", "text"]
# Bundled with pydicom: CT, MR, nuclear medicine and ultrasound images its own handlers decode.
PYDICOM_OTHER_MODALITIES = ["CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm",
                            "examples_overlay.dcm", "JPEG2000.dcm", "examples_palette.dcm",
                            "examples_rgb_color.dcm", "examples_jpeg2k.dcm"]


def _to_pil(array):
    if isinstance(array, tuple):  # stereo pairs: keep the left image
        array = array[0]
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        array = (255 * (array - array.min()) / (np.ptp(array) or 1)).astype(np.uint8)
    return Image.fromarray(array)


def inverted(image):
    return Image.fromarray(255 - np.asarray(image.convert("L")))


def crop(image, rng, *, area=(0.15, 0.4)):
    """A random zoomed-in part of the image (a fraction of its area), resized back to its size."""
    width, height = image.size
    side = np.sqrt(rng.uniform(*area))
    w, h = int(width * side), int(height * side)
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return image.crop((left, top, left + w, top + h)).resize(image.size, Image.Resampling.BILINEAR)


def misuse_copies(image, rng):
    return [inverted(image), crop(image, rng)]


def document(seed=0, size=(600, 800)):
    """A typed page: black text lines on white."""
    rng = np.random.default_rng(seed)
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=18)
    words = ["patient", "report", "chest", "radiograph", "findings", "impression", "normal", "lungs", "clear"]
    for y in range(40, size[1] - 40, 28):
        draw.text((40, y), " ".join(rng.choice(words, 6)), fill=0, font=font)
    return page


def corpus(held_out_xrays, seed=0):
    """{kind: [(name, PIL image, SourceInfo)]} of non-chest-X-ray inputs."""
    def item(name, image, fmt="PNG"):
        return name, image, SourceInfo(fmt, colourfulness(image))

    rng = np.random.default_rng(seed)
    kinds = {"natural": [], "other modality": [], "noise": [], "blank": [], "text": [], "inverted": [], "crop": []}
    for name in SKIMAGE_NATURAL:
        image = _to_pil(getattr(skimage.data, name)())
        kinds["natural"].append(item(name, image))
        if image.mode != "L":  # the colour check alone refuses the original: test the learned gate too
            kinds["natural"].append(item(f"{name}-grayscale", image.convert("L")))
    for name in PYDICOM_OTHER_MODALITIES:
        kinds["other modality"].append(item(name, _to_pil(dcmread(get_testdata_file(name)).pixel_array)))
    kinds["other modality"].append(item("shepp_logan_phantom", _to_pil(skimage.data.shepp_logan_phantom())))
    for i in range(5):
        kinds["noise"].append(item(f"uniform-{i}", Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8))))
        gauss = np.clip(rng.normal(128, 40, (256, 256)), 0, 255).astype(np.uint8)
        kinds["noise"].append(item(f"gaussian-{i}", Image.fromarray(gauss)))
    for value in (0, 128, 255):
        kinds["blank"].append(item(f"uniform-{value}", Image.new("L", (256, 256), value)))
    kinds["blank"].append(item("gradient", Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (256, 1)))))
    for name in SKIMAGE_TEXT:
        kinds["text"].append(item(name, _to_pil(getattr(skimage.data, name)())))
    for i in range(3):
        kinds["text"].append(item(f"document-{i}", document(seed=i)))
    for i, image in enumerate(held_out_xrays):
        kinds["inverted"].append(item(f"inverted-{i}", inverted(image)))
        kinds["crop"].append(item(f"crop-{i}", crop(image, rng)))
    return kinds
