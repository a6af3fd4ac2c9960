import itertools

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from pneumoweb.celery import app as celery_app

from .base import api_client_for, verify_session
from .factories import PASSWORD, TINY_TRAINING, PatientFactory, UserFactory, tiny_adults, tiny_kermany, xray_bytes

# --- the order modules are handed out in (bin/test runs them on every core: -n auto, loadscope) ------


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering within modules
def pytest_collection_modifyitems(items):
    """Heavy modules first, the integration ones (mostly waiting on servers) alternating with the ml
    and ops ones (mostly computing), then the quick rest: with two processes, one waits while the
    other computes, and the last modules handed out are short (longest-first, as schedulers do)."""
    def kind(item):
        group = item.nodeid.split("/")[1] if item.nodeid.count("/") > 1 else ""
        return "waits" if group == "integration" else "computes" if group in ("ml", "ops") else "quick"

    modules = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    by_kind = {"waits": [], "computes": [], "quick": []}
    for name, module_items in modules.items():
        by_kind[kind(module_items[0])].append(name)
    heavy = [name for pair in itertools.zip_longest(by_kind["waits"], by_kind["computes"]) for name in pair if name]
    items[:] = [item for name in heavy + by_kind["quick"] for item in modules[name]]


@pytest.fixture(autouse=True)
def _isolated_media_and_eager_jobs(settings, tmp_path):
    from django.core.cache import cache

    # In-process tests run jobs eagerly; the integration tests start a real worker instead.
    settings.MEDIA_ROOT = tmp_path / "media"
    # The files kept outside the database (audit seals, erasure log) are per test too.
    settings.PNEUMOWEB_AUDIT_SEAL_FILE = tmp_path / "audit-seals.jsonl"
    settings.PNEUMOWEB_ERASURE_LOG = tmp_path / "erasures.jsonl"
    cache.clear()  # rate-limit counters must not carry from one test to the next
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def clinician(db):
    return UserFactory(role="clinician")


@pytest.fixture
def other_clinician(db):
    return UserFactory(role="clinician")


@pytest.fixture
def reviewer(db):
    return UserFactory(role="reviewer")


@pytest.fixture
def patient(clinician):
    return PatientFactory(owner=clinician)


@pytest.fixture
def foreign_patient(other_clinician):
    return PatientFactory(owner=other_clinician)


@pytest.fixture
def api(clinician):
    return api_client_for(clinician)


@pytest.fixture
def logged_in(client, clinician):
    assert client.login(username=clinician.username, password=PASSWORD)
    return client


@pytest.fixture
def xray_upload():
    def make(name="normal-1.jpeg", data=None, filename=None, content_type="image/jpeg"):
        return SimpleUploadedFile(filename or name, xray_bytes(name) if data is None else data, content_type)

    return make


# --- integration tests: modules that define a module-scoped `stack` fixture -----------


@pytest.fixture(autouse=True)
def _show_stack_logs_on_failure(request):
    if "stack" not in request.fixturenames:
        yield
        return
    from .stack import logs_shown_on_failure

    with logs_shown_on_failure(request.getfixturevalue("stack")):
        yield


@pytest.fixture(scope="module")
def alice(stack):
    return stack.api_session("alice")


@pytest.fixture
def reviewer_client(reviewer):
    # Its own client: a test may also use `logged_in`, which signs the default client in as a clinician.
    # A reviewer must use a second factor: the session is marked as having given its code.
    client = Client()
    assert client.login(username=reviewer.username, password=PASSWORD)
    return verify_session(client, reviewer)


@pytest.fixture(scope="session")
def kermany(tmp_path_factory):
    return tiny_kermany(tmp_path_factory.mktemp("kermany"))


@pytest.fixture(scope="session")
def adults(tmp_path_factory):
    return tiny_adults(tmp_path_factory.mktemp("adults"))


@pytest.fixture(scope="session")
def sources(kermany, adults):
    """--data arguments of the two tiny sources: children without ages, adults with them."""
    return ["--data", f"kermany={kermany}", "--data", f"nih={adults}"]


@pytest.fixture(scope="session")
def trained(sources, tmp_path_factory):
    """(weights path, card) of a few seconds' real training on the two tiny sources."""
    from ml.cli.train import parse_args
    from ml.training.loop import train

    out = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    card = train(parse_args([*sources, "--out", str(out), "--name", "tiny-test", *TINY_TRAINING]))
    return out, card
