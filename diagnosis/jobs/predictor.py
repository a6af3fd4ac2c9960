"""The worker's model, loaded once per process (on CUDA when present), and running it on claimed studies.

A study's image is checked against its recorded sha256 before it is decoded (``integrity.py``):
a prediction on pixels other than those uploaded would be a result about another image, so a
changed file fails its prediction with the check's message (no digests or paths; those are in
the log and the audit trail), as an unreadable one does. The check runs on the task's own
thread — it writes the audit entry — and the decoding threads read the same open, checked file.

This module itself imports no torch: ``ml.inference`` (which does) is imported when the model is
first loaded, so the web tier, which imports the job modules to send jobs, never loads torch.
"""

import functools
import logging
from concurrent.futures import ThreadPoolExecutor

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from ml.decode import decode_with_tags

from .. import site_points
from ..integrity import open_verified
from ..models import Prediction
from .lease import mark_failed

log = logging.getLogger(__name__)


def set_torch_threads(count):
    """Intra-op threads of this process's torch (one pool process's share of the cores)."""
    import torch  # worker processes only (see the module docstring)

    torch.set_num_threads(count)
    log.info("Torch uses %d threads in this worker process", count)


@functools.cache
def get_predictor():
    from ml.inference import Predictor  # torch: the worker's import, never the web tier's

    predictor = Predictor.load(
        settings.PNEUMOWEB_MODEL_PATH,
        fallback_preset=settings.PNEUMOWEB_FALLBACK_PRESET,
        device=settings.PNEUMOWEB_DEVICE,
        precision=settings.PNEUMOWEB_PRECISION,
    )
    log.info("Loaded model %s (%s) on %s, %s", predictor.name, predictor.weights_sha256[:12], predictor.device,
             predictor.precision)
    return predictor


def decode_checked(fh):
    """Decode a study's image from its open, checked file, and close it."""
    with fh:
        return decode_with_tags(fh, max_pixels=settings.PNEUMOWEB_MAX_IMAGE_PIXELS,
                                min_side=settings.PNEUMOWEB_MIN_IMAGE_SIDE)


def open_checked_images(studies):
    """{pk: open, checked image file} of the studies {prediction pk: study}; one missing or changed fails alone."""
    opened = {}
    try:
        for pk, study in studies.items():
            try:
                opened[pk] = open_verified(study, "image")
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:  # noqa: BLE001 - a missing or changed file fails only its own study
                log.warning("Prediction %s: stored image not usable: %s", pk, exc)
                mark_failed(pk, failure_message(exc))
    except BaseException:
        for fh in opened.values():
            fh.close()
        raise
    return opened


def failure_message(exc):
    return f"{type(exc).__name__}: {exc}"


def assess(prediction_pks):
    """(predictor, {pk: Assessment}, {population: active SiteOperatingPoint}) for the claimed predictions;
    a study that cannot be read or run is marked failed on its own and left out.

    The site's operating points in force now (diagnosis/site_points.py) replace the card's for their
    populations; each answer's population says whether its point was the site's.
    """
    studies = {p.pk: p.study for p in Prediction.objects.select_related("study").filter(pk__in=prediction_pks)}
    decoded, opened = {}, open_checked_images(studies)
    # Pillow and pydicom release the GIL while decoding: the files of a batch decode side by side.
    with ThreadPoolExecutor(max_workers=min(4, len(opened)) or 1) as pool:
        futures = {pk: pool.submit(decode_checked, fh) for pk, fh in opened.items()}
    for pk, future in futures.items():
        try:
            decoded[pk] = future.result()
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # noqa: BLE001 - one unreadable file fails only its own study
            log.warning("Prediction %s: stored image unreadable: %s", pk, exc)
            mark_failed(pk, failure_message(exc))
    predictor = get_predictor()
    site = site_points.active_points(predictor.weights_sha256) if predictor.weights_sha256 else {}
    points = site_points.overrides(predictor.points, site)
    pks = list(decoded)
    items = [(*decoded[pk], None if studies[pk].age_years is None else float(studies[pk].age_years),
              studies[pk].view) for pk in pks]
    try:
        return predictor, dict(zip(pks, predictor.assess_batch(items, explain=True, points=points), strict=True)), site
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # noqa: BLE001 - find the study at fault: run them one by one
        log.exception("Batch of predictions %s failed; running them one by one", pks)
    answers = {}
    for pk, item in zip(pks, items, strict=True):
        try:
            answers[pk] = predictor.assess_batch([item], explain=True, points=points)[0]
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # noqa: BLE001 - one study's failure is its own
            log.exception("Prediction %s failed", pk)
            mark_failed(pk, failure_message(exc))
    return predictor, answers, site
