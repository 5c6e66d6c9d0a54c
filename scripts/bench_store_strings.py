"""Cost of string variables as Zarr v3 variable-length strings vs the former int8 codes.

Writes one ``kind`` column of N samples (default 10^6) into a contract store through
``write_columns`` (validated strings), and the same values as an int8 code array with the same
chunking (the former layout), then reads both back: ``read_table`` (strings), the numeric view
``read_samples(decode=False)`` (codes), plain ``xr.open_zarr(...).kind.values``, and the raw
int8 read (and its plain-xarray read). Prints a table with the ratio against the int8 reference
measured in the same run.

    python scripts/bench_store_strings.py [--n 1000000] [--chunk 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from gen5dask.store import create_store, read_samples, read_table, write_columns
from gen5dask.store.schema import KINDS


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _time(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    n, cs = args.n, args.chunk
    rng = np.random.default_rng(0)
    codes = rng.integers(0, len(KINDS), n).astype("i1")
    strings = np.asarray(KINDS)[codes]
    tmp = Path(tempfile.mkdtemp(prefix="bench_strings_"))
    try:
        store = tmp / "s.zarr"
        # a store holding only the 1-D variables (the pixel arrays are irrelevant here)
        create_store(store, n_samples=n, stage="bench", config={"n": n}, seed=0,
                     stamp_size=1, chunk_size=cs)
        ref = zarr.open_group(str(tmp / "codes.zarr"), mode="w", zarr_format=3)
        arr = ref.create_array("kind", shape=(n,), chunks=(cs,), dtype="i1", fill_value=0,
                               dimension_names=("sample",))
        t = {
            "write_strings_s": _time(lambda: write_columns(store, {"kind": strings}), args.repeat),
            "write_int8_s": _time(lambda: arr.__setitem__(slice(None), codes), args.repeat),
            "read_table_strings_s": _time(lambda: read_table(store, ["kind"]), args.repeat),
            "read_codes_view_s": _time(
                lambda: read_samples(store, slice(None), ["kind"]), args.repeat),
            "xr_open_zarr_values_s": _time(
                lambda: xr.open_zarr(store).kind.values, args.repeat),
            "read_int8_s": _time(lambda: arr[:], args.repeat),
            "xr_open_zarr_int8_values_s": _time(
                lambda: xr.open_zarr(tmp / "codes.zarr", consolidated=False).kind.values,
                args.repeat),
        }
        assert (read_samples(store, slice(None), ["kind"])["kind"] == codes).all()
        t["bytes_strings"] = _du(store / "kind")
        t["bytes_int8"] = _du(tmp / "codes.zarr" / "kind")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"N = {n:,} samples, chunk {cs} ({-(-n // cs):,} chunks), best of {args.repeat}")
    print(f"{'operation':<34}{'seconds':>10}{'vs int8':>10}")
    for key, refk in (("write_strings_s", "write_int8_s"), ("read_table_strings_s", "read_int8_s"),
                      ("read_codes_view_s", "read_int8_s"),
                      ("xr_open_zarr_values_s", "xr_open_zarr_int8_values_s")):
        print(f"{key:<34}{t[key]:>10.3f}{t[key] / t[refk]:>9.2f}x")
    print(f"{'write_int8_s (reference)':<34}{t['write_int8_s']:>10.3f}")
    print(f"{'read_int8_s (reference)':<34}{t['read_int8_s']:>10.3f}")
    print(f"{'xr_open_zarr_int8_values_s (ref.)':<34}{t['xr_open_zarr_int8_values_s']:>10.3f}")
    mb_s, mb_i = t["bytes_strings"] / 1e6, t["bytes_int8"] / 1e6
    print(f"on disk: strings {mb_s:.2f} MB, int8 {mb_i:.2f} MB")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "chunk": cs, **t}, indent=1))
    return t


if __name__ == "__main__":
    main()
