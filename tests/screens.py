"""Screenshots of what clinicians and reviewers see, for docs/screens/ (README links them).

    .venv/bin/python -m tests.screens docs/screens

Starts the embedded stack (SQLite, file-system broker, a real worker and gunicorn, as bin/run
does) in a temporary folder, uploads four bundled films through the API — a positive, a
borderline, a negative and a photograph the model refuses — lets the worker run them, and has
Debian's Chromium photograph the result pages, the worklist, the review queue and monitoring at
a desktop size (1280×900) and a phone's (390×844).
"""

import sys
import tempfile
from pathlib import Path

import skimage.data
from PIL import Image

from .stack import running_stack

XRAYS = Path(__file__).parent / "fixtures" / "xrays"

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
# (name, film, age): what each result page shows with the shipped model (tests/fixtures/pneumoweb-v3-answers.json).
STUDIES = [("positive", "pneumonia-1.jpeg", "3.5"), ("borderline", "normal-1.jpeg", "3.5"),
           ("negative", "normal-2.jpeg", "40"), ("refused", None, "40")]


def main(out):
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as root, running_stack(
            Path(root), users=[("alice", "clinician"), ("rita", "reviewer")], collectstatic=True) as stack:
        session = stack.api_session("alice")
        photo = Path(root) / "photo.jpg"
        Image.fromarray(skimage.data.astronaut()).save(photo)
        pages = {}
        for name, film, age in STUDIES:
            response = stack.submit_xray(session, photo if film is None else XRAYS / film, age=age,
                                         patient_mrn="MRN-SCREENS", patient_name="Alex Example")
            assert response.status_code == 202, response.text
            body = stack.wait_for_prediction(session, response.headers["Location"])
            pages[name] = body["page_url"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                 args=CHROMIUM_ARGS)
            for size, viewport in SIZES.items():
                for user, shots in (("alice", {**{f"result-{n}": u for n, u in pages.items()},
                                               "worklist": stack.url("/")}),
                                    ("rita", {"review-queue": stack.url("/review/"),
                                              "monitoring": stack.url("/monitoring/")})):
                    context = browser.new_context(viewport=viewport)
                    page = context.new_page()
                    stack.log_in(page, user)
                    for name, url in shots.items():
                        page.goto(url)
                        page.wait_for_load_state("networkidle")
                        page.screenshot(path=str(out / f"{name}-{size}.png"), full_page=True)
                        print(out / f"{name}-{size}.png")
                    context.close()
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screens"))
