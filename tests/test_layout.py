"""The package's shape: no import cycle between modules or between the role packages, no module
over the size a module with one role keeps, a root holding only the faces, and every package
shipped in a wheel.

Imports are read from the source (``ast``), inside functions too: a function-level import is a
dependency all the same, only a later one.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toolchain" / "edgepack"
#: the most lines one module may hold (STYLE.md: a module past ~500 lines is usually two)
MAX_LINES = 520
#: the most modules at the package root (the faces: api, pipeline, errors, progress, ...)
MAX_ROOT_MODULES = 10
#: the role packages, lowest first, in the order data flows (docs/design.md); a module imports only
#: its own package and those of a lower rank. One rank may hold two packages that ignore each other.
LAYERS = (
    ("edgepack", "errors", "_stdio", "progress"),
    ("paths", "userfiles"),
    ("fingerprint",),
    ("tasks",),
    ("profiles",),
    ("devices",),
    ("data",),
    ("models",),
    ("mcu",),
    ("compress", "compress.prune", "compress.quantize"),
    ("compress.weights",),
    ("convert",),
    ("measure",),
    ("ship",),
    ("stages",),
    ("pipeline",),
    ("tune", "compare"),
    ("api",),
    ("cli",),
)


def _modules() -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package's __init__)} of every module of edgepack."""
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """{module: the edgepack modules it imports}, relative and absolute, at any depth of the file."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, (f, is_pkg) in mods.items():
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names if a.name.split(".")[0] == "edgepack"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] != "edgepack":
                    continue
                for a in node.names:
                    full = f"{base}.{a.name}"
                    deps.add(full if full in mods else resolve(base))
        deps.discard(None)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def role(module: str) -> str:
    """The role package a module belongs to: ``edgepack.measure.bench`` -> ``measure``;
    compression's three jobs count apart (``compress.prune``, ``compress.quantize``, ...)."""
    parts = module.split(".")[1:]
    if not parts:
        return "edgepack"
    if parts[0] == "compress" and len(parts) > 1:
        return f"compress.{parts[1]}"
    return parts[0]


def test_the_cycle_finder_finds_a_cycle():
    # the checks below mean something only if a cycle is found when there is one
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (function-level imports count): " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_cycle_between_role_packages():
    roles: dict[str, set[str]] = {}
    for mod, deps in import_graph().items():
        roles.setdefault(role(mod), set()).update(role(d) for d in deps if role(d) != role(mod))
    found = cycles(roles)
    assert not found, "role packages that import each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_import_goes_down_the_layers():
    rank = {name: i for i, names in enumerate(LAYERS) for name in names}
    unranked = sorted({role(m) for m in import_graph()} - set(rank))
    assert not unranked, f"role packages with no place in LAYERS: {unranked}"
    up = sorted(f"{m} -> {d}" for m, deps in import_graph().items() for d in deps
                if role(d) != role(m) and rank[role(d)] >= rank[role(m)])
    assert not up, "imports that run up (or across) the layers: " + "; ".join(up)


@pytest.mark.parametrize("face", ["edgepack.api", "edgepack.cli.main", "edgepack.pipeline"])
def test_the_faces_are_imported_only_from_above(face):
    # api and the CLI sit on top; the pipeline is composed by api, tune and compare only
    above = {"edgepack.api": {"cli"}, "edgepack.cli.main": {"cli"},
             "edgepack.pipeline": {"api", "cli", "tune", "compare"}}[face]
    below = sorted(m for m, deps in import_graph().items() if face in deps and role(m) not in above and m != face)
    assert not below, f"{face} is imported from below: {below}"


def test_no_module_is_two_modules():
    big = {str(f.relative_to(PACKAGE)): n for f, _ in _modules().values()
           if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split by role): {big}"


def test_the_root_holds_only_the_faces():
    root = sorted(f.name for f in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the package root: {root}"


def test_every_package_is_shipped():
    setup = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = {n for n, (_, is_pkg) in _modules().items() if is_pkg}
    assert found <= listed, f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"
