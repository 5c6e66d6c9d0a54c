"""The injection plan: which hosts can be injected, and every output row of ``train.zarr``.

:func:`host_table` scans a host store chunk by chunk (finite pixels, a good r pixel, a finite r
magnitude) and lists the hosts that cannot be injected with a reason (quarantine, never a
silent drop); :func:`build_plan` turns the injectable hosts into the output rows
(:data:`PLAN_DTYPE`: controls, null injections, injections per brightness mode and replicate),
sorted by sample id (:mod:`gen5dask.injection.ids`). Random subsets (unpaired controls, null
hosts) are keyed by ``(seed, stage, host id)`` ranks, so the plan does not depend on chunking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.executor import map_chunks
from gen5dask.injection.colour import colour_factors, flux_to_mag
from gen5dask.injection.ids import (
    MAX_HOST_ID,
    ROLE_CONTROL,
    ROLE_INJECTION,
    ROLE_NULL,
    sample_id,
)
from gen5dask.injection.laws import MODE_CODES
from gen5dask.kernels import photometry
from gen5dask.kernels.rng import keys_for, stage_id
from gen5dask.store import StoreError, read_chunk, read_samples, store_geometry
from gen5dask.store.schema import KINDS

#: host variables copied to every output row.
HOST_VARS = (
    "image",
    "invvar",
    "maskbits",
    "ra",
    "dec",
    "brickname",
    "region",
    "split",
    "psfsize",
    "psfdepth",
)
PLAN_DTYPE = np.dtype(
    [
        ("sample", "i8"),
        ("host_row", "i8"),
        ("host_id", "i8"),
        ("role", "i1"),
        ("mode", "i1"),
        ("replicate", "i2"),
        ("host_mag_r", "f8"),
    ]
)


def scan_host_chunk(i: int, host_path: str, r_index: int, aperture: float) -> dict:
    """Per host row of chunk ``i``: finite image/invvar, any good r pixel, measured r mag."""
    d = read_chunk(host_path, i, ["image", "invvar"])
    img, iv = d["image"], d["invvar"]
    n = img.shape[0]
    finite = np.isfinite(img).reshape(n, -1).all(1)
    iv_ok = (np.isfinite(iv) & (iv >= 0)).reshape(n, -1).all(1)
    good_r = (iv[:, r_index] > 0).reshape(n, -1).any(1)
    rimg = np.where(np.isfinite(img[:, r_index]), img[:, r_index], np.nan)
    cb = photometry.core_brightness(rimg, radius_pix=aperture, annulus=(aperture, aperture + 8))
    return {"finite": finite, "invvar_ok": iv_ok, "good_r": good_r, "flux": cb.excess_sum}


def rank_select(seed: int, stage: str, ids: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` ids with the smallest keyed hash (deterministic subset)."""
    if k <= 0 or ids.size == 0:
        return np.zeros(ids.size, dtype=bool)
    h = keys_for(int(seed), stage_id(stage), np.ascontiguousarray(ids, dtype=np.int64), 0, 0)
    order = np.lexsort((ids, h))
    out = np.zeros(ids.size, dtype=bool)
    out[order[: min(k, ids.size)]] = True
    return out


def host_table(
    host_path: Path,
    *,
    aperture_pix: float,
    client=None,
    progress: bool = False,
    max_hosts: int | None = None,
):
    """Hosts of a store with their r magnitude and the quarantine list.

    ``aperture_pix`` is ``inject.host_mag_aperture_pix`` (hosts without a catalogue
    ``host_mag_r``); ``max_hosts`` limits the scan to the first that many host rows (dry runs).

    Returns
    -------
    hosts : pandas.DataFrame
        ``row`` (index in the host store), ``id``, ``host_mag_r`` (AB) of injectable hosts.
    quarantine : pandas.DataFrame
        ``id, source, reason`` of hosts that cannot be injected.
    """
    geom = store_geometry(host_path)
    bands = list(geom["bands"])
    if "r" not in bands:
        msg = f"inject: host store {host_path} has bands {bands}; arc_snr needs the r band"
        raise StoreError(msg)
    colour_factors(bands, np.zeros(1), np.zeros(1))  # unsupported bands fail early
    ir = bands.index("r")
    n = geom["n_samples"]
    names = ["sample", "kind", "psfsize"]
    has_mag = "host_mag_r" in geom["variables"]
    if has_mag:
        names.append("host_mag_r")
    tab = read_samples(host_path, slice(0, n), names)
    rows = np.flatnonzero(tab["kind"] == KINDS.index("host"))
    if max_hosts is not None:
        rows = rows[:max_hosts]
    ids = tab["sample"][rows]
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_HOST_ID):
        msg = f"inject: host ids must lie in [0, 2**57) for the id formula; got {ids.min()}.."
        raise StoreError(msg)
    cs = geom["chunk_size"]
    chunks = sorted({int(r // cs) for r in rows})
    scans = map_chunks(
        scan_host_chunk,
        chunks,
        str(host_path),
        ir,
        float(aperture_pix),
        client=client,
        desc="inject: scan hosts",
        progress=progress,
    )
    full = {
        "finite": np.zeros(n, bool),
        "invvar_ok": np.zeros(n, bool),
        "good_r": np.zeros(n, bool),
        "flux": np.full(n, np.nan),
    }
    for c, res in zip(chunks, scans, strict=True):
        a, b = c * cs, min((c + 1) * cs, n)
        for k, arr in full.items():
            arr[a:b] = res[k]
    psf = tab["psfsize"][rows].astype(np.float64)
    if has_mag:
        mag = tab["host_mag_r"][rows].astype(np.float64)
        measured = ~np.isfinite(mag)
        mag = np.where(measured, flux_to_mag(full["flux"][rows]), mag)
    else:
        mag = flux_to_mag(full["flux"][rows])
    reasons = np.full(rows.size, "", dtype=object)
    for j in range(len(bands) - 1, -1, -1):
        bad = ~(np.isfinite(psf[:, j]) & (psf[:, j] > 0))
        reasons[bad] = f"invalid psfsize_{bands[j]} (non-positive or NaN)"
    checks = (
        (~np.isfinite(mag), "no finite host r magnitude (catalogue NaN and aperture flux <= 0)"),
        (~full["good_r"][rows], "no good r-band pixel"),
        (~full["invvar_ok"][rows], "non-finite or negative invvar"),
        (~full["finite"][rows], "non-finite image pixels"),
    )
    for bad, why in checks:
        reasons[(reasons == "") & bad] = why
    ok = reasons == ""
    hosts = pd.DataFrame({"row": rows[ok], "id": ids[ok], "host_mag_r": mag[ok]})
    quarantine = pd.DataFrame(
        {"id": ids[~ok], "source": str(host_path), "reason": reasons[~ok].astype(str)}
    )
    return hosts, quarantine


#: hosts per block when the plan is built and written block by block
PLAN_BLOCK_HOSTS = 262_144


def _host_roles(icfg, seed: int, ids: np.ndarray):
    nh = ids.size
    if icfg.controls == "paired":
        is_control = np.ones(nh, dtype=bool)
        gets_inj = np.ones(nh, dtype=bool)
    else:
        is_control = rank_select(seed, "inject.controls", ids, nh // 2)
        gets_inj = ~is_control
    is_null = rank_select(seed, "inject.null", ids, icfg.n_null)
    return is_control, is_null, gets_inj


def plan_size(icfg, seed: int, hosts: pd.DataFrame) -> int:
    """Number of output rows of the plan (without building it)."""
    ids = hosts["id"].to_numpy(np.int64)
    is_control, is_null, gets_inj = _host_roles(icfg, seed, ids)
    per_inj = len(icfg.modes) * icfg.replicates
    return int(is_control.sum() + is_null.sum() + gets_inj.sum() * per_inj)


def plan_blocks(icfg, seed: int, hosts: pd.DataFrame, *, block_hosts: int = PLAN_BLOCK_HOSTS):
    """The plan (:data:`PLAN_DTYPE`, sorted by sample id) as consecutive blocks of rows.

    Sample ids are ``host_id * 64 + code`` (:mod:`gen5dask.injection.ids`), so the rows of a
    range of host ids are a contiguous, independently sortable range of the plan: the hosts are
    ordered by id and cut into blocks of ``block_hosts``, and the concatenated blocks equal the
    plan sorted as a whole (whatever the block size; tested). Memory: the host table plus one
    block. Yields ``(first_row, rows)``.
    """
    ids_all = hosts["id"].to_numpy(np.int64)
    order = np.argsort(ids_all, kind="stable")
    ids_sorted = ids_all[order]
    if ids_sorted.size > 1 and (np.diff(ids_sorted) == 0).any():
        msg = "inject: duplicate output sample ids (duplicate host ids in the host store?)"
        raise StoreError(msg)
    is_control, is_null, gets_inj = (m[order] for m in _host_roles(icfg, seed, ids_all))
    rows_all = hosts["row"].to_numpy()[order]
    mags_all = hosts["host_mag_r"].to_numpy()[order]
    first = 0
    for h0 in range(0, ids_sorted.size, max(int(block_hosts), 1)):
        h1 = min(h0 + max(int(block_hosts), 1), ids_sorted.size)
        ids = ids_sorted[h0:h1]
        parts = []

        def add(mask, role, mode, rep, h0=h0, h1=h1, ids=ids, parts=parts):
            sel = np.flatnonzero(mask[h0:h1])
            p = np.zeros(sel.size, dtype=PLAN_DTYPE)
            p["host_row"] = rows_all[h0:h1][sel]
            p["host_id"] = ids[sel]
            p["role"] = role
            p["mode"] = mode
            p["replicate"] = rep
            p["host_mag_r"] = mags_all[h0:h1][sel]
            p["sample"] = sample_id(ids[sel], role, mode=mode, replicate=rep)
            parts.append(p)

        add(is_control, ROLE_CONTROL, 0, 0)
        add(is_null, ROLE_NULL, MODE_CODES["null"], 0)
        for mname in icfg.modes:
            for r in range(icfg.replicates):
                add(gets_inj, ROLE_INJECTION, MODE_CODES[mname], r)
        block = np.concatenate(parts)
        block = block[np.argsort(block["sample"], kind="stable")]
        yield first, block
        first += block.size


def build_plan(icfg, seed: int, hosts: pd.DataFrame) -> np.ndarray:
    """Every output row (:data:`PLAN_DTYPE`), sorted by sample id, in memory.

    :func:`write_plan` writes the same rows to a file without holding them all.
    """
    blocks = [b for _, b in plan_blocks(icfg, seed, hosts)]
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=PLAN_DTYPE)


def write_plan(path: str | Path, icfg, seed: int, hosts: pd.DataFrame, *,
               block_hosts: int = PLAN_BLOCK_HOSTS) -> int:
    """Write the plan as one ``.npy`` file (``np.load(path, mmap_mode="r")`` reads it), block by
    block with plain file writes (no memory map, so written pages do not count in this process's
    memory); returns the number of rows. The file equals ``np.save(path, build_plan(...))``.
    """
    path = Path(path)
    n = plan_size(icfg, seed, hosts)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(PLAN_DTYPE), "fortran_order": False,
                 "shape": (n,)})
        written = 0
        for first, block in plan_blocks(icfg, seed, hosts, block_hosts=block_hosts):
            if first != written:
                msg = f"{path}: plan block at row {first}, expected {written}"
                raise RuntimeError(msg)
            fh.write(block.tobytes())
            written += block.size
    if written != n:
        msg = f"{path}: wrote {written} plan rows, expected {n}"
        raise RuntimeError(msg)
    return n


def calibrated_plan(hosts: pd.DataFrame) -> np.ndarray:
    """One calibrated injection (replicate 0) per host (calibration dry runs)."""
    plan = np.zeros(len(hosts), dtype=PLAN_DTYPE)
    plan["host_row"] = hosts["row"].to_numpy()
    plan["host_id"] = hosts["id"].to_numpy()
    plan["role"] = ROLE_INJECTION
    plan["mode"] = MODE_CODES["calibrated"]
    plan["host_mag_r"] = hosts["host_mag_r"].to_numpy()
    plan["sample"] = sample_id(plan["host_id"], ROLE_INJECTION, mode=MODE_CODES["calibrated"])
    return plan


__all__ = [
    "HOST_VARS",
    "PLAN_DTYPE",
    "PLAN_BLOCK_HOSTS",
    "build_plan",
    "calibrated_plan",
    "host_table",
    "plan_blocks",
    "plan_size",
    "rank_select",
    "scan_host_chunk",
    "write_plan",
]
