"""Imports point one way: the layout's contracts, read from the source with ``ast``.

Every import counts, deferred ones and those under ``TYPE_CHECKING`` too: a
direction that holds only at run time still couples the modules.
"""

from __future__ import annotations

import ast
import functools
import pathlib

import pytest

import tracker

ROOT = pathlib.Path(tracker.__file__).parent
SUBPACKAGES = (
    "console", "dispatch", "domain", "ops", "privacy", "reports", "sandbox", "sending", "webhooks",
)  # fmt: skip
IO_LIBRARIES = frozenset(
    {"sqlalchemy", "starlette", "uvicorn", "httpx", "asyncpg", "aiosqlite", "sqlite3"}
)


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str:
    """The module an imported dotted name is: ``tracker.db`` or ``tracker.reports.plan``."""
    while name not in _sources() and "." in name:
        name = name.rsplit(".", 1)[0]  # an imported name of a module, not a module
    return name


@functools.cache
def _sources() -> dict[str, pathlib.Path]:
    return {_module_name(path): path for path in ROOT.rglob("*.py")}


@functools.cache
def imports() -> dict[str, frozenset[str]]:
    """Each module of ours -> what it imports: our modules, and other packages' roots."""
    graph: dict[str, frozenset[str]] = {}
    for module, path in _sources().items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[module] = frozenset(
            _resolve(name) if name.split(".")[0] == "tracker" else name.split(".")[0]
            for name in found
        )
    return graph


def ours(module: str) -> set[str]:
    return {name for name in imports()[module] if name.startswith("tracker.")}


def modules_in(package: str) -> list[str]:
    return sorted(m for m in imports() if m == package or m.startswith(package + "."))


def group(module: str) -> str:
    """The node of the package graph: a subpackage, or a top-level module on its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_the_graph_sees_every_module() -> None:
    """The contracts below read a graph that holds every package and resolves our imports."""
    assert {"tracker.domain.status", "tracker.reports.plan", "tracker.console.bulk"} <= set(
        imports()
    )
    assert "tracker.domain.status" in ours("tracker.dispatch.outbox")


@pytest.mark.parametrize("module", modules_in("tracker.domain"))
def test_domain_imports_nothing_of_ours_but_the_errors(module: str) -> None:
    """domain/ is pure: no I/O library, and of ours only the one exception hierarchy."""
    assert ours(module) <= {"tracker.domain", "tracker.errors"} | set(modules_in("tracker.domain"))
    assert not imports()[module] & IO_LIBRARIES


@pytest.mark.parametrize("module", ["tracker.errors", "tracker.clock"])
def test_the_leaves_import_nothing_of_ours(module: str) -> None:
    """errors and clock are leaves, so pure code may use them."""
    assert ours(module) == set()


@pytest.mark.parametrize("module", modules_in("tracker.console"))
def test_console_speaks_http_only(module: str) -> None:
    """console/ imports no database, web server or server module: only console/ and domain/."""
    assert not imports()[module] & (IO_LIBRARIES - {"httpx"})
    for name in ours(module):
        assert name.startswith(("tracker.console", "tracker.domain")), name


@pytest.mark.parametrize("module", ["tracker.reports.plan", "tracker.reports.reading"])
def test_the_report_planner_is_pure(module: str) -> None:
    """reports.plan and the reading it decides from: values only, no database layer or driver."""
    assert not imports()[module] & IO_LIBRARIES
    allowed = {"tracker.clock", "tracker.errors", "tracker.logs", *modules_in("tracker.domain")}
    assert ours(module) <= allowed | {"tracker.reports.reading"}


def test_the_outbox_does_not_import_the_provider_client() -> None:
    """dispatch.outbox records outcomes from domain values, not the client's classes."""
    assert "tracker.dispatch.kimisms" not in ours("tracker.dispatch.outbox")


def test_the_provider_client_holds_no_sql() -> None:
    """dispatch.kimisms keeps the token cache through dispatch.token_cache."""
    assert "sqlalchemy" not in imports()["tracker.dispatch.kimisms"]
    assert "tracker.models" not in ours("tracker.dispatch.kimisms")


ENTRY_POINTS = {"tracker.__main__", "tracker.cli", "tracker.demo"}


@pytest.mark.parametrize("module", sorted(imports()))
def test_only_entry_points_import_the_app_and_the_cli(module: str) -> None:
    """The app and the CLI sit on top: no package module imports them."""
    if module not in ENTRY_POINTS:
        assert not ours(module) & {"tracker.app", "tracker.cli"}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def _on_cycles(graph: dict[str, set[str]]) -> list[str]:
    """The nodes that can reach themselves."""
    return sorted(node for node in graph if node in _reachable(graph, node))


def test_packages_import_each_other_one_way() -> None:
    """No cycle between packages (each top-level module counts as its own)."""
    graph: dict[str, set[str]] = {}
    for module in imports():
        graph.setdefault(group(module), set()).update(
            group(name) for name in ours(module) if group(name) != group(module)
        )
    assert _on_cycles(graph) == []


def test_modules_import_each_other_one_way() -> None:
    """No cycle between modules either (the ops/openapi one is gone)."""
    graph = {module: ours(module) - {"tracker"} for module in imports()}
    assert _on_cycles(graph) == []
