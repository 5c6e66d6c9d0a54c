"""``gen5dask info``: counts by kind / split / label, provenance and validation of a store."""

from __future__ import annotations

import json
from pathlib import Path

from gen5dask.store.validate import validate
from gen5dask.store.zarrstore import StoreError, read_attrs, read_table, store_geometry


def store_info(path: str | Path, *, check_pixels: bool = True) -> dict:
    """Summary of a store as a dict (``violations`` empty when it meets the contract)."""
    path = Path(path)
    if not path.exists():
        msg = f"store {path} does not exist"
        raise StoreError(msg)
    man = store_geometry(path)
    attrs = read_attrs(path)
    table = read_table(path, ["kind", "split", "label"])
    counts = {
        col: {str(k): int(v) for k, v in table[col].value_counts().sort_index().items()}
        for col in ("kind", "split", "label")
    }
    return {
        "path": str(path),
        "n_samples": man["n_samples"],
        "bands": man["bands"],
        "stamp_size": man["stamp_size"],
        "chunk_size": man["chunk_size"],
        "counts": counts,
        "provenance": {
            k: attrs.get(k)
            for k in ("stage", "gen5dask_version", "git_sha", "config_hash", "seed", "created")
        },
        "parents": json.loads(attrs.get("parents", "[]") or "[]"),
        "violations": validate(path, check_pixels=check_pixels),
    }


def format_info(info: dict) -> str:
    """Human-readable text of :func:`store_info`."""
    lines = [
        f"store      {info['path']}",
        f"samples    {info['n_samples']}  bands {''.join(info['bands'])}  "
        f"stamp {info['stamp_size']}px  chunk {info['chunk_size']}",
    ]
    for col, counts in info["counts"].items():
        parts = ", ".join(f"{k or '(none)'}: {v}" for k, v in counts.items())
        lines.append(f"{col:<10} {parts}")
    prov = info["provenance"]
    lines.append(
        f"provenance stage={prov['stage']} version={prov['gen5dask_version']} "
        f"git={str(prov['git_sha'])[:10] or '-'} config_hash={prov['config_hash']} "
        f"seed={prov['seed']} created={prov['created']}"
    )
    for p in info["parents"]:
        lines.append(f"parent     {p.get('path')} (stage {p.get('stage')}, {p.get('config_hash')})")
    if info["violations"]:
        lines.append(f"INVALID: {len(info['violations'])} violation(s)")
        lines += [f"  - {v}" for v in info["violations"]]
    else:
        lines.append("valid: meets the store contract")
    return "\n".join(lines)


__all__ = ["format_info", "store_info"]
