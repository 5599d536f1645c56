"""The package's import graph: no cycle among gpusched modules, no import up the layers.

Every module of ``gpusched`` is parsed with ``ast`` (nothing is imported): imports at module
level and inside functions count, relative imports are resolved by their level, and
``from . import x`` counts as an import of the module ``x`` when there is one.  Imports
inside ``if TYPE_CHECKING:`` are exempt: they never run, so they can neither loop nor pull
a higher layer in at run time (mypy sees them, and mypy resolves such cycles itself).

The layers are DESIGN's list ("Layers", docs/design.md), lowest first; a module may import
its own layer and the layers below it.  Both the names before the renovation's splits
(``gpusched.cluster``, ``gpusched.allocation``, ``gpusched.serve.k8s``) and the packages
after them (``gpusched.spec``, ``gpusched.plan``, ``gpusched.serve.k8s.*``) are mapped, so
the test reads the same before and after each split merges.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "gpusched"

# Lowest first.  A module's layer is that of the longest prefix below that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # _atomic is write_atomic (temp file, fsync, rename): the spec and state layers both save
    # _version holds __version__ alone, so `gpusched --version` need not import the face;
    # _units picks kW or MW for the CLI's and the simulator's tables
    ("base", ("gpusched.errors", "gpusched._atomic", "gpusched._checks", "gpusched.job",
              "gpusched.power", "gpusched._version", "gpusched._units",
              "gpusched.hostlist")),
    ("spec", ("gpusched.spec", "gpusched.cluster")),
    ("engine", ("gpusched.engine", "gpusched._site", "gpusched.explanation", "gpusched._engine_py", "gpusched._engine_c",
                "gpusched._core", "gpusched.state")),
    # bound.py is the fluid upper bound on throughput (a linear programme over the site, like
    # the allocator's); it imports only power, and the simulator reads it
    ("plan", ("gpusched.plan", "gpusched.allocation", "gpusched.allocate", "gpusched.bound")),
    ("simulate", ("gpusched.simulate",)),
    ("sweep", ("gpusched.sweep",)),
    ("serve", ("gpusched.serve", "gpusched.adapters")),
    ("cli", ("gpusched.cli",)),
    # the package's face re-exports the public names of every layer, so it sits on top:
    # no module below may import ``gpusched`` itself at run time
    ("face", ("gpusched",)),
]

# Import edges that still close a cycle and that a named branch is removing.  The lead
# deletes an entry when that branch merges; an entry whose edge is gone fails the test.
# Empty today: serve/k8s.py -> serve/service.py (the gang book's way back into the service)
# is an import under TYPE_CHECKING only, so it never runs; branch `k8s` removes it for good.
# An entry reads {("gpusched.a", "gpusched.b"): "branch-that-removes-it"}.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}

# Upward imports the design asks for by name, each inside one method that runs it on first
# call (so ``import gpusched.engine`` still loads nothing above its layer).  Issue 16 asks
# for ``engine.plan_preemption(job, pod=None)`` as a thin wrapper over the plan layer.
LAZY_UPWARD_EDGES: dict[tuple[str, str], str] = {
    ("gpusched.engine", "gpusched.plan.preempt"): "Engine.plan_preemption (issue 16)",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    """Every module, by name; a compiled module by its stub (its imports are not parsed)."""
    found = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.pyi"))}
    found.update({module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))})
    return found


def is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imported(name: str, path: Path, modules: set[str]) -> set[str]:
    """The gpusched modules ``name`` imports when it runs (TYPE_CHECKING blocks left out)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "gpusched")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gpusched":
                return
            # `from pkg import sub` imports the module pkg.sub when there is one
            subs = {f"{target}.{a.name}" for a in node.names} & modules
            found.update(subs or {target})
            if subs and len(subs) < len(node.names):
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found.discard(name)
    return found


def layer_of(name: str) -> int:
    best, best_len = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    assert best is not None, f"{name} has no layer in LAYERS: give it one (DESIGN's list)"
    return best


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    # a stub's imports are types only, and the compiled core's own cimports are C-level
    return {name: imported(name, path, set(modules)) if path.suffix == ".py" else set()
            for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_parser_sees_the_imports_it_must():
    # guard against a test that passes because it sees nothing
    edges = graph()
    assert "gpusched.spec" in edges["gpusched.engine"]
    assert "gpusched.state" in edges["gpusched.engine"]
    assert "gpusched._engine_c" in edges["gpusched.engine"]          # inside a function
    assert "gpusched.spec.formats" in edges["gpusched.spec.cluster"]  # from . import formats
    assert "gpusched.plan" in edges["gpusched.simulate.policies"]     # from .. import plan
    assert "gpusched.spec" not in edges["gpusched._checks"]           # TYPE_CHECKING only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    for name in all_modules():
        layer_of(name)


def test_no_import_runs_up_the_layers():
    upward = [f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
              for src, targets in sorted(graph().items()) for dst in sorted(targets)
              if layer_of(dst) > layer_of(src) and (src, dst) not in LAZY_UPWARD_EDGES]
    assert not upward, "imports up DESIGN's layers:\n" + "\n".join(upward)


def test_lazy_upward_edges_are_inside_functions_only():
    # an allowed upward edge must not run at import: no module-level import of it
    modules = all_modules()
    for (src, dst), why in LAZY_UPWARD_EDGES.items():
        tree = ast.parse(modules[src].read_text(encoding="utf-8"))
        top = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and dst.endswith(node.module):
                top.add(node.module)
        assert not top, f"{src} imports {dst} at module level ({why}): move it into the method"
        assert dst in graph()[src], f"{src} -> {dst} ({why}) no longer exists: delete the entry"


def test_no_import_cycle_among_gpusched_modules():
    edges = graph()
    for (src, dst), branch in KNOWN_CYCLE_EDGES.items():
        if src in edges:  # after the split the old module is gone, and so is the edge
            assert dst in edges[src], (f"{src} -> {dst} no longer exists (fixed on branch "
                                       f"{branch!r}): delete its KNOWN_CYCLE_EDGES entry")
            edges[src] = edges[src] - {dst}
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)
