"""Contract validation of a store: returns a list of violations (empty = valid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from gen5dask.store.schema import ALL_VARIABLES, REQUIRED, SAMPLE, as_unicode
from gen5dask.store.zarrstore import (
    StoreError,
    chunk_bounds,
    pending_chunks,
    quiet_zarr,
    store_geometry,
)

UNIT_VARS = ("image", "invvar", "psfsize", "psfdepth", "ra", "dec")


def validate(path: str | Path, *, check_pixels: bool = True) -> list[str]:
    """Check a store against the contract (DESIGN §3, §8 gate 5).

    Checks: manifest and completeness; required variables with their dims, dtypes and unit
    attributes; unique ``sample`` ids; coded values in range; labels 0/1; NaN/inf in ``image``;
    negative or non-finite ``invvar``; non-positive or non-finite PSF sizes; bandset consistent
    between attributes, manifest and the ``band`` axis. Pixel checks read the store one chunk at
    a time (memory bounded by one chunk).
    """
    path = Path(path)
    problems: list[str] = []
    try:
        man = store_geometry(path)
    except (StoreError, FileNotFoundError) as exc:
        return [str(exc)]
    with quiet_zarr():
        try:
            root = zarr.open_group(str(path), mode="r")
        except Exception as exc:  # noqa: BLE001 - any open failure is a violation to report
            return [f"{path}: cannot open as zarr: {exc}"]
        attrs = dict(root.attrs)
        pend = pending_chunks(path)
        if pend:
            problems.append(f"incomplete: {len(pend)} chunk(s) pending")
        if not attrs.get("complete", False):
            problems.append("store not finalized (attribute complete != true)")
        bands = man["bands"]
        if attrs.get("bands") != "".join(bands):
            problems.append(
                f"bandset mismatch: attrs bands={attrs.get('bands')!r}, manifest={bands}"
            )
        for key in (
            "pixscale",
            "zeropoint",
            "config",
            "config_hash",
            "gen5dask_version",
            "seed",
            "created",
            "stage",
            "parents",
        ):
            if key not in attrs:
                problems.append(f"missing attribute {key!r}")
        n = man["n_samples"]
        for name in [SAMPLE, *REQUIRED]:
            if name not in root:
                problems.append(f"missing variable {name!r}")
                continue
            arr = root[name]
            if name == SAMPLE:
                continue
            var = ALL_VARIABLES[name]
            dims = tuple(arr.metadata.dimension_names or ())
            if dims != var.dims:
                problems.append(f"{name}: dims {dims} != {var.dims}")
            if var.is_string:
                if np.dtype(arr.dtype).kind not in "TOU":
                    problems.append(f"{name}: dtype {arr.dtype} is not a string type")
            elif np.dtype(arr.dtype) != np.dtype(var.dtype):
                problems.append(f"{name}: dtype {arr.dtype} != {var.dtype}")
            if arr.shape[0] != n:
                problems.append(f"{name}: length {arr.shape[0]} != n_samples {n}")
            if "band" in var.dims and arr.shape[var.dims.index("band")] != len(bands):
                problems.append(f"{name}: band axis {arr.shape[1]} != {len(bands)} bands")
            if name in UNIT_VARS and arr.attrs.get("units") != var.units:
                problems.append(f"{name}: units {arr.attrs.get('units')!r} != {var.units!r}")
        if problems and any(p.startswith("missing variable") for p in problems):
            return problems
        ids = root[SAMPLE][:]
        if np.unique(ids).size != ids.size:
            problems.append(f"sample ids not unique ({ids.size - np.unique(ids).size} duplicates)")
        for name in ("kind", "split", "label"):
            vals = root[name][:]
            legend = ALL_VARIABLES[name].legend
            if np.asarray(vals).dtype.kind in "TOU":
                bad = sorted(set(np.unique(as_unicode(vals)).tolist()) - set(legend or ()))
                if bad:
                    problems.append(f"{name}: values {bad[:5]} outside {list(legend or ())}")
                continue
            hi = len(legend) - 1 if legend else 1
            if vals.size and (vals.min() < 0 or vals.max() > hi):
                problems.append(f"{name}: values outside 0..{hi}")
        psf = root["psfsize"][:]
        bad_psf = ~np.isfinite(psf) | (psf <= 0)
        if bad_psf.any():
            rows = np.unique(np.nonzero(bad_psf)[0])
            problems.append(
                f"psfsize: {bad_psf.sum()} non-positive or non-finite values "
                f"(sample ids {ids[rows[:5]].tolist()})"
            )
        if check_pixels:
            n_nan = 0
            n_ivar = 0
            first_bad: list[int] = []
            for a, b in chunk_bounds(n, man["chunk_size"]):
                img = root["image"][a:b]
                bad = ~np.isfinite(img).all(axis=(1, 2, 3))
                n_nan += int(bad.sum())
                first_bad += ids[a:b][bad][:5].tolist()
                iv = root["invvar"][a:b]
                n_ivar += int((~np.isfinite(iv) | (iv < 0)).any(axis=(1, 2, 3)).sum())
            if n_nan:
                problems.append(
                    f"image: {n_nan} samples with NaN/inf pixels (e.g. {first_bad[:5]})"
                )
            if n_ivar:
                problems.append(f"invvar: {n_ivar} samples with negative or non-finite values")
    return problems


__all__ = ["validate"]
