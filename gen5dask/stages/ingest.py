"""``gen5dask ingest``: a catalogue + FITS cutouts or DR10 coadd bricks -> ``hosts.zarr``.

Every catalogue row ends up either in the store (in catalogue order) or in
``<stem>.quarantine.csv`` with a reason; the stage prints and asserts
``ingested N + quarantined M = catalogue rows R``. Two passes (see :mod:`gen5dask.store.ingest`)
make the store hole-free, resumable and bit-identical for any worker count or chunk size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gen5dask.config import Config
from gen5dask.provenance import config_hash
from gen5dask.stages._chunks import map_chunks
from gen5dask.stages.declare import stage
from gen5dask.store import fitsio
from gen5dask.store import ingest as _ing
from gen5dask.store.catalogs import file_sha256, read_catalog
from gen5dask.store.zarrstore import (
    StoreError,
    create_store,
    finalize_store,
    is_complete,
    pending_chunks,
    read_attrs,
    store_lock,
)

STAGE = "ingest"


def _resolve(cfg: Config) -> tuple[dict, dict]:
    """(effective config for hashing/provenance, picklable task settings)."""
    ic = cfg.ingest
    if ic.catalog is None:
        msg = "ingest.catalog is not set (a CSV/FITS/Parquet catalogue of the objects)"
        raise ValueError(msg)
    if (ic.cutouts is None) == (ic.bricks is None):
        msg = "ingest: set exactly one of 'cutouts' (directory of FITS cutouts) or 'bricks'"
        raise ValueError(msg)
    mode = "cutouts" if ic.cutouts is not None else "bricks"
    source_dir = Path(ic.cutouts if mode == "cutouts" else ic.bricks).expanduser()
    if not source_dir.is_dir():
        msg = f"ingest.{mode}: directory {source_dir} does not exist"
        raise FileNotFoundError(msg)
    roots = fitsio.resolve_roots(ic.roots or [source_dir])
    catalog = Path(ic.catalog).expanduser()
    if ic.roots:
        try:
            fitsio.resolve_within(catalog, roots)
        except fitsio.Rejected as exc:
            msg = f"ingest.catalog: {exc.detail}"
            raise PermissionError(msg) from None
    if not catalog.is_file():
        msg = f"ingest.catalog: {catalog} does not exist"
        raise FileNotFoundError(msg)
    stamp = ic.stamp_size or cfg.stamp_size
    settings = {
        "mode": mode,
        "source_dir": str(source_dir.resolve()),
        "pattern": ic.pattern,
        "roots": [str(r) for r in roots],
        "bands": list(cfg.bands),
        "stamp_size": int(stamp),
        "max_bytes": int(ic.max_file_mb * 2**20),
        "pixscale": float(cfg.pixscale),
        "pixscale_tolerance": float(ic.pixscale_tolerance),
        "partial_overlap": ic.partial_overlap,
        "missing_invvar": ic.missing_invvar,
    }
    effective = {
        "ingest": ic.model_dump(mode="json"),
        "bands": list(cfg.bands),
        "stamp_size": int(stamp),
        "pixscale": float(cfg.pixscale),
        "catalog_sha256": file_sha256(catalog),
    }
    return effective, settings


def _label(cfg: Config) -> int:
    ic = cfg.ingest
    if ic.label is not None:
        return int(ic.label)
    return 1 if ic.kind in _ing.LABEL_ONE_KINDS else 0


@stage(
    "ingest",
    reads=("ingest", "seed", "bands", "stamp_size", "pixscale", "chunk_size"),
)
def run_ingest(cfg: Config, client=None, *, force: bool = False) -> Path:
    """Ingest ``cfg.ingest.catalog`` rows from cutouts or bricks into a contract store.

    Parameters
    ----------
    cfg
        Full config (``ingest`` section plus ``bands``, ``stamp_size``, ``chunk_size``,
        ``pixscale``, ``seed``).
    client
        ``distributed.Client`` or None (in-process reference executor).
    force
        Delete the output store and its side files and redo everything.

    Returns
    -------
    Path of the store (``ingest.out``, default ``<output_dir>/hosts.zarr``). Side files:
    ``<stem>.quarantine.csv`` (id, source, reason, detail, row) and ``<stem>.ids.csv``.
    """
    effective, settings = _resolve(cfg)
    ic = cfg.ingest
    out = Path(ic.out).expanduser() if ic.out else cfg.layout.hosts
    side = _ing.side_paths(out)
    key = config_hash(effective)
    progress = cfg.cluster.progress
    if force:
        _ing.remove_outputs(out)
    elif (
        is_complete(out)
        and read_attrs(out).get("config_hash") == key
        and side["quarantine"].exists()
        and side["ids"].exists()
    ):
        if side["staging"].exists():
            shutil.rmtree(side["staging"])
        a = read_attrs(out)
        print(
            f"ingest: {out} is up to date: ingested {a.get('n_ingested')} + quarantined "
            f"{a.get('n_quarantined')} = catalogue rows {a.get('n_catalog_rows')}"
        )
        return out
    elif out.exists():
        try:
            old_key = read_attrs(out).get("config_hash")
        except Exception:  # noqa: BLE001 - not a readable store at all
            old_key = None
        if old_key != key:
            msg = (
                f"{out} exists with a different ingest configuration or catalogue; "
                "remove it or rerun with --force"
            )
            raise StoreError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = side["staging"]
    staging.mkdir(parents=True, exist_ok=True)
    with store_lock(staging):
        cat = read_catalog(
            ic.catalog,
            columns=ic.columns,
            bands=cfg.bands,
            psfdepth_units=ic.psfdepth_units,
        )
        tasks = _ing.plan_tasks(cat, mode=settings["mode"], chunk_size=cfg.chunk_size)
        _ing.prepare_staging(staging, cat, tasks, key=f"{key}:{cfg.chunk_size}")
        nt = _ing.n_tasks(staging)
        todo = [i for i in range(nt) if not _ing.task_done(staging, i)]
        map_chunks(
            _ing.stage_task, todo, str(staging), settings,
            client=client, desc="ingest: read+validate", progress=progress,
        )
        statuses = [_ing.load_status(staging, i) for i in range(nt)]
        out_rows = _ing.build_plan(staging, statuses)
        store = create_store(
            out,
            n_samples=int(out_rows.size),
            stage=STAGE,
            config=effective,
            seed=cfg.seed,
            bands=cfg.bands,
            stamp_size=settings["stamp_size"],
            chunk_size=cfg.chunk_size,
            variables=("quality", "host_mag_r"),
            overwrite=False,
        )
        meta = {"kind": ic.kind, "label": _label(cfg)}
        with store_lock(store):
            pend = pending_chunks(store)
            map_chunks(
                _ing.write_output_chunk, pend, str(store), str(staging), meta,
                client=client, desc="ingest: write store", progress=progress,
            )
            n_in, n_q = _ing.write_side_files(store, cat, statuses, out_rows)
            total = cat.n_rows
            if n_in + n_q != total:
                msg = f"ingest accounting broken: {n_in} + {n_q} != {total} catalogue rows"
                raise RuntimeError(msg)
            reasons: dict[str, int] = {}
            for r in cat.reason[cat.reason != ""]:
                reasons[r] = reasons.get(r, 0) + 1
            for st in statuses:
                for _, r, _, _ in st["rejected"]:
                    reasons[r] = reasons.get(r, 0) + 1
            finalize_store(
                store,
                attrs={
                    "catalog": str(Path(ic.catalog).resolve()),
                    "catalog_sha256": effective["catalog_sha256"],
                    "source": settings["source_dir"],
                    "source_kind": settings["mode"],
                    "n_catalog_rows": total,
                    "n_ingested": n_in,
                    "n_quarantined": n_q,
                    "quarantine_reasons": json.dumps(dict(sorted(reasons.items()))),
                },
            )
    shutil.rmtree(staging, ignore_errors=True)
    print(f"ingest: ingested {n_in} + quarantined {n_q} = catalogue rows {total}")
    if n_q:
        top = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
        print(f"ingest: quarantine reasons ({side['quarantine']}): {top}")
    return out


__all__ = ["run_ingest"]
