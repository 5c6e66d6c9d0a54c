"""Create, write (resumably), open, append to and validate contract stores (DESIGN §3).

A store is a Zarr v3 group that ``xr.open_zarr`` opens: every array carries
``dimension_names`` and units; it is chunked along ``sample`` only, with consolidated metadata.

Writes are resumable and atomic per chunk: the writer of chunk ``i`` writes every variable's
slice and only then drops a completion marker ``_gen5dask/done/<i>``. Completion is read from the
markers, never inferred from chunk files, so a write killed half-way leaves that chunk pending
and a rerun rewrites it in full. The process that drives a write holds an exclusive lock
(``_gen5dask/lock``); a second writer gets :class:`StoreLockedError` instead of corrupting it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from gen5dask.provenance import provenance_attrs, utc_now
from gen5dask.store import schema
from gen5dask.store.schema import ALL_VARIABLES, CODED, REQUIRED, SAMPLE, Var

STATE = "_gen5dask"
DEFAULT_CHUNK = 256


class StoreError(ValueError):
    """A store is missing, incomplete, or breaks the contract."""


class StoreLockedError(RuntimeError):
    """Another process is writing this store."""


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Silence zarr's consolidated-metadata warnings (keep users' output clean)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*not part of the Zarr format 3.*")
        warnings.filterwarnings("ignore", message=f".*Object at {STATE}.*not recognized.*")
        yield


def chunk_bounds(n_samples: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the sample chunks of a store."""
    if chunk_size <= 0:
        msg = f"chunk_size must be positive, got {chunk_size}"
        raise ValueError(msg)
    return [(a, min(a + chunk_size, n_samples)) for a in range(0, n_samples, chunk_size)]


def _state_dir(path: Path) -> Path:
    return Path(path) / STATE


def _manifest(path: Path) -> dict:
    f = _state_dir(path) / "manifest.json"
    if not f.exists():
        msg = f"{path}: not a gen5dask store (no {STATE}/manifest.json)"
        raise StoreError(msg)
    return json.loads(f.read_text())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _var_spec(name: str, extra: Mapping[str, Var] | None) -> Var:
    if extra and name in extra:
        return extra[name]
    if name in ALL_VARIABLES:
        return ALL_VARIABLES[name]
    msg = f"unknown store variable {name!r}; known: {sorted(ALL_VARIABLES)}"
    raise StoreError(msg)


def _shape(var: Var, n: int, nband: int, stamp: int) -> tuple[int, ...]:
    sizes = {"sample": n, "band": nband, "y": stamp, "x": stamp}
    return tuple(sizes[d] for d in var.dims)


def _var_attrs(var: Var) -> dict:
    attrs: dict[str, Any] = {"units": var.units, "long_name": var.description}
    if var.legend is not None:
        attrs["flag_values"] = list(range(len(var.legend)))
        attrs["flag_meanings"] = " ".join(s if s else "none" for s in var.legend)
        attrs["gen5dask_legend"] = list(var.legend)
    if var.units == "brickcode":
        attrs["gen5dask_encoding"] = "brickcode: RRRR*10000 + (5000 if m) + DDD"
    return attrs


@contextlib.contextmanager
def store_lock(path: str | Path) -> Iterator[None]:
    """Hold the exclusive writer lock of a store (``fcntl.flock``; local and most POSIX FS)."""
    state = _state_dir(Path(path))
    state.mkdir(parents=True, exist_ok=True)
    fh = open(state / "lock", "a+")  # noqa: SIM115
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                msg = f"{path}: store is being written by {holder}; refusing a second writer"
                raise StoreLockedError(msg) from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def create_store(
    path: str | Path,
    *,
    n_samples: int,
    stage: str,
    config: Any,
    seed: int,
    bands: Iterable[str] = ("g", "r", "z"),
    stamp_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK,
    variables: Iterable[str] = (),
    extra_vars: Mapping[str, Var] | None = None,
    parents: list[dict] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Create an empty contract store, or reopen a matching partial one for resumption.

    Parameters
    ----------
    path
        Store directory (``*.zarr``).
    n_samples, bands, stamp_size, chunk_size
        Geometry; chunks run along ``sample`` only.
    stage, config, seed, parents
        Provenance (config may be a pydantic model or a dict; its hash decides resumption).
    variables
        Optional variables (``schema.OPTIONAL`` names or ``extra_vars`` keys) besides the
        required ones.
    overwrite
        Replace an existing store whose configuration differs (otherwise that is an error).

    Returns
    -------
    Path of the store. Resumption: when a store with the same config hash and geometry exists,
    it is kept and only its pending chunks (:func:`pending_chunks`) need writing.
    """
    path = Path(path)
    bands = tuple(bands)
    names = list(REQUIRED) + [v for v in variables if v not in REQUIRED]
    prov = provenance_attrs(stage=stage, config=config, seed=seed, parents=parents)
    geometry = {
        "n_samples": int(n_samples),
        "bands": list(bands),
        "stamp_size": int(stamp_size),
        "chunk_size": int(chunk_size),
        "variables": names,
        "config_hash": prov["config_hash"],
        "stage": stage,
    }
    if path.exists():
        try:
            old = _manifest(path)
        except StoreError:
            old = None
        if old is not None and all(old.get(k) == v for k, v in geometry.items()):
            return path  # resume
        if not overwrite:
            msg = (
                f"{path} exists with a different configuration (or is not a gen5dask store); "
                "remove it or rerun with --force"
            )
            raise StoreError(msg)
        shutil.rmtree(path)
    if n_samples < 0:
        msg = f"n_samples must be >= 0, got {n_samples}"
        raise ValueError(msg)
    all_attrs = {**schema.CONVENTIONS, **prov, "bands": "".join(bands), "complete": False}
    all_attrs.update(attrs or {})
    cs = max(1, min(int(chunk_size), max(int(n_samples), 1)))
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=all_attrs)
        for name in names:
            var = _var_spec(name, extra_vars)
            shape = _shape(var, n_samples, len(bands), stamp_size)
            chunks = (cs,) + shape[1:]
            comp = (
                BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
                if len(shape) > 2
                else BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
            )
            root.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=var.dtype,
                fill_value=var.fill,
                dimension_names=var.dims,
                attributes=_var_attrs(var),
                compressors=comp,
            )
        smp = root.create_array(
            SAMPLE,
            shape=(n_samples,),
            chunks=(cs,),
            dtype="i8",
            fill_value=-1,
            dimension_names=(SAMPLE,),
            attributes={"long_name": "unique, stable sample id", "units": "id"},
        )
        del smp
        zarr.consolidate_metadata(str(path))
    state = _state_dir(path)
    (state / "done").mkdir(parents=True, exist_ok=True)
    _atomic_write_text(state / "manifest.json", json.dumps(geometry, indent=1))
    return path


def pending_chunks(path: str | Path) -> list[int]:
    """Indices of chunks without a completion marker."""
    man = _manifest(Path(path))
    n = len(chunk_bounds(man["n_samples"], man["chunk_size"]))
    done = _state_dir(Path(path)) / "done"
    return [i for i in range(n) if not (done / f"{i:08d}").exists()]


def store_geometry(path: str | Path) -> dict:
    """Manifest of a store: n_samples, bands, stamp_size, chunk_size, variables, config_hash."""
    return _manifest(Path(path))


def _encode(name: str, values: np.ndarray, var: Var) -> np.ndarray:
    if name in CODED:
        return schema.encode_codes(name, values)
    if var.units == "brickcode" and np.asarray(values).dtype.kind in "USO":
        return schema.encode_brickname(values)
    arr = np.asarray(values)
    if arr.dtype.kind == "f" and var.dtype.startswith("i"):
        msg = f"variable {name!r}: float values given for integer variable"
        raise StoreError(msg)
    return arr.astype(var.dtype, copy=False)


def write_chunk(path: str | Path, index: int, data: Mapping[str, np.ndarray]) -> int:
    """Write chunk ``index`` of a store from ``data`` (name -> array of the chunk's samples).

    Every store variable and ``sample`` must be given; string variables may be given as
    strings. The completion marker is written last. Returns the number of samples written.
    """
    path = Path(path)
    man = _manifest(path)
    bounds = chunk_bounds(man["n_samples"], man["chunk_size"])
    if not 0 <= index < len(bounds):
        msg = f"{path}: chunk index {index} out of range 0..{len(bounds) - 1}"
        raise StoreError(msg)
    a, b = bounds[index]
    names = [SAMPLE, *man["variables"]]
    missing = [k for k in names if k not in data]
    unknown = [k for k in data if k not in names]
    if missing or unknown:
        msg = f"{path} chunk {index}: missing variables {missing}, unknown variables {unknown}"
        raise StoreError(msg)
    nb, st = len(man["bands"]), man["stamp_size"]
    encoded = {}
    for name in names:
        var = Var((SAMPLE,), "i8", "id", "") if name == SAMPLE else _var_spec(name, None)
        arr = _encode(name, np.asarray(data[name]), var)
        want = _shape(var, b - a, nb, st)
        if arr.shape != want:
            msg = f"{path} chunk {index}: variable {name!r} has shape {arr.shape}, expected {want}"
            raise StoreError(msg)
        encoded[name] = arr
    if np.unique(encoded[SAMPLE]).size != b - a:
        msg = f"{path} chunk {index}: duplicate sample ids"
        raise StoreError(msg)
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        for name, arr in encoded.items():
            root[name][a:b] = arr
    marker = _state_dir(path) / "done" / f"{index:08d}"
    _atomic_write_text(marker, json.dumps({"start": a, "stop": b}))
    return b - a


def finalize_store(path: str | Path, *, attrs: Mapping[str, Any] | None = None) -> Path:
    """Mark a store complete (every chunk written), add attributes, consolidate metadata."""
    path = Path(path)
    pend = pending_chunks(path)
    if pend:
        msg = f"{path}: cannot finalize, {len(pend)} chunk(s) pending (first: {pend[:5]})"
        raise StoreError(msg)
    update_attrs(path, {"complete": True, "completed": utc_now(), **(attrs or {})})
    return path


def update_attrs(path: str | Path, attrs: Mapping[str, Any]) -> None:
    """Update group attributes and reconsolidate."""
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        root.attrs.update(dict(attrs))
        zarr.consolidate_metadata(str(path))


def read_attrs(path: str | Path) -> dict:
    """Group attributes of a store."""
    with quiet_zarr():
        return dict(zarr.open_group(str(path), mode="r").attrs)


def is_complete(path: str | Path) -> bool:
    """True when the store exists and was finalized."""
    try:
        return bool(read_attrs(path).get("complete", False)) and not pending_chunks(path)
    except (StoreError, FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False


def _decode_array(name: str, arr: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    legend = attrs.get("gen5dask_legend")
    if legend is not None:
        return np.asarray(legend)[np.asarray(arr, dtype=np.int64)]
    if attrs.get("units") == "brickcode":
        return schema.decode_brickname(arr)
    return arr


def _decode_block(block: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    return _decode_array("", block, attrs)


def read_chunk(
    path: str | Path,
    index: int,
    variables: Iterable[str] | None = None,
    *,
    decode: bool = False,
    chunk_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Read one sample chunk as numpy arrays (the fast path for Dask workers and loaders).

    ``chunk_size`` reads a chunking other than the store's own (any positive size).
    """
    path = Path(path)
    man = _manifest(path)
    cs = chunk_size or man["chunk_size"]
    a, b = chunk_bounds(man["n_samples"], cs)[index]
    return read_samples(path, slice(a, b), variables, decode=decode)


def read_samples(
    path: str | Path,
    sel: slice | np.ndarray,
    variables: Iterable[str] | None = None,
    *,
    decode: bool = False,
) -> dict[str, np.ndarray]:
    """Read variables for a slice (or sorted index array) of samples."""
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="r")
        names = (
            list(variables)
            if variables is not None
            else [SAMPLE, *_manifest(Path(path))["variables"]]
        )
        out = {}
        for name in names:
            if name not in root:
                msg = f"{path}: no variable {name!r}"
                raise StoreError(msg)
            arr = root[name]
            if isinstance(sel, slice):
                vals = arr[sel]
            else:
                idx = np.asarray(sel, dtype=np.int64)
                vals = arr.get_orthogonal_selection((idx,) + (slice(None),) * (arr.ndim - 1))
            out[name] = _decode_array(name, vals, arr.attrs) if decode else vals
        return out


def read_table(path: str | Path, variables: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-sample scalar variables as a DataFrame (strings decoded; ``psfsize_r`` etc. split out).

    With ``variables=None`` every 1-D variable is read, and per-band ``psfsize``/``psfdepth``
    become ``psfsize_<band>`` / ``psfdepth_<band>`` columns.
    """
    path = Path(path)
    man = _manifest(path)
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="r")
        wanted = list(variables) if variables is not None else [SAMPLE, *man["variables"]]
        cols: dict[str, np.ndarray] = {}
        for name in wanted:
            if name not in root:
                msg = f"{path}: no variable {name!r}"
                raise StoreError(msg)
            arr = root[name]
            if arr.ndim == 1:
                cols[name] = _decode_array(name, arr[:], arr.attrs)
            elif arr.ndim == 2 and name in ("psfsize", "psfdepth"):
                vals = arr[:]
                for j, band in enumerate(man["bands"]):
                    cols[f"{name}_{band}"] = vals[:, j]
    return pd.DataFrame(cols)


def write_columns(
    path: str | Path,
    columns: Mapping[str, np.ndarray],
    *,
    extra_vars: Mapping[str, Var] | None = None,
) -> None:
    """Write whole per-sample variables (creating optional ones that are absent).

    Used by stages that annotate an existing store (``split`` writes ``region`` and ``split``,
    ``anchors`` writes ``visibility``). Values are full-length along ``sample``.
    """
    path = Path(path)
    man = _manifest(path)
    n = man["n_samples"]
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        for name, values in columns.items():
            var = _var_spec(name, extra_vars)
            arr = _encode(name, np.asarray(values), var)
            want = _shape(var, n, len(man["bands"]), man["stamp_size"])
            if arr.shape != want:
                msg = f"{path}: column {name!r} has shape {arr.shape}, expected {want}"
                raise StoreError(msg)
            if name not in root:
                cs = max(1, min(man["chunk_size"], max(n, 1)))
                root.create_array(
                    name,
                    shape=want,
                    chunks=(cs,) + want[1:],
                    dtype=var.dtype,
                    fill_value=var.fill,
                    dimension_names=var.dims,
                    attributes=_var_attrs(var),
                )
                man["variables"].append(name)
            root[name][:] = arr
        zarr.consolidate_metadata(str(path))
    _atomic_write_text(_state_dir(path) / "manifest.json", json.dumps(man, indent=1))


def open_store(
    path: str | Path, *, decode: bool = True, require_complete: bool = True
) -> xr.Dataset:
    """Open a store lazily as an xarray Dataset (string codes decoded, ``band`` coordinate set)."""
    path = Path(path)
    if not path.exists():
        msg = f"store {path} does not exist"
        raise StoreError(msg)
    if require_complete and not is_complete(path):
        msg = f"{path}: store is incomplete (an interrupted stage?); rerun the stage to finish it"
        raise StoreError(msg)
    with quiet_zarr():
        ds = xr.open_zarr(str(path), consolidated=True)
    bands = list(ds.attrs.get("bands", ""))
    if "band" in ds.dims and len(bands) == ds.sizes["band"]:
        ds = ds.assign_coords(band=np.asarray(bands, dtype="U1"))
    if decode:
        for name in list(ds.data_vars):
            attrs = ds[name].attrs
            if "gen5dask_legend" in attrs or attrs.get("units") == "brickcode":
                da_ = ds[name]
                out_dtype = "U8" if attrs.get("units") == "brickcode" else "U32"
                data = da_.data.map_blocks(
                    _decode_block,
                    attrs=dict(attrs),
                    dtype=out_dtype,
                    meta=np.array([], dtype=out_dtype),
                )
                ds[name] = da_.copy(data=data)
    return ds


def fingerprint(path: str | Path) -> dict:
    """Identity of a store for ``parents`` provenance: path, stage, config hash, size."""
    attrs = read_attrs(path)
    man = _manifest(Path(path))
    return {
        "path": str(Path(path).resolve()),
        "stage": attrs.get("stage", ""),
        "config_hash": attrs.get("config_hash", ""),
        "n_samples": man["n_samples"],
        "created": attrs.get("created", ""),
    }


def append_samples(path: str | Path, data: Mapping[str, np.ndarray]) -> int:
    """Append samples at the end of a complete store (all variables given). Returns new size."""
    path = Path(path)
    man = _manifest(path)
    names = [SAMPLE, *man["variables"]]
    missing = [k for k in names if k not in data]
    if missing:
        msg = f"{path}: append is missing variables {missing}"
        raise StoreError(msg)
    m = len(np.asarray(data[SAMPLE]))
    n = man["n_samples"]
    existing = read_samples(path, slice(0, n), [SAMPLE])[SAMPLE]
    if np.intersect1d(existing, np.asarray(data[SAMPLE])).size:
        msg = f"{path}: appended sample ids already exist in the store"
        raise StoreError(msg)
    with quiet_zarr():
        root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        for name in names:
            var = Var((SAMPLE,), "i8", "id", "") if name == SAMPLE else _var_spec(name, None)
            arr = _encode(name, np.asarray(data[name]), var)
            z = root[name]
            z.resize((n + m,) + tuple(z.shape[1:]))
            z[n : n + m] = arr
        zarr.consolidate_metadata(str(path))
    old_chunks = len(chunk_bounds(n, man["chunk_size"]))
    man["n_samples"] = n + m
    new_chunks = len(chunk_bounds(n + m, man["chunk_size"]))
    for i in range(old_chunks, new_chunks):
        _atomic_write_text(_state_dir(path) / "done" / f"{i:08d}", "{}")
    _atomic_write_text(_state_dir(path) / "manifest.json", json.dumps(man, indent=1))
    return n + m


__all__ = [
    "DEFAULT_CHUNK",
    "StoreError",
    "StoreLockedError",
    "append_samples",
    "chunk_bounds",
    "create_store",
    "finalize_store",
    "fingerprint",
    "is_complete",
    "open_store",
    "pending_chunks",
    "quiet_zarr",
    "read_attrs",
    "read_chunk",
    "read_samples",
    "read_table",
    "store_geometry",
    "store_lock",
    "update_attrs",
    "write_chunk",
    "write_columns",
]
