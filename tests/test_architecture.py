"""Architecture rules that code review alone would let slip (DESIGN.md "Module map", style rules 1 and 7).

- Each outside library is imported by exactly one module of the package.
- The engine imports nothing that does I/O and nothing outside the standard library.
- Every module opens with a docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"

OWNERS = {
    "kubernetes": {"monitor/cluster.py"},
    "sqlalchemy": {"monitor/store.py"},
    "alembic": {"monitor/store.py"},
    "slack_sdk": {"monitor/alert.py"},
    "prometheus_client": {"monitor/metrics.py"},
    "apscheduler": {"monitor/service.py"},
}
ENGINE_FORBIDDEN = {"os", "io", "socket", "subprocess", "pathlib", "shutil", "time", "datetime", "random",
                    "asyncio", "yaml", "json", "logging", "urllib", "http"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_each_outside_library_is_imported_in_one_module_only():
    offenders = []
    for path in modules():
        for lib in imported_roots(path) & OWNERS.keys():
            owners = OWNERS[lib]
            # A package of its own (monitor/store/) may split the owner module into private parts.
            if rel(path) not in owners and not any(rel(path).startswith(o[:-3] + "/") for o in owners):
                offenders.append(f"{rel(path)} imports {lib}")
    assert offenders == []


def test_engine_does_no_io():
    offenders = []
    for path in (PACKAGE / "engine").rglob("*.py"):
        bad = imported_roots(path) & ENGINE_FORBIDDEN
        outside = {r for r in imported_roots(path) if r not in ("monitor", "__future__", "collections",
                                                                  "dataclasses", "functools", "ipaddress",
                                                                  "typing", "itertools", "enum", "bisect")}
        if bad or outside:
            offenders.append(f"{rel(path)}: {sorted(bad | outside)}")
    assert offenders == []


def test_every_module_opens_with_a_docstring():
    missing = [rel(p) for p in modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def test_only_migrations_import_alembic():
    """Opening the store (every CLI command) must not pay for importing Alembic: only migrate.py, lazily,
    and the migration scripts use it."""
    users = {rel(p) for p in modules() if "alembic" in imported_roots(p)}
    assert {u for u in users if u != "monitor/store/migrate.py" and not u.startswith("monitor/store/migrations/")
            } == set()
    top_level = {n.module.split(".")[0] for n in ast.parse((PACKAGE / "store" / "migrate.py").read_text()).body
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert "alembic" not in top_level


def test_topology_imports_only_models():
    """Every stage imports topology.py; it must not pull anything in after it (nor create a cycle)."""
    roots = imported_roots(PACKAGE / "topology.py")
    monitor_modules = {n.module for n in ast.walk(ast.parse((PACKAGE / "topology.py").read_text()))
                       if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("monitor")}
    assert roots <= {"__future__", "monitor"} and monitor_modules == {"monitor.models"}
