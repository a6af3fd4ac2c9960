"""The web tier never loads torch: every page, the API and an upload run without it (~1 GB per process)."""

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

from pneumoweb.var_dir import prepare

REPO = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter with embedded defaults: migrate, log in, use the pages and the API,
# upload an X-ray (the job is sent to the file-system broker, not run), fetch its thumbnail.
SCRIPT = r"""
import json, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib import admin
from django.test import Client
from django.test.utils import setup_test_environment
from pneumoweb.celery import app
app.loader.import_default_modules()  # what a web process does when it sends its first job
from diagnosis.models import Patient
from django.contrib.auth import get_user_model
setup_test_environment()
user = get_user_model().objects.create_user("web", password="pw-web-tier-1")
patient = Patient.objects.create(owner=user, mrn="MRN-1", name="Web Tier")
client = Client()
assert client.login(username="web", password="pw-web-tier-1")
statuses = {}
for url in ["/", "/patients/", f"/patients/{patient.pk}/", "/upload/", "/account/token/", "/api/predictions/",
            "/api/patients/", "/api/schema/"]:
    statuses[url] = client.get(url).status_code
with open(sys.argv[1], "rb") as fh:
    response = client.post("/upload/", {"patient": patient.pk, "age": "4", "view": "PA", "image": fh})
statuses["upload"] = response.status_code
from diagnosis.models import Study
statuses["thumbnail"] = client.get(f"/studies/{Study.objects.get().pk}/thumbnail/").status_code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "torchvision", "timm", "safetensors"})
print(json.dumps({"statuses": statuses, "heavy": heavy}))
"""


def test_it_serves_pages_api_and_uploads_without_importing_torch(tmp_path):
    prepare(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "pneumoweb.settings_test", "PNEUMOWEB_VAR_DIR": str(tmp_path)}
    xray = REPO / "tests" / "fixtures" / "xrays" / "normal-1.jpeg"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(xray)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["heavy"] == []
    assert found["statuses"].pop("upload") == 302
    assert set(found["statuses"].values()) == {200}, found["statuses"]


def test_it_decodes_uploads_and_dicoms_without_torch():
    code = ("import sys, ml.decode, ml.dicom, ml.pixels, ml.constants, ml.intended_use, ml.card; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


SERVING_CORE = ["constants", "pixels", "dicom", "decode", "preprocessing", "config", "model", "checkpoint", "card", "subtype",
                "device", "populations", "intended_use", "ood", "explain", "inference", "metrics"]


@functools.cache
def modules_the_serving_core_loads():
    """Every module loaded by importing the serving core in a fresh interpreter."""
    code = (f"import json, sys; import {', '.join('ml.' + name for name in SERVING_CORE)}; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_serving_core_imports_nothing_from_training():
    assert [m for m in modules_the_serving_core_loads() if m.startswith("ml.training")] == []


def test_the_serving_core_imports_no_command():
    assert [m for m in modules_the_serving_core_loads() if m == "ml.cli" or m.startswith("ml.cli.")] == []


def imported_modules(path):
    """Absolute names of every module ``path`` imports (relative imports resolved), wherever the statement is."""
    package = path.relative_to(REPO).with_suffix("").parts[:-1]  # ("ml", "cli") for ml/cli/train.py
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_model_package_imports_no_django_and_no_project_app():
    web = {"django", "rest_framework", "celery", "diagnosis", "core", "audit", "monitoring", "pneumoweb"}
    files = sorted((REPO / "ml").rglob("*.py"))
    assert len(files) > 30
    found = {str(path.relative_to(REPO)): sorted(name for name in imported_modules(path) if name.split(".")[0] in web)
             for path in files}
    assert {path: names for path, names in found.items() if names} == {}


def test_no_command_imports_another_and_the_library_imports_no_command():
    for path in sorted((REPO / "ml").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        commands = {name for name in imported_modules(path) if name.startswith("ml.cli.")}
        assert not commands, f"{module} imports {sorted(commands)}"


def test_the_dicom_and_decode_modules_import_each_other_one_way():
    # ml.decode uses ml.dicom; ml.dicom uses only ml.pixels and ml.constants (no cycle).
    source = (REPO / "ml" / "dicom.py").read_text()
    assert "from .decode" not in source and "from .preprocessing" not in source
