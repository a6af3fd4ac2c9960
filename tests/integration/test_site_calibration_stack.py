"""A simulated site, end to end as the product's users do it: uploads through the API at age 3, each
reviewed with its true label through the API, `manage.py calibrate_site --apply`, then the next upload is
labelled at the site's point and says so. Real gunicorn, worker, PostgreSQL and Redis.

The fixture films are few, so the stack's minimum is lowered to 4 patients a class (and the recall
shortfall allowed to 0.99): the rules themselves are tested in tests/web/test_site_points.py.
"""

import json
import uuid
from pathlib import Path

import pytest

from ..servers import POSTGRES_URL, REDIS_URL, require
from ..stack import running_stack

pytestmark = pytest.mark.integration

XRAYS = Path(__file__).parent.parent / "fixtures" / "xrays"
TRUTH = {"pneumonia-1.jpeg": "PNEUMONIA", "pneumonia-2.jpeg": "PNEUMONIA", "normal-1.jpeg": "NORMAL",
         "normal-2.jpeg": "NORMAL"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    users = [("clara", "clinician"), ("rita", "reviewer"), ("root", "admin")]
    env = {"PNEUMOWEB_SITE_CALIBRATION_MIN_PER_CLASS": "4", "PNEUMOWEB_SITE_CALIBRATION_MAX_SHORTFALL": "0.99"}
    with running_stack(tmp_path_factory.mktemp("site"), database_url=POSTGRES_URL, broker_url=REDIS_URL,
                       users=users, extra_env=env) as stack:
        yield stack


def upload(stack, session, name):
    response = stack.submit_xray(session, XRAYS / name, age="3", patient_mrn=f"MRN-{uuid.uuid4().hex[:8]}",
                                 patient_name="Site Child")
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def test_a_site_reviews_calibrates_and_its_next_studies_use_its_point(stack):
    clara, rita = stack.api_session("clara"), stack.api_session("rita")
    urls = [upload(stack, clara, name) for name in list(TRUTH) * 2]
    finished = [stack.wait_for_prediction(clara, url) for url in urls]
    assert all(body["status"] == "succeeded" for body in finished), finished
    assert {body["operating_point"] for body in finished} == {"the model card's operating point"}
    for body, name in zip(finished, list(TRUTH) * 2, strict=True):
        review = ({"verdict": "agree"} if body["label"] == TRUTH[name]
                  else {"verdict": "disagree", "corrected_label": TRUTH[name]})
        answer = rita.post(stack.url(f"/api/predictions/{body['id']}/review/"), json=review, timeout=30)
        assert answer.status_code == 200, answer.text

    shown = json.loads(stack.manage("calibrate_site", "--population", "pediatric", "--json").stdout)
    assert (shown["films"], shown["positive_patients"], shown["negative_patients"]) == (8, 4, 4)
    assert shown["refused"] is False
    applied = json.loads(stack.manage("calibrate_site", "--population", "pediatric", "--apply", "--by", "root",
                                      "--json").stdout)
    assert applied["status"] == "active" and applied["threshold"] == pytest.approx(shown["threshold"])

    after = stack.wait_for_prediction(clara, upload(stack, clara, "normal-1.jpeg"))
    assert after["site_point"] == applied["id"] and after["operating_point"].startswith("site operating point of ")
    assert after["threshold"] == pytest.approx(applied["threshold"])
    assert after["label"] == ("PNEUMONIA" if after["probability"] >= after["threshold"] else "NORMAL")
    before = clara.get(finished[0]["url"], timeout=30).json()
    assert before["site_point"] is None and before["threshold"] == finished[0]["threshold"]  # never changes

    stack.manage("calibrate_site", "--population", "pediatric", "--revert", "--by", "root")
    reverted = stack.wait_for_prediction(clara, upload(stack, clara, "normal-1.jpeg"))
    assert reverted["site_point"] is None and reverted["threshold"] == finished[0]["threshold"]
