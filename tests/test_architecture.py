"""Architecture rules that code review alone would let slip (DESIGN.md "Module map", style rules 1 and 7).

- Each outside library is imported only inside its owner (a module, or a package and everything in it), at
  module level or inside a function alike. Every module of the package is checked, whatever exists today: an
  owner that does not exist yet simply means nothing may import its library.
- What a module loads at import time counts too (its module-level imports, transitively through our own
  modules): a module that is not a library's owner and still loads it must say so in its docstring
  ("loads <library> through <owner module>"), so a docstring cannot claim what the imports contradict.
- The engine, and everything it loads, does no I/O and imports nothing outside the standard library.
- Every module opens with a docstring.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"

# library -> its owner: "monitor/x.py" (that file) or "monitor/x/" (that package, every file in it).
OWNERS = {
    "kubernetes": "monitor/cluster.py",
    "sqlalchemy": "monitor/store/",
    "alembic": "monitor/store/",
    "slack_sdk": "monitor/alert.py",
    "prometheus_client": "monitor/metrics.py",
    "apscheduler": "monitor/service.py",
    "uvicorn": "monitor/web/",
    "starlette": "monitor/web/",
    "fastapi": "monitor/web/",
    "jinja2": "monitor/web/",
    "markupsafe": "monitor/web/",
    "rich": "monitor/render.py",  # terminal tables
}
ENGINE_FORBIDDEN = {"os", "io", "socket", "subprocess", "pathlib", "shutil", "time", "datetime", "random",
                    "asyncio", "yaml", "json", "logging", "urllib", "http"}
ENGINE_STDLIB = {"__future__", "collections", "dataclasses", "functools", "ipaddress", "typing", "itertools",
                 "enum", "bisect", "abc"}


# ------------------------------------------------------------------------------------------- the package
def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def by_name() -> dict[str, Path]:
    return {module_name(p): p for p in modules()}


def owns(owner: str, path: Path) -> bool:
    return rel(path).startswith(owner) if owner.endswith("/") else rel(path) == owner


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def imported_names(nodes, path: Path) -> set[str]:
    """Absolute dotted names imported by these nodes (relative imports resolved against `path`)."""
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path).split(".")
                package = package if path.name == "__init__.py" else package[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            # `from monitor import store` imports the submodule monitor.store
            names.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in by_name())
    return names


def all_imports(path: Path) -> set[str]:
    """Every import of the module, wherever it is (module level, functions, TYPE_CHECKING blocks)."""
    return imported_names(ast.walk(tree(path)), path)


def import_time_imports(path: Path) -> set[str]:
    """What importing the module executes: module-level imports, also inside if/try/with and class bodies, but
    not inside functions and not under `if TYPE_CHECKING:`."""
    found = []

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []) or [])

    visit(tree(path).body)
    return imported_names(found, path)


def ours(name: str) -> list[str]:
    """The modules of ours that importing `name` executes: it and its parent packages."""
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in by_name()]


@cache
def loaded_at_import(module: str) -> frozenset[str]:
    """Every module name (ours and outside) that importing `module` loads, through our own modules."""
    seen, todo, outside = set(), [module, *ours(module)], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for name in import_time_imports(by_name()[m]):
            mine = ours(name)
            if mine:
                todo.extend(mine)
            else:
                outside.add(name)
    return frozenset(seen | outside)


def roots(names) -> set[str]:
    return {n.split(".")[0] for n in names}


# ------------------------------------------------------------------------------------------------ tests
def test_the_checks_see_the_real_package():
    """No vacuous pass: the walk finds the modules and the imports that exist today."""
    assert len(modules()) > 20
    assert "kubernetes" in roots(all_imports(PACKAGE / "cluster.py"))
    assert {"sqlalchemy", "alembic"} <= roots(i for p in (PACKAGE / "store").rglob("*.py") for i in all_imports(p))
    assert "kubernetes" in roots(loaded_at_import("monitor.cluster"))
    assert "monitor.store.schema" in loaded_at_import("monitor.store")
    assert "kubernetes" not in roots(loaded_at_import("monitor.cli"))  # the CLI loads adapters lazily


def test_each_outside_library_is_imported_in_its_owner_only():
    offenders = []
    for path in modules():
        for lib in sorted(roots(all_imports(path)) & OWNERS.keys()):
            if not owns(OWNERS[lib], path):
                offenders.append(f"{rel(path)} imports {lib} (owner: {OWNERS[lib]})")
    assert offenders == []


def test_a_module_that_loads_a_library_through_its_owner_says_so():
    offenders = []
    for name, path in by_name().items():
        docstring = " ".join((ast.get_docstring(tree(path)) or "").split())
        for lib in sorted(roots(loaded_at_import(name)) & OWNERS.keys()):
            if owns(OWNERS[lib], path):
                continue
            owner = OWNERS[lib].removesuffix(".py").removesuffix("/").replace("/", ".")
            if f"loads {lib} through {owner}" not in docstring:
                offenders.append(f"{rel(path)} loads {lib} at import time (through {owner}) and does not say so")
    assert offenders == []


def test_engine_does_no_io_and_loads_nothing_outside_the_standard_library():
    offenders = []
    for path in (PACKAGE / "engine").rglob("*.py"):
        loaded = loaded_at_import(module_name(path))
        mine = {n for n in loaded if ours(n)}
        outside = roots(n for n in loaded if not ours(n))
        bad = (outside & ENGINE_FORBIDDEN) | (outside - ENGINE_STDLIB)
        not_pure = {m for m in mine if not (m.startswith("monitor.engine") or m in ("monitor", "monitor.models"))}
        if bad or not_pure:
            offenders.append(f"{rel(path)}: {sorted(bad | not_pure)}")
    assert offenders == []


def test_every_module_opens_with_a_docstring():
    missing = [rel(p) for p in modules() if not ast.get_docstring(tree(p))]
    assert missing == []


def test_only_migrations_import_alembic():
    """Opening the store (every CLI command) must not pay for importing Alembic: only migrate.py, lazily,
    and the migration scripts use it."""
    users = {rel(p) for p in modules() if "alembic" in roots(all_imports(p))}
    assert {u for u in users if u != "monitor/store/migrate.py" and not u.startswith("alembic/")
            } == set()
    top_level = {n.module.split(".")[0] for n in ast.parse((PACKAGE / "store" / "migrate.py").read_text()).body
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert "alembic" not in top_level


def test_topology_imports_only_models():
    """Every stage imports topology.py; it must not pull anything in after it (nor create a cycle)."""
    outside = roots(all_imports(PACKAGE / "topology.py"))
    monitor_modules = {n.module for n in ast.walk(ast.parse((PACKAGE / "topology.py").read_text()))
                       if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("monitor")}
    assert outside <= {"__future__", "monitor"} and monitor_modules == {"monitor.models"}


def test_dashboard_views_are_plain_data():
    """views.py builds what a page and its JSON twin show: no HTTP, no templates, no database library."""
    forbidden = {"starlette", "jinja2", "markupsafe", "sqlalchemy"}
    assert roots(all_imports(PACKAGE / "web" / "views.py")) & forbidden == set()


def test_pure_probe_pod_data_loads_nothing_but_the_standard_library():
    """probe/pods.py is what the runner, run.py and the adapter share: it must stay importable without kubernetes
    (or anything else outside the standard library)."""
    loaded = loaded_at_import("monitor.probe.pods")
    assert {n for n in loaded if ours(n)} == {"monitor", "monitor.probe", "monitor.probe.pods"}
    assert roots(n for n in loaded if not ours(n)) <= {"__future__", "dataclasses", "datetime"}


def test_a_live_run_loads_kubernetes_only_through_the_adapter_it_is_handed():
    """monitor.run and the probe runner take the ClusterAdapter as an argument: importing them (as the CLI, the
    service, the benchmarks do) must not load the kubernetes client by itself."""
    for module in ("monitor.run", "monitor.probe.runner", "monitor.cli.live", "monitor.report.policyreport"):
        assert "kubernetes" not in roots(loaded_at_import(module)), module
    assert "kubernetes" in roots(loaded_at_import("monitor.service"))  # the service connects by itself


def test_offline_commands_and_importing_a_run_leave_kubernetes_unloaded(tmp_path):
    """The same in a real interpreter (lazy imports, __init__ side effects and all): the offline commands run end to
    end, then monitor.run is imported; kubernetes is not in sys.modules until the adapter is imported."""
    import subprocess
    import sys

    shop = PACKAGE.parent / "config" / "examples" / "shop"
    script = f"""
import contextlib, io, sys
from monitor.cli import main
commands = [["matrix", "--manifests", {str(shop)!r}, "--format", "json"],
            ["check", "--manifests", {str(shop)!r}, "--suite", {str(shop / "suite.yaml")!r}],
            ["diff", "--before", {str(shop)!r}, "--after", {str(shop)!r}],
            ["suite", "generate", "--manifests", {str(shop)!r}, "-o", {str(tmp_path / "suite.yaml")!r}]]
for argv in commands:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    print(argv[0], code, "kubernetes" in sys.modules)
import monitor.probe.runner, monitor.run
print("import-run", 0, "kubernetes" in sys.modules)
import monitor.cluster
print("import-cluster", 0, "kubernetes" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows == [["matrix", "0", "False"], ["check", "0", "False"], ["diff", "0", "False"],
                    ["suite", "0", "False"], ["import-run", "0", "False"], ["import-cluster", "0", "True"]]
