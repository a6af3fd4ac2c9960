"""A real browser (Playwright driving Debian's Chromium) against a real stack.

The stack runs on PostgreSQL + Redis when they answer, else (not under CI) on the
embedded defaults. Without /usr/bin/chromium these tests skip locally and fail under CI=true.
"""

import datetime
import re
import uuid
from pathlib import Path

import pytest

from ..servers import POSTGRES_URL, REDIS_URL, in_ci, reachable, require
from ..stack import PASSWORD, REPO, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DATASET = REPO / ".." / "shared" / "data" / "chest_xray" / "train" / "PNEUMONIA"
FIXTURE_XRAY = Path(__file__).parent.parent / "fixtures" / "xrays" / "pneumonia-1.jpeg"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def real_xray():
    """A chest X-ray from the training set where the machine has it, else the bundled one."""
    if DATASET.is_dir():
        files = sorted(DATASET.glob("*.jpeg"))
        if files:
            return files[0]
    return FIXTURE_XRAY


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    users = [("alice", "clinician"), ("rita", "reviewer"), ("root", "admin")]
    with browser_stack(tmp_path_factory.mktemp("browser"), users=users) as stack:
        yield stack


def browser_stack(root, *, users, extra_env=None):
    """A stack with collected static files, on PostgreSQL + Redis when they answer (required under CI)."""
    if in_ci():
        require(POSTGRES_URL, "PostgreSQL")
        require(REDIS_URL, "Redis")
    servers = {}
    if reachable(POSTGRES_URL) and reachable(REDIS_URL):
        servers = {"database_url": POSTGRES_URL, "broker_url": REDIS_URL}
    # Two web processes: Chromium opens sockets ahead of its requests, and a lone sync gunicorn worker
    # waits on such an idle socket while the test's own API call times out (seen once under load).
    return running_stack(root, users=users, collectstatic=True, extra_env=extra_env, web_workers=2, **servers)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (bin/test installs Debian's chromium)"
        if in_ci():
            pytest.fail(f"{message}; CI=true: a missing browser is a failure", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def wait_for_js(page, expression, timeout=30):
    """Poll a JavaScript expression until it is truthy (page.wait_for_function evaluates strings, which the
    page's Content-Security-Policy rightly forbids; page.evaluate goes through the DevTools protocol)."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} stayed false for {timeout} s")
        time.sleep(0.2)


def test_it_uploads_an_xray_and_shows_the_result_without_a_reload(stack, page, tmp_path):
    from playwright.sync_api import expect

    stack.log_in(page, "alice")

    mrn = f"MRN-B-{uuid.uuid4().hex[:6]}"
    page.goto(stack.url("/patients/new/"))
    page.fill("#id_mrn", mrn)
    page.fill("#id_name", "Rosalind Franklin")
    page.select_option("#id_sex", "F")
    # Half a year old, as the age typed below says (an age that contradicts the birth date is refused).
    page.fill("#id_date_of_birth", (datetime.date.today() - datetime.timedelta(days=183)).isoformat())
    page.click("[data-testid=patient-submit]")
    page.wait_for_url(re.compile(r"/patients/\d+/$"))
    patient_id = re.search(r"/patients/(\d+)/$", page.url).group(1)

    page.goto(stack.url(f"/upload/?patient={patient_id}"))
    expect(page.locator("#id_patient")).to_have_value(patient_id)
    page.fill("#id_age", "0.5")
    page.set_input_files("#id_image", str(real_xray()))
    page.select_option("#id_view", "PA")
    # The worker waits until the page is showing "queued": what follows must come from the page itself.
    with stack.paused_worker():
        page.click("[data-testid=upload-submit]")
        page.wait_for_url(re.compile(r"/predictions/\d+/$"))
        expect(page.locator("[data-testid=prediction-status]")).to_have_text(re.compile(r"^\s*queued\s*$"))
        page.evaluate("window.__pneumowebNoReload = true")
    prediction_id = re.search(r"/predictions/(\d+)/$", page.url).group(1)

    expect(page.locator("[data-testid=prediction-status]")).to_have_text(
        re.compile(r"^\s*succeeded\s*$"), timeout=120_000
    )
    label = page.locator("[data-testid=prediction-label]")
    probability = page.locator("[data-testid=prediction-probability]")
    expect(label).to_have_text(re.compile(r"^\s*(PNEUMONIA|NORMAL)\s*$"))
    expect(probability).to_have_text(re.compile(r"^\s*\d{1,3}(\.\d+)?\s*%\s*$"))
    assert page.evaluate("window.__pneumowebNoReload") is True, "the page was reloaded"

    # What the page shows is what the API says (the browser's session authenticates the call).
    api = page.request.get(stack.url(f"/api/predictions/{prediction_id}/")).json()
    assert api["status"] == "succeeded"
    assert label.inner_text().strip() == api["label"]
    shown = float(probability.inner_text().strip().rstrip("%").strip())
    assert shown == pytest.approx(100 * api["probability"], abs=0.051)
    assert api["study"]["age_years"] == "0.50"
    warning = page.locator("[data-testid=untrained-warning]")
    if "untrained" in api["model"]["name"]:
        expect(warning).to_be_visible()
    else:
        expect(warning).to_be_hidden()
    assert api["patient"] == int(patient_id)

    # Half a year is younger than any population the model was validated on: the verdict is shown, marked.
    expect(page.locator("[data-testid=intended-use-warnings]")).to_contain_text("outside the ages")

    # The heatmap arrives with the result, over the X-ray, and its controls work. It shows at once only
    # where it stands for evidence of pneumonia (PNEUMONIA or borderline); a NORMAL result's map waits for
    # "Show" and is captioned as evidence for NORMAL.
    heatmap = page.locator("[data-testid=heatmap]")
    caption = page.locator("[data-testid=heatmap-normal-caption]")
    expect(page.locator("[data-testid=heatmap-scale]")).to_be_visible()
    if api["heatmap_is_evidence"]:
        expect(caption).to_be_hidden()
    else:
        assert api["label"] == "NORMAL" and not api["borderline"]
        expect(heatmap).to_be_hidden()
        expect(caption).to_be_visible()
        page.check("[data-testid=heatmap-toggle]")
    expect(heatmap).to_be_visible()
    wait_for_js(page, "document.getElementById('heatmap').complete "
                           "&& document.getElementById('heatmap').naturalWidth > 0")
    assert heatmap.get_attribute("src").endswith("/heatmap/combined.png")
    # the shipped model (v4) makes no ViT map: the API names none and the page offers none
    assert api["heatmaps"]["cnn"] and "vit" not in api["heatmaps"]
    page.fill("#heatmap-opacity", "30")
    assert heatmap.evaluate("e => e.style.opacity") == "0.3"
    page.uncheck("[data-testid=heatmap-toggle]")
    expect(heatmap).to_be_hidden()
    page.check("[data-testid=heatmap-toggle]")
    page.select_option("#heatmap-branch", "combined")
    expect(heatmap).to_have_attribute("src", re.compile(r"/heatmap/combined\.png$"))
    assert page.locator("#heatmap-branch option").all_inner_texts() == ["CNN (default)"]
    wait_for_js(page, "document.getElementById('heatmap').complete "
                           "&& document.getElementById('heatmap').naturalWidth > 0")

    screenshot = tmp_path / "result.png"
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)


def test_it_refuses_a_photo_with_a_reason_instead_of_a_verdict(stack, page, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect
    from skimage import data as photos

    photo = tmp_path / "chelsea.png"
    Image.fromarray(photos.chelsea()).save(photo)  # scikit-image's bundled photo of a cat
    alice = stack.api_session("alice")
    response = stack.submit_xray(alice, photo, age="3", patient_mrn=f"MRN-C-{uuid.uuid4().hex[:6]}",
                                 patient_name="Felix Cat")
    assert response.status_code == 202, response.text
    prediction = stack.wait_for_prediction(alice, response.headers["Location"])
    assert prediction["status"] == "rejected" and prediction["ood"] is True, prediction
    assert prediction["label"] is None and prediction["heatmap"] is None

    stack.log_in(page, "alice")
    page.goto(stack.url(f"/predictions/{prediction['id']}/"))
    rejected = page.locator("[data-testid=prediction-rejected]")
    expect(rejected).to_be_visible()
    expect(rejected).to_contain_text("Not a chest X-ray the model was validated on")
    expect(page.locator("#ood-reason")).to_have_text(prediction["ood_reason"])
    expect(page.locator("[data-testid=prediction-label]")).to_be_hidden()
    expect(page.locator("[data-testid=heatmap]")).to_be_hidden()


def test_it_lets_a_reviewer_record_a_verdict_in_the_admin(stack, page):
    from playwright.sync_api import expect

    alice = stack.api_session("alice")
    response = stack.submit_xray(
        alice, FIXTURE_XRAY, age="41", patient_mrn=f"MRN-R-{uuid.uuid4().hex[:6]}", patient_name="Marie Curie"
    )
    assert response.status_code == 202, response.text
    prediction = stack.wait_for_prediction(alice, response.headers["Location"])
    assert prediction["status"] == "succeeded", prediction
    pk = prediction["id"]

    page.goto(stack.url("/admin/"))
    page.fill("#id_username", "rita")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(lambda url: "/login/" not in url)

    changelist = stack.url("/admin/diagnosis/prediction/")
    page.goto(changelist)
    row = page.locator("#result_list tbody tr", has=page.locator(f'a[href*="/diagnosis/prediction/{pk}/change/"]'))
    expect(row.locator("td.field-is_reviewed img")).to_have_attribute("alt", "False")
    row.locator(f'a[href*="/diagnosis/prediction/{pk}/change/"]').first.click()
    page.wait_for_url(re.compile(rf"/admin/diagnosis/prediction/{pk}/change/$"))

    page.select_option("#id_review_verdict", "agree")
    page.fill("#id_review_comment", "Consolidation in the right lower lobe, agree.")
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r"/admin/diagnosis/prediction/(\?.*)?$"))
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    expect(row.locator("td.field-is_reviewed img")).to_have_attribute("alt", "True")

    page.goto(changelist + "?reviewed=yes")
    expect(page.locator(f'#result_list a[href*="/diagnosis/prediction/{pk}/change/"]')).to_have_count(1)

    review = stack.api_session("rita").get(response.headers["Location"], timeout=30).json()["review"]
    assert review["verdict"] == "agree"
    assert review["comment"] == "Consolidation in the right lower lobe, agree."
    assert review["reviewed_by"] == "rita" and review["reviewed_at"]


def test_it_downloads_a_report_shows_monitoring_and_the_audit_trail_records_it(stack, page, tmp_path):
    from playwright.sync_api import expect

    alice = stack.api_session("alice")
    response = stack.submit_xray(alice, FIXTURE_XRAY, age="3", patient_mrn=f"MRN-D-{uuid.uuid4().hex[:6]}",
                                 patient_name="Dorothy Hodgkin")
    assert response.status_code == 202, response.text
    prediction = stack.wait_for_prediction(alice, response.headers["Location"])
    assert prediction["status"] == "succeeded", prediction

    # A clinician downloads the PDF report from the result page.
    stack.log_in(page, "alice")
    page.goto(stack.url(f"/predictions/{prediction['id']}/"))
    expect(page.locator("[data-testid=report-links]")).to_be_visible()
    with page.expect_download() as download:
        page.click("[data-testid=report-pdf]")
    path = tmp_path / "report.pdf"
    download.value.save_as(path)
    assert path.read_bytes().startswith(b"%PDF-")
    fhir = page.request.get(stack.url(f"/api/predictions/{prediction['id']}/fhir/"))
    assert fhir.ok and fhir.json()["resourceType"] == "DiagnosticReport"

    # A reviewer opens the monitoring page: this model's predictions, with a chart.
    page.context.clear_cookies()
    stack.log_in(page, "rita")
    page.click("[data-testid=nav-monitoring]")
    group = page.locator("[data-testid=monitoring-group]").first
    expect(group).to_be_visible()
    expect(group).to_contain_text(prediction["model"]["name"])
    wait_for_js(page, "[...document.querySelectorAll('[data-testid=monitoring-chart]')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")

    # An administrator sees, in the audit trail, the download alice just made.
    page.context.clear_cookies()
    stack.log_in(page, "root")
    page.goto(stack.url("/admin/auditlog/logentry/?q=" + "Report"))
    row = page.locator("#result_list tbody tr", has_text="download report PDF").first
    expect(row).to_be_visible()
    expect(row).to_contain_text("alice")


@pytest.fixture
def phone(browser):
    """A page the size of a phone (390×844)."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    yield context.new_page()
    context.close()


def test_the_worklist_fits_a_phone_as_cards(stack, phone):
    # 390×844 (a phone): no row is cut off after its label; every row keeps its "Open" link on screen.
    stack.log_in(phone, "alice")
    phone.goto(stack.url("/"))
    rows = phone.locator("table.cards-on-phones tbody tr")
    if rows.count() == 0:
        pytest.fail("the worklist has no rows: the module's earlier tests create them")
    assert phone.locator("table.cards-on-phones thead").is_hidden()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways ({width} px)"
    for i in range(min(rows.count(), 5)):
        box = rows.nth(i).get_by_role("link", name="Open").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    label = rows.first.locator("td[data-label=Status]")
    assert "Status" in phone.evaluate("el => getComputedStyle(el, '::before').content", label.element_handle())


def test_the_worklist_updates_a_running_row_by_itself(stack, page):
    from playwright.sync_api import expect

    stack.log_in(page, "alice")
    session = stack.api_session("alice")
    with stack.paused_worker():
        response = stack.submit_xray(session, FIXTURE_XRAY, age="4", patient_mrn=f"MRN-L-{uuid.uuid4().hex[:6]}",
                                     patient_name="Live Row")
        assert response.status_code == 202, response.text
        url = response.json()["url"].replace(stack.url(""), "")
        page.goto(stack.url("/"))
        row = page.locator(f"tr[data-live-url='{url}']")
        expect(row.locator(".badge")).to_have_text(re.compile(r"queued|running"))
        page.evaluate("window.__pneumowebNoReload = true")
    # The worker resumes: the row turns succeeded without a reload.
    expect(page.locator(f"tr:has(a[href='{url.replace('/api', '')}']) .badge")).to_have_text(
        re.compile(r"^\s*succeeded\s*$"), timeout=120_000)
    assert page.evaluate("window.__pneumowebNoReload") is True, "the page was reloaded"


def test_the_patient_trend_fits_a_phone(stack, phone):
    stack.log_in(phone, "alice")
    phone.goto(stack.url("/patients/"))
    phone.locator("table a[href^='/patients/']").first.click()
    phone.wait_for_url(re.compile(r"/patients/\d+/$"))
    box = phone.locator("svg[data-testid=patient-trend]").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["width"] > 250, box
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390


# --- every page fits its window, with long names, file names and comments (issue 29 §4) ----------------

LONG_NAME = "Wolfeschlegelsteinhausenbergerdorff" * 6  # 210 characters without a space: cut to 200 by the record
SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def long_record(stack, tmp_path_factory):
    """A patient with a 200-character unbroken name, a film with a 240-character file name, a long review."""
    film = tmp_path_factory.mktemp("long") / ("f" * 235 + ".jpeg")
    film.write_bytes(FIXTURE_XRAY.read_bytes())
    alice = stack.api_session("alice")
    response = stack.submit_xray(alice, film, age="40", patient_mrn="LONG-" + "9" * 50,
                                 patient_name=LONG_NAME[:200])
    assert response.status_code == 202, response.text
    body = stack.wait_for_prediction(alice, response.headers["Location"])
    review = stack.api_session("rita").post(stack.url(f"/api/predictions/{body['id']}/review/"), timeout=30, json={
        "verdict": "disagree", "corrected_label": "NORMAL" if body.get("label") == "PNEUMONIA" else "PNEUMONIA",
        "comment": "Consolidation" + "-" * 1500})
    assert review.status_code == 200, review.text
    return body


@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_fits_its_window_with_long_names_and_comments(stack, browser, long_record, size):
    context = browser.new_context(viewport=SIZES[size])
    try:
        for user, paths in (("alice", ["/", "/patients/", f"/patients/{long_record['patient']}/",
                                       f"/predictions/{long_record['id']}/", "/upload/"]),
                            ("rita", ["/review/", f"/predictions/{long_record['id']}/", "/monitoring/",
                                      "/monitoring/site-points/"])):
            page = context.new_page()
            page.set_default_timeout(30_000)
            stack.log_in(page, user)
            for path in paths:
                page.goto(stack.url(path))
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= SIZES[size]["width"], f"{user} {path} at {size}: {width} px wide"
            page.close()
    finally:
        context.close()


def test_the_batch_page_updates_itself_and_groups_each_result_with_its_reason(stack, page, tmp_path):
    import skimage.data
    from PIL import Image
    from playwright.sync_api import expect

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    created = stack.api_session("alice").post(stack.url("/api/patients/"), timeout=30,
                                              json={"mrn": f"MRN-BATCH-{uuid.uuid4().hex[:6]}", "name": "Batch Patient"})
    assert created.status_code == 201, created.text
    stack.log_in(page, "alice")
    page.goto(stack.url(f"/upload/?patient={created.json()['id']}"))
    page.fill("#id_age", "40")
    page.set_input_files("#id_image", [str(FIXTURE_XRAY), str(photo)])
    with stack.paused_worker():  # the page is shown while both are still queued
        page.click("[data-testid=upload-submit]")
        page.wait_for_url(re.compile(r"/upload/results/"))
        expect(page.locator("[data-testid=upload-running]")).to_be_visible()
    # Without any action of ours the page regroups as the results arrive.
    expect(page.locator("[data-testid=upload-running]")).to_have_count(0, timeout=120_000)
    expect(page.locator("[data-testid=upload-accepted]")).to_contain_text("pneumonia-1.jpeg")
    expect(page.locator("[data-testid=upload-model-refused]")).to_contain_text("astronaut.png")
    refused = page.locator("[data-testid=upload-model-refused]").inner_text()
    assert "not a chest X-ray the model was validated on —" in refused and len(refused.split("—", 1)[1].strip()) > 10


def test_the_worklist_offers_studies_uploaded_since_it_was_opened(stack, page):
    from playwright.sync_api import expect

    stack.log_in(page, "rita")  # a reviewer's worklist holds every clinician's studies
    page.goto(stack.url("/"))
    notice = page.locator("[data-testid=new-studies]")
    expect(notice).to_be_hidden()
    response = stack.submit_xray(stack.api_session("alice"), FIXTURE_XRAY, age="40",
                                 patient_mrn=f"MRN-NEW-{uuid.uuid4().hex[:6]}", patient_name="Newly Uploaded")
    assert response.status_code == 202, response.text
    expect(notice).to_be_visible(timeout=60_000)
    expect(notice).to_contain_text("1 new study since you opened this page")
    notice.locator("a").click()
    expect(page.locator("table.cards-on-phones")).to_contain_text("Newly Uploaded")
    expect(page.locator("[data-testid=new-studies]")).to_be_hidden()
