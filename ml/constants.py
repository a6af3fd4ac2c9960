"""Limits and defaults shared by the model package and the web tier. Imports only the standard library.

One place for each number: ``pneumoweb.settings`` reads its defaults from here, and the
upload checks, the DICOM reader, the age input, the intended-use warnings, the model card's
validation histograms and the monitoring that compares live scores with them all use them.
"""

from pathlib import Path

# Ages are typed and stored in years, 0–120 (the age branch scales by the maximum).
AGE_MIN_YEARS = 0.0
AGE_MAX_YEARS = 120.0

# Uploads: a decompression-bomb guard read from the header before any pixel is decoded,
# and the smallest side a radiograph can have and still be read.
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 64
MAX_UPLOAD_BYTES = 20 * 1024 * 1024

# P(pneumonia) histograms: this many equal bins over [0, 1], in the card (the validation
# distribution per population, ml.training.calibration) and in the monitoring that compares with it.
HISTOGRAM_BINS = 10

# The checkpoint shipped with the repository: the worker's and the CLIs' default.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = REPO_ROOT / "models" / "pneumoweb-v4.safetensors"
# The previous model, kept beside it: the base v4 was trained from (ml.cli.train_focus), and the model
# whose recorded answers prove the shared forward path (tests/fixtures/pneumoweb-v3-answers.json).
V3_WEIGHTS = REPO_ROOT / "models" / "pneumoweb-v3.safetensors"
# Autocast of the worker's forward passes (PNEUMOWEB_PRECISION); auto: bf16 on CUDA, fp32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
