"""One rule for the heatmap (issue 29 §1): shown as evidence only for a PNEUMONIA or borderline result, on the
page, in the PDF and in the DICOM capture; a NORMAL result's map waits for the clinician, captioned."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from diagnosis.integrity import open_verified
from diagnosis.reports import overlay_image

from ..base import api_client_for
from ..factories import PredictionFactory, StudyFactory, with_heatmaps

pytestmark = pytest.mark.django_db


def made(patient, **fields):
    return with_heatmaps(PredictionFactory(study=StudyFactory(patient=patient), succeeded=True, **fields))


@pytest.mark.parametrize("label, borderline, shown", [("PNEUMONIA", False, True), ("NORMAL", True, True),
                                                     ("NORMAL", False, False)])
def test_the_page_and_the_api_show_the_map_only_as_evidence(logged_in, clinician, patient, label, borderline, shown):
    prediction = made(patient, label=label, borderline=borderline)
    assert prediction.shows_heatmap is shown
    html = logged_in.get(f"/predictions/{prediction.pk}/").content.decode()
    toggle = re.search(r'<input type="checkbox" id="heatmap-toggle"[^>]*>', html)[0]
    assert ("checked" in toggle) is shown
    caption = re.search(r'<p [^>]*id="heatmap-caption"[^>]*>', html)[0]
    assert ("hidden" in caption) is shown
    assert 'data-testid="heatmap-scale"' in html
    body = api_client_for(clinician).get(f"/api/predictions/{prediction.pk}/").json()
    assert body["heatmap_is_evidence"] is shown and body["heatmap"]  # the map is still there to ask for


@pytest.mark.parametrize("label, shown", [("PNEUMONIA", True), ("NORMAL", False)])
def test_the_pdfs_picture_follows_the_same_rule(patient, label, shown):
    prediction = made(patient, label=label, borderline=False)
    picture = np.asarray(Image.open(io.BytesIO(overlay_image(prediction))).convert("RGB")).astype(int)
    with open_verified(prediction.study, "image") as fh:
        film = Image.open(fh).convert("RGB")
    film.thumbnail((640, 640))
    differs = bool(np.abs(picture - np.asarray(film).astype(int)).max() > 8)
    assert differs is shown
