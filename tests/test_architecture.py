"""The package's shape: data flows one way, so no module imports another that imports it
back (counting imports inside functions and under ``TYPE_CHECKING``), and nothing below
the command line imports it. The tests' shape: no module imports a test module (shared
set-ups are fixtures in ``tests/conftest.py`` or helpers in modules not named ``test_*``).
Read from the source, as a reader would follow it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "daydream"
TESTS = REPO / "tests"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The daydream modules ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:  # `from daydream.db import log` imports a module
                child = f"{module}.{alias.name}"
                targets.add(child if child in modules else module)
    return {target for target in targets if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_nothing_below_the_command_line_imports_it():
    offenders = {
        name: sorted(t for t in targets if t == "daydream.cli" or t.startswith("daydream.cli."))
        for name, targets in _graph().items()
        if not (name == "daydream.cli" or name.startswith("daydream.cli.") or name == "daydream.__main__")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_imports_are_read_inside_functions_too(tmp_path):
    """The walk sees an import hidden in a function body (it counts for cycles)."""
    source = "def f():\n    from daydream.db import log\n"
    path = tmp_path / "probe.py"
    path.write_text(source)
    modules = {"daydream.probe": path, "daydream.db.log": path, "daydream.db": path}
    assert _imports("daydream.probe", path, modules) == {"daydream.db.log"}


def test_every_name_of_the_public_api_resolves():
    """``daydream/__init__.py`` imports its names on first use: each must still exist
    where the map says, after any move."""
    import daydream

    for name in daydream.__all__:
        assert getattr(daydream, name) is not None, name


def test_no_module_hides_a_name_its_package_exports():
    """A module named like a function its package exports replaces that function on the
    package once anything imports the module (``daydream.results.pivot`` once did)."""
    import importlib

    modules = _modules()
    clashes = []
    for name, path in modules.items():
        if path.name == "__init__.py":
            exported = getattr(importlib.import_module(name), "__all__", ())
            clashes += [f"{name}.{n}" for n in sorted(exported) if f"{name}.{n}" in modules]
    assert clashes == []


def test_every_connection_is_opened_by_the_database_package():
    """Pragmas, the fork guard and read-only URIs live in one place (``daydream/db``):
    no other module calls ``sqlite3.connect`` itself."""
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.parent != PACKAGE / "db"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "sqlite3.connect(" in line
    ]
    assert offenders == []


def _test_modules_imported(source: str) -> list[str]:
    """The test modules (``test_*``, bare or in ``tests``) that ``source`` imports, however
    the import is spelled and wherever it stands."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if _is_test_module(module):
                names = [module]
            else:  # `from tests import test_x` imports the module test_x
                names = [f"{module}.{alias.name}".lstrip(".") for alias in node.names]
        else:
            continue
        found += [name for name in names if _is_test_module(name) and name not in found]
    return found


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    if parts[0] == "tests":
        parts = parts[1:]
    return bool(parts) and parts[0].startswith("test_")


def test_no_module_imports_a_test_module():
    offenders = {
        str(path.relative_to(REPO)): imported
        for folder in (TESTS, REPO / "benchmarks")
        for path in sorted(folder.glob("*.py"))
        if (imported := _test_modules_imported(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_every_spelling_of_a_test_module_import_is_seen():
    spellings = {
        "from tests.test_worker import x, y\n": ["tests.test_worker"],
        "import tests.test_worker\n": ["tests.test_worker"],
        "import os, tests.test_worker as worker_tests\n": ["tests.test_worker"],
        "from tests import scenario, test_worker\n": ["tests.test_worker"],
        "from test_worker import x\n": ["test_worker"],
        "from . import test_worker\n": ["test_worker"],
        "def f():\n    from tests.test_worker import x\n": ["tests.test_worker"],
        "from tests.scenario import plan\nimport tests.fakeapi\nfrom tests import invariants\n": [],
    }
    assert {source: _test_modules_imported(source) for source in spellings} == spellings


MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_modules_and_functions_stay_short_enough_to_read():
    """A module over 500 lines has taken a second job, a function over 80 lines a second
    step; either may stay long only if its docstring says why (with "long because")."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        name = str(path.relative_to(REPO))
        if len(source.splitlines()) > MAX_MODULE_LINES and not _says_why(tree):
            long.append(name)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if size > MAX_FUNCTION_LINES and not _says_why(node):
                    long.append(f"{name}:{node.name} ({size} lines)")
    assert long == []


def _says_why(node: ast.AST) -> bool:
    return "long because" in (ast.get_docstring(node) or "")  # type: ignore[arg-type]
