"""Packaging: every distribution the package imports is declared, extras stay optional, and
the declared package data exists (so ``pip install .`` without extras runs the demo)."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gen5dask"


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _canon(re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0])


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _imports(tree: ast.AST):
    """``(top-level module, guarded)`` of every absolute import; guarded = inside a function or
    a ``try`` block (a lazy or optional import)."""
    out = []

    def visit(node, guarded):
        for child in ast.iter_child_nodes(node):
            g = guarded or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Try)
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], guarded) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module.split(".")[0], guarded))
            visit(child, g)

    visit(tree, False)
    return out


def _package_imports() -> dict[str, list[tuple[str, bool]]]:
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for mod, guarded in _imports(ast.parse(path.read_text(), filename=rel)):
            if mod in sys.stdlib_module_names or mod in ("gen5dask", "__future__"):
                continue
            found.setdefault(mod, []).append((rel, guarded))
    return found


def test_every_import_is_a_declared_distribution():
    proj = _project()
    base = {_req_name(r) for r in proj["dependencies"]}
    base |= {"distributed"} if "dask" in base else set()  # dask[distributed]
    extras = {
        _req_name(r)
        for name, reqs in proj["optional-dependencies"].items()
        if name != "dev"
        for r in reqs
    }
    dist_of = importlib.metadata.packages_distributions()
    undeclared, unguarded = [], []
    for mod, where in _package_imports().items():
        dists = {_canon(d) for d in dist_of.get(mod, [])}
        assert dists, f"import {mod!r} ({where[0][0]}) maps to no installed distribution"
        if dists & base:
            continue
        if dists & extras:
            unguarded += [f"{mod} in {f}" for f, guarded in where if not guarded]
            continue
        undeclared.append(f"{mod} ({sorted(dists)}; first in {where[0][0]})")
    assert not undeclared, f"imported but not declared in dependencies: {undeclared}"
    assert not unguarded, f"extras imported at module level (must be lazy): {unguarded}"


def test_declared_minimums_cover_the_apis_used():
    """The minimum versions are what the code needs (each pin has its reason beside it)."""
    deps = {_req_name(r): r for r in _project()["dependencies"]}
    for name, floor in {"pydantic": "2.7", "torch": "2.3", "zarr": "3.1", "scipy": "1.15"}.items():
        assert f">={floor}" in deps[name], (name, deps[name])
    assert "pillow" in deps and "astropy-healpix" in deps
    assert "lenscat" not in deps  # an extra, only for a newer catalogue


def test_extras_and_package_data():
    proj = _project()
    extras = proj["optional-dependencies"]
    assert {"hpc", "catalogs", "parquet", "dev"} <= set(extras)
    assert any(_req_name(r) == "pyarrow" for r in extras["parquet"])
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pkg, patterns in data["package-data"].items():
        base = ROOT / Path(*pkg.split("."))
        for pat in patterns:
            assert list(base.glob(pat)), f"declared package data {pkg}:{pat} does not exist"


def test_bundled_lenscat_catalogue_matches_its_record():
    import gzip

    from gen5dask.data import lenscat_csv, lenscat_info

    info = lenscat_info()
    raw = gzip.decompress(lenscat_csv().read_bytes())
    assert hashlib.sha256(raw).hexdigest() == info["sha256_uncompressed"]
    assert raw.count(b"\n") - 1 == info["rows"]
    assert info["licence"] == "MIT"
    licence = (PKG / "data" / info["licence_file"]).read_text()
    assert licence.startswith("MIT License") and "Permission is hereby granted" in licence


def test_default_catalogue_reading_needs_no_lenscat(monkeypatch):
    import importlib.util

    from gen5dask.anchors import catalogs

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lenscat" else real(name, *a))
    df = catalogs.read_lenscat(gradings=["confident"], ref_include=["Huang", "Storfer"])
    assert len(df) > 100 and not df.ref.str.contains("Lopes").any()
    with pytest.raises(FileNotFoundError, match=r"gen5dask\[catalogs\]"):
        catalogs.lenscat_path("package")


def test_parquet_without_pyarrow_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.util

    from gen5dask.store.catalogs import require_parquet_engine

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    require_parquet_engine(tmp_path / "list.csv")  # other formats: no-op
    with pytest.raises(ValueError, match=r"gen5dask\[parquet\]"):
        require_parquet_engine(tmp_path / "list.parquet")
