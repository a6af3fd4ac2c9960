"""Writing a batch's answers: every row and heatmap in one transaction, or no file left behind.

Each heatmap's sha256 goes into the same UPDATE as its name (a finished prediction's row is not
changed afterwards), so a map is never on a row without the digest it is checked against.
"""

import contextlib
from concurrent.futures import ThreadPoolExecutor

from django.core.files.base import ContentFile
from django.db import transaction

from ..integrity import digest_field, sha256_hex
from ..models import Prediction, heatmap_upload_to


def save_results(token, predictor, answers, site=None):
    """Write every answer (and its heatmaps) still held under this lease, in one transaction.

    ``site``: {population: the SiteOperatingPoint the answers of that population were labelled at}.

    A prediction cancelled (or reclaimed after an expired lease) meanwhile keeps its state and its
    heatmap files are deleted; if the write fails, every file it would have named is deleted.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        heatmaps = dict(zip(answers, pool.map(lambda a: save_heatmaps(a.heatmaps) if a.heatmaps else {},
                                              answers.values()), strict=True))
    unrecorded = []
    try:
        with transaction.atomic():
            for pk, answer in answers.items():
                updated = Prediction.objects.filter(pk=pk, lease_token=token).update_status(
                    Prediction.Status.REJECTED if answer.ood else Prediction.Status.SUCCEEDED,
                    label=answer.label,
                    probability=answer.probability,
                    ood=answer.ood,
                    ood_reason=answer.ood_reason,
                    threshold=answer.threshold,
                    borderline=answer.borderline,
                    population=answer.population,
                    site_point=None if answer.ood else (site or {}).get(answer.population),
                    model_name=predictor.name,
                    model_sha256=predictor.weights_sha256,
                    error="",
                    warnings=answer.warnings,
                    **subtype_fields(answer.subtype),
                    **heatmaps[pk],
                )
                if not updated:  # cancelled or reclaimed meanwhile: nothing points at its maps
                    unrecorded += file_names(heatmaps[pk])
    except BaseException:
        delete_files([name for columns in heatmaps.values() for name in file_names(columns)])
        raise
    delete_files(unrecorded)


def subtype_fields(subtype):
    """The row's subtype columns from an answer's ``ml.subtype.Subtype`` (None: no subtype given)."""
    if subtype is None:
        return {"subtype": "", "subtype_probability": None, "subtype_validation": {}}
    return {"subtype": subtype.label, "subtype_probability": subtype.probability,
            "subtype_validation": subtype.validation()}


def heatmap_storage():
    return Prediction._meta.get_field("heatmap").storage


def delete_files(names):
    for name in names:
        with contextlib.suppress(OSError):
            heatmap_storage().delete(name)


def file_names(columns):
    """The stored names among a row's heatmap columns (``save_heatmaps``' answer)."""
    return [columns[field] for field in Prediction.HEATMAP_BRANCHES.values() if field in columns]


def save_heatmaps(maps):
    """Store each map as a PNG; returns the row's columns: {field name: stored name, its digest field: sha256}.

    A map that is another branch's own array (the combined map is the CNN map) is encoded and stored
    once, and both fields name that file.
    """
    from ml.explain import heatmap_png  # imports torch: only a worker with answers gets here

    columns, by_array = {}, {}
    try:
        for branch, field in Prediction.HEATMAP_BRANCHES.items():
            heat = getattr(maps, branch)
            if heat is None:
                continue
            if id(heat) not in by_array:
                png = heatmap_png(heat)
                by_array[id(heat)] = (heatmap_storage().save(heatmap_upload_to(None, "map.png"), ContentFile(png)),
                                      sha256_hex(png))
            columns[field], columns[digest_field(field)] = by_array[id(heat)]
    except BaseException:
        delete_files({name for name, _ in by_array.values()})
        raise
    return columns
