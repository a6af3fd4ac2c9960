"""The worker's model: loaded once per process, on CUDA when present. Imports torch: worker only."""

import functools
import logging

from django.conf import settings

from ml.inference import Predictor

log = logging.getLogger(__name__)


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
