"""Limits and defaults shared by the model package and the web settings. Imports nothing heavy.

One place for each number: ``pneumoweb.settings`` reads its defaults from here, and the
upload checks, the DICOM reader, the age input and the intended-use warnings all use them.
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

# The checkpoint shipped with the repository: the worker's and the CLIs' default.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = REPO_ROOT / "models" / "pneumoweb-v3.safetensors"
