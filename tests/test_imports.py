"""No import cycle among gen5dask modules (lazy imports inside functions included) and no module
importing another module's underscore names."""

import ast
from pathlib import Path

import gen5dask

ROOT = Path(gen5dask.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = f
    return mods


def import_graph():
    """``(edges, private)``: module -> imported gen5dask modules, and private-name imports."""
    mods = _modules()
    edges: dict[str, set[str]] = {}
    private: list[str] = []
    for name, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text())):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    targets.append((sub, None) if sub in mods else (mod, a.name))
            for t, attr in targets:
                if not t.startswith("gen5dask"):
                    continue
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != name:
                    edges.setdefault(name, set()).add(t)
                    if attr and attr.startswith("_") and not attr.startswith("__"):
                        private.append(f"{name} <- {t}.{attr}")
    return mods, edges, private


def _cycles(mods, edges) -> list[list[str]]:
    """Strongly connected components with > 1 module, except a package and its children when
    only the package imports them (re-exports)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in mods:
        if v not in index:
            visit(v)

    def reexport_only(comp):
        pk = [m for m in comp if mods[m].name == "__init__.py"]
        return (
            len(pk) == 1
            and all(m == pk[0] or m.startswith(pk[0] + ".") for m in comp)
            and not any(pk[0] in edges.get(m, ()) for m in comp if m != pk[0])
        )

    return [c for c in out if not reexport_only(c)]


def test_no_import_cycles():
    mods, edges, _ = import_graph()
    assert _cycles(mods, edges) == []


def test_cycle_detector_sees_lazy_imports():
    mods = {"gen5dask.a": Path("a.py"), "gen5dask.b": Path("b.py")}
    assert _cycles(mods, {"gen5dask.a": {"gen5dask.b"}, "gen5dask.b": {"gen5dask.a"}}) == [
        ["gen5dask.a", "gen5dask.b"]
    ]


def test_no_private_name_imports_across_modules():
    _, _, private = import_graph()
    # gen5dask.train is being reworked by the loader issue; everything else must be clean
    assert [p for p in private if not p.startswith("gen5dask.stages.train ")] == []


#: the libraries of README "Architecture": they never import the stages or the CLI
#: (gen5dask.train is reworked by the loader issue: its torchrun entry point still calls the
#: train stage).
LIBRARIES = ("injection", "sim", "store", "evaluate", "gates", "anchors", "regions", "viz",
             "kernels", "config", "provenance", "paths", "executor")


def test_layers_libraries_never_import_stages_or_cli():
    _, edges, _ = import_graph()
    bad = []
    for mod, deps in edges.items():
        if mod.split(".")[1:2] and mod.split(".")[1] in LIBRARIES:
            bad += [f"{mod} -> {d}" for d in deps
                    if d.startswith(("gen5dask.stages", "gen5dask.cli"))]
    assert bad == []


def test_kernels_import_only_kernels():
    _, edges, _ = import_graph()
    bad = [f"{m} -> {d}" for m, deps in edges.items() if m.startswith("gen5dask.kernels")
           for d in deps if not (d.startswith("gen5dask.kernels") or d == "gen5dask")]
    assert bad == []
