"""The rooms and their layers, as tests: pneumoweb → pacs → monitoring → diagnosis → accounts → audit → core → ml.

A module may import from its own layer and the layers below it, never above (that ``ml`` imports
no Django at all, and its serving core no training or command, is in test_web_tier_imports.py); and no chain of
imports between the project's modules may come back to where it started (no circle). Read from
the source with ``ast`` — every import counts, also one inside a function.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["ml", "core", "audit", "accounts", "diagnosis", "monitoring", "pacs", "pneumoweb"]  # bottom to top


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules():
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            if "migrations" not in path.parts:
                yield module_name(path), path


def imports_of(name, path):
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    wrong = []
    for name, path in project_modules():
        own = LAYERS.index(name.split(".")[0])
        for imported in imports_of(name, path):
            top = imported.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > own:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_the_project_has_no_import_circle():
    names = dict(project_modules())
    graph = {name: {i for i in imports_of(name, path) if i in names and i != name}
             for name, path in names.items()}
    done, stack, circles = set(), [], []

    def visit(node):
        if node in stack:
            circles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    # A package's __init__ importing its own submodules is not a circle of modules.
    circles = [c for c in circles if not any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(c, c[1:]))]
    assert circles == []


def test_the_scan_sees_relative_imports_and_the_layers_it_checks(tmp_path):
    # The checker itself: a relative import is resolved to the module it names.
    package = REPO / "diagnosis" / "jobs" / "tasks.py"
    assert "diagnosis.jobs.lease" in imports_of("diagnosis.jobs.tasks", package)
    assert "diagnosis.models" in imports_of("diagnosis.jobs.tasks", package)
    assert {name.split(".")[0] for name, _ in project_modules()} == set(LAYERS)


def test_who_a_user_is_and_how_they_get_in_live_in_accounts_alone():
    # Roles, create_user, sign-in and its lockout, second factor, API tokens and sessions: one room.
    identity = ["roles", "sessions", "idle", "session_views", "lockout", "second_factor", "api",
                "management/commands/create_user"]
    assert all((REPO / "accounts" / f"{name}.py").is_file() for name in identity)
    elsewhere = [path.relative_to(REPO).as_posix() for layer in LAYERS if layer != "accounts"
                 for name in identity for path in (REPO / layer).glob(f"**/{name.rsplit('/', 1)[-1]}.py")
                 if name != "api" and "migrations" not in path.parts]
    assert elsewhere == []
    # accounts sits below diagnosis: it names their permissions (roles.py) and imports none of them.
    imported = {i.split(".")[0] for name, path in project_modules() if name.startswith("accounts")
                for i in imports_of(name, path)}
    assert not imported & {"diagnosis", "monitoring", "pacs", "pneumoweb"}
