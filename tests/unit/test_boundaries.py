"""The layers read from the layout (docs/architecture.md, "Layers"): every package imports only the
ones below it, no two modules import each other in a circle, and the pure core imports no Django.

The import graph is read from the source with ``ast``, imports inside functions included: a lazy
import is still an arrow between two modules, and hiding one in a function does not make it point
the other way.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pki

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top. A module may import its own package and any package of a lower rank.
LAYERS: dict[str, int] = {
    "pki": 0,
    "core": 1,
    "authority": 2,
    "enrollment": 3,
    "bundles": 4,
    "audit": 5,
    "ca_portal": 6,
}
# Pure: plain functions on plain values, no framework (the renderers and the zip writer included).
PURE = ("pki", "bundles.renderers", "bundles.archive", "bundles.preview")
FRAMEWORKS = ("django", "celery", "kombu", "rest_framework", "drf_spectacular", "redis", "psycopg")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _product_files() -> Iterator[Path]:
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # "from authority import services" imports a module too
                yield node.lineno, f"{target}.{alias.name}"


def _graph() -> dict[str, set[str]]:
    known = {_module_name(path) for path in _product_files()}
    graph: dict[str, set[str]] = {}
    for path in _product_files():
        source = _module_name(path)
        edges = graph.setdefault(source, set())
        for _, target in _imports(path):
            if target in known and target != source:
                edges.add(target)
    return graph


def test_every_package_imports_only_the_layers_below_it() -> None:
    upward = []
    for path in _product_files():
        source = path.relative_to(ROOT).parts[0]
        for line, target in _imports(path):
            top = target.split(".")[0]
            if top in LAYERS and LAYERS[top] > LAYERS[source]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert upward == [], "imports against the layer order:\n" + "\n".join(sorted(set(upward)))


def test_no_app_imports_the_site() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _product_files()
        if path.relative_to(ROOT).parts[0] != "ca_portal"
        for line, target in _imports(path)
        if target.split(".")[0] == "ca_portal"
    ]
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = _graph()
    # A package's __init__ that re-exports its modules is not a circle with them: the modules
    # import their siblings, never the package they belong to.
    for module, edges in graph.items():
        edges -= {m for m in edges if module.startswith(m + ".")}
    assert _cycles(graph) == []


def test_it_finds_a_circle_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("prefix", PURE)
def test_the_pure_core_imports_no_framework(prefix: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in _product_files()
        if _module_name(path) == prefix or _module_name(path).startswith(prefix + ".")
        for line, target in _imports(path)
        if target.split(".")[0] in FRAMEWORKS
    ]
    assert offenders == []


def test_benchmarks_do_not_import_the_tests() -> None:
    offenders = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        for line, target in _imports(path):
            if target.split(".")[0] == "tests":
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert offenders == []


def test_it_finds_every_module_of_the_pki_package() -> None:
    expected = {"ca", "crl", "csr", "der", "errors", "est", "issue", "keys", "names", "profiles"}
    assert {m.name for m in pkgutil.iter_modules(pki.__path__)} >= expected


def test_it_imports_the_pure_modules_without_django_or_celery() -> None:
    """The static check above, confirmed by a fresh interpreter (this process has Django loaded)."""
    modules = sorted(
        _module_name(path)
        for path in _product_files()
        if any(_module_name(path) == p or _module_name(path).startswith(p + ".") for p in PURE)
    )
    probe = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(','.join(sorted(n for n in sys.modules if n.split('.')[0] in ('django', 'celery'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"pure modules pulled in: {out.stdout.strip()}"
