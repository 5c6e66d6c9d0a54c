"""Per-sample columns of one store, read one at a time, plus scratch columns written by tasks.

At 10^7 samples a per-sample table of a few dozen columns (with a Python string per row for
``kind`` or ``split``) is several GB on the driver. :class:`StoreColumns` gives the same values
one column at a time: store variables are read whole on demand (string variables as their int8
legend codes, with :meth:`StoreColumns.names_of` for the legend), and columns computed by chunk
tasks on workers (e.g. the audit's per-sample diagnostics) live in ``.npy`` scratch files that
the tasks fill slice by slice (:func:`write_scratch`), so they never travel through the driver.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.store import read_samples, store_geometry
from gen5dask.store.schema import ALL_VARIABLES


def create_scratch(directory: Path, n: int, specs: Mapping[str, tuple[str, tuple[int, ...]]]
                   ) -> Path:
    """Create empty scratch columns ``directory/<name>.npy`` of ``n`` rows.

    ``specs`` maps name -> (numpy dtype, trailing shape). Existing files are replaced. The
    files are sparse until written, so creating them costs no memory and little disk.
    """
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name, (dtype, tail) in specs.items():
        arr = np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=dtype,
                                        shape=(n, *tail))
        del arr
    return directory


def write_scratch(directory: str | Path, start: int, values: Mapping[str, np.ndarray]) -> None:
    """Write rows ``start .. start + len`` of scratch columns (from a chunk task)."""
    directory = Path(directory)
    for name, v in values.items():
        arr = np.load(directory / f"{name}.npy", mmap_mode="r+")
        v = np.asarray(v)
        if v.shape[1:] != arr.shape[1:] or start + v.shape[0] > arr.shape[0]:
            msg = (f"{directory}/{name}.npy: rows {start}..{start + v.shape[0]} of shape "
                   f"{v.shape[1:]} do not fit an array of shape {arr.shape}")
            raise ValueError(msg)
        arr[start:start + v.shape[0]] = v
        arr.flush()
        del arr


class StoreColumns:
    """One store's per-sample columns, each read when asked for (only the int8 codes of string
    variables are kept, since decoding them from the store is the slow part).

    ``get(name)`` returns a store variable (string variables as int8 legend codes, ``psfsize_r``
    and the like as one band of the 2-D variable), a scratch column, or ``default`` filled
    in when the store has neither. ``n`` is the number of samples.
    """

    def __init__(self, path: str | Path, scratch: str | Path | None = None):
        self.path = Path(path)
        self.scratch = Path(scratch) if scratch is not None else None
        self.man = store_geometry(self.path)
        self.n = int(self.man["n_samples"])
        self.bands = list(self.man["bands"])
        self._codes: dict[str, np.ndarray] = {}  # int8 codes of string variables (1 B a row)

    def has(self, name: str) -> bool:
        """True when ``name`` is a store variable, a per-band column of one, or a scratch file."""
        if name == "sample" or name in self.man["variables"]:
            return True
        if self.scratch is not None and (self.scratch / f"{name}.npy").exists():
            return True
        var, band = self._band(name)
        return var is not None and band in self.bands

    @staticmethod
    def _band(name: str) -> tuple[str | None, str | None]:
        for var in ("psfsize", "psfdepth"):
            if name.startswith(var + "_"):
                return var, name[len(var) + 1:]
        return None, None

    def per_band(self) -> list[str]:
        """The per-band columns the store has (``psfsize_g`` ...), in band order."""
        return [f"{v}_{b}" for v in ("psfsize", "psfdepth") if v in self.man["variables"]
                for b in self.bands]

    def get(self, name: str, default=None) -> np.ndarray:
        """Column ``name`` (whole), or ``np.full(n, default)`` if the store lacks it."""
        if self.scratch is not None and (self.scratch / f"{name}.npy").exists():
            return np.load(self.scratch / f"{name}.npy")
        if name == "sample" or name in self.man["variables"]:
            return read_samples(self.path, slice(0, self.n), [name])[name]
        var, band = self._band(name)
        if var is not None and var in self.man["variables"] and band in self.bands:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vals = read_samples(self.path, slice(0, self.n), [var])[var]
            return np.ascontiguousarray(vals[:, self.bands.index(band)])
        if default is None:
            msg = f"{self.path}: no column {name!r}"
            raise KeyError(msg)
        return np.full(self.n, default)

    def codes(self, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """``(int8 codes, legend)`` of a string variable (``''`` if absent and in the legend)."""
        legend = ALL_VARIABLES[name].legend
        if legend is None:
            msg = f"{name!r} is not a string variable with a legend"
            raise ValueError(msg)
        if name not in self.man["variables"]:
            if legend[0] != "":
                msg = f"{self.path}: no variable {name!r}"
                raise KeyError(msg)
            return np.zeros(self.n, dtype=np.int8), tuple(legend)
        if name not in self._codes:
            self._codes[name] = read_samples(self.path, slice(0, self.n), [name])[name]
        return self._codes[name], tuple(legend)


#: rows decoded at a time by :func:`read_table_categorical` (strings of one block, ~16 MB)
TABLE_BLOCK_ROWS = 1 << 20


def string_codes(values: np.ndarray, categories: list[str]) -> np.ndarray:
    """int16 codes of a string array against ``categories``, which grows in place by the values
    it lacks (sorted, appended at the end), so no value is ever lost."""
    vals = np.asarray(values)
    codes = np.full(vals.shape, -1, dtype=np.int16)
    for j, c in enumerate(categories):
        codes[vals == c] = j
    rest = codes < 0
    if rest.any():
        for c in sorted({str(v) for v in np.unique(vals[rest])}):
            categories.append(c)
            codes[vals == c] = len(categories) - 1
    return codes


def read_table_categorical(path: str | Path, *, dim: str = "row",
                           block_rows: int = TABLE_BLOCK_ROWS) -> pd.DataFrame:
    """A 1-D Zarr table (an xarray Dataset along ``dim``) with its string variables as pandas
    ``Categorical`` columns (one small int code a row instead of a string object).

    The values are those of decoding every string (``Categorical == "x"`` compares as the
    string column would): categories are the variable's ``allowed_values`` legend in order,
    then any other value found, so nothing is dropped. Strings are decoded ``block_rows`` at a
    time, so the driver never holds a string per row of the whole table (at 10^7 rows a scores
    table is ~0.5 GB this way and ~2 GB with string columns). Old tables whose string
    variables are integer codes with a ``gen5dask_legend`` attribute are read as those codes.
    Variables with other dimensions (e.g. an ``embedding``) are skipped.
    """
    import xarray as xr

    from gen5dask.store.zarrstore import quiet_zarr

    with quiet_zarr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(Path(path), consolidated=True)
        out = {}
        for name in ds.data_vars:
            var = ds[name]
            if var.dims != (dim,):
                continue
            legend = var.attrs.get("gen5dask_legend")
            if legend is not None:
                codes = var.values.astype(np.int64)
                out[name] = pd.Categorical.from_codes(codes, categories=list(legend))
                continue
            if var.dtype.kind not in "TUSO":
                out[name] = var.values
                continue
            n = var.shape[0]
            cats = [str(c) for c in var.attrs.get("allowed_values", [])]
            cats = list(dict.fromkeys(cats))
            codes = np.empty(n, dtype=np.int16)
            for i0 in range(0, n, block_rows):
                i1 = min(i0 + block_rows, n)
                codes[i0:i1] = string_codes(var[i0:i1].values, cats)
            small = np.int8 if len(cats) <= 127 else np.int16
            out[name] = pd.Categorical.from_codes(codes.astype(small), categories=cats)
    return pd.DataFrame(out, copy=False)  # the arrays as they are: no second copy of the table


__all__ = ["TABLE_BLOCK_ROWS", "StoreColumns", "create_scratch", "read_table_categorical",
           "string_codes", "write_scratch"]
