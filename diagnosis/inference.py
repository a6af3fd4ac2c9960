"""The worker's model: loaded once per process, on CUDA when present. Imports torch: worker only."""

import functools
import logging

from django.conf import settings

from ml.inference import Predictor

log = logging.getLogger(__name__)


def set_torch_threads(count):
    """Intra-op threads of this process's torch (one pool process's share of the cores)."""
    import torch

    torch.set_num_threads(count)
    log.info("Torch uses %d threads in this worker process", count)


@functools.cache
def get_predictor():
    predictor = Predictor.load(
        settings.PNEUMOWEB_MODEL_PATH,
        fallback_preset=settings.PNEUMOWEB_FALLBACK_PRESET,
        device=settings.PNEUMOWEB_DEVICE,
        precision=settings.PNEUMOWEB_PRECISION,
    )
    log.info("Loaded model %s (%s) on %s, %s", predictor.name, predictor.weights_sha256[:12], predictor.device,
             predictor.precision)
    return predictor
