"""Catalogue reading for ``ingest`` and ``fetch``: every row parsed or given a quarantine reason.

CSV is read with the standard library (a ragged or garbled line becomes one quarantined row
instead of failing the whole file); FITS, Parquet and ECSV are read with ``astropy.table``.
Column names match case-insensitively. A configured column that is absent is an error naming
the column and the file (a config mistake, not bad data); optional columns (``brickname``,
``mag_r``, ``flux_r``) may be absent.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.config.ingest import CatalogColumns
from gen5dask.store import fitsio
from gen5dask.store.schema import brickname_for

_INT_ID = re.compile(r"^\+?\d{1,19}$")
_BRICK = re.compile(r"^\d{4}[pm]\d{3}$")
#: Largest plausible PSF FWHM, arcsec (DR10 seeing is < ~3"); larger values (or inf) are
#: catalogue errors and would make PSF kernels of absurd size downstream.
MAX_PSFSIZE_ARCSEC = 10.0
_MAX_I63 = (1 << 63) - 1


def sample_id_for(text: str) -> int:
    """Sample id of a catalogue id: the integer itself if it is one in ``[0, 2**63)``, else a
    stable 63-bit hash (BLAKE2b-64 of the UTF-8 string, top bit cleared)."""
    s = text.strip()
    if _INT_ID.match(s):
        v = int(s)
        if v <= _MAX_I63:
            return v
    digest = hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _MAX_I63


@dataclass
class Catalog:
    """A parsed catalogue: one entry per input row, in file order (``reason == ''`` = usable)."""

    source: str
    ids: np.ndarray
    """Catalogue id as text (``''`` if missing)."""
    sample: np.ndarray
    """int64 sample id (-1 if the id is missing)."""
    ra: np.ndarray
    """float64 degrees (NaN if unparsable)."""
    dec: np.ndarray
    """float64 degrees (NaN if unparsable)."""
    brickname: np.ndarray
    """``RRRRpDDD`` strings (computed from ra/dec when the catalogue has none)."""
    psfsize: np.ndarray
    """``(n, nband)`` float32 PSF FWHM, arcsec (NaN if absent)."""
    psfdepth: np.ndarray
    """``(n, nband)`` float32 5-sigma point-source depth, AB mag (NaN if absent)."""
    host_mag_r: np.ndarray
    """float32 host r magnitude, AB (NaN if absent)."""
    reason: np.ndarray
    """Quarantine reason per row (object array; ``''`` = ok)."""
    detail: np.ndarray
    """Human-readable detail per row."""
    sha256: str = ""
    """Content hash of the catalogue file (provenance / resumption key)."""
    brick_from_catalog: bool = field(default=True)

    @property
    def n_rows(self) -> int:
        return int(self.ids.size)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of usable rows."""
        return self.reason == ""

    def reject(self, mask: np.ndarray, reason: str, detail) -> None:
        """Quarantine rows in ``mask`` that are still ok with ``reason``.

        ``detail`` is a string, a per-row array, or a callable ``row -> str`` (evaluated only
        for the rows rejected here, so large catalogues stay cheap).
        """
        m = np.asarray(mask, bool) & self.ok
        rows = np.flatnonzero(m)
        self.reason[rows] = reason
        for i in rows:
            if callable(detail):
                self.detail[i] = detail(i)
            elif isinstance(detail, str):
                self.detail[i] = detail
            else:
                self.detail[i] = detail[i]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """All columns as strings; rows with the wrong number of fields are flagged."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        lines = [line for line in fh if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        msg = f"catalogue {path} is empty (no header line)"
        raise ValueError(msg) from None
    rows = list(reader)
    n = len(rows)
    bad = np.zeros(n, bool)
    detail = np.full(n, "", dtype=object)
    cols = {h: np.full(n, "", dtype=object) for h in header}
    for i, row in enumerate(rows):
        if len(row) != len(header):
            bad[i] = True
            detail[i] = f"line {i + 2}: {len(row)} fields, expected {len(header)}"
            continue
        for h, v in zip(header, row, strict=True):
            cols[h][i] = v.strip()
    return cols, bad, detail


PARQUET_SUFFIXES = (".parquet", ".pq")


def require_parquet_engine(path: str | Path) -> None:
    """Raise a clear error when ``path`` is a Parquet file and pyarrow (the ``parquet`` extra)
    is not installed; a no-op for other formats."""
    import importlib.util

    if str(path).lower().endswith(PARQUET_SUFFIXES) and importlib.util.find_spec("pyarrow") is None:
        msg = (
            f"catalogue {path} is Parquet, which needs pyarrow: pip install 'gen5dask[parquet]' "
            "(or convert it to CSV / FITS)"
        )
        raise ValueError(msg)


def _read_table(path: Path) -> dict[str, np.ndarray]:
    from astropy.table import Table

    name = path.name.lower()
    fmt = "parquet" if name.endswith(PARQUET_SUFFIXES) else None
    require_parquet_engine(path)
    try:
        tab = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # noqa: BLE001 - report any reader failure with the file name
        msg = f"cannot read catalogue {path}: {type(exc).__name__}: {exc}"
        raise ValueError(msg) from None
    cols = {}
    for name_ in tab.colnames:
        col = tab[name_]
        if col.ndim != 1:
            continue
        vals = np.asarray(col)
        mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool)
        if vals.dtype.kind == "S":
            vals = np.char.decode(vals, "utf-8", "replace")
        if mask.any():
            vals = vals.astype(object)
            vals[mask] = ""
        cols[name_] = vals
    return cols


def _lookup(cols: dict, name: str | None, *, source: Path, key: str, required: bool):
    if name is None:
        return None
    lower = {k.lower(): k for k in cols}
    real = lower.get(name.lower())
    if real is None:
        if required:
            msg = (
                f"catalogue {source}: no column {name!r} (config key columns.{key}); "
                f"columns are {sorted(cols)[:30]}"
            )
            raise ValueError(msg)
        return None
    return cols[real]


def _numeric(values) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, non-numeric mask): empty and non-numeric entries -> NaN, flagged."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        out = arr.astype(np.float64)
        return out, np.zeros(out.shape, bool)
    ser = pd.Series(arr.astype(object))
    out = pd.to_numeric(ser, errors="coerce").to_numpy(dtype=np.float64)
    text = ser.astype(str).str.strip().str.lower()
    bad = np.isnan(out) & ~text.isin(["nan"]).to_numpy()
    return out, bad


def _id_text(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return np.asarray([str(int(v)) for v in arr], dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, float | np.floating) and np.isnan(v):
            out[i] = ""
        elif isinstance(v, bytes):
            out[i] = v.decode("utf-8", "replace").strip()
        else:
            out[i] = str(v).strip()
    return out


def read_catalog(
    path: str | Path,
    *,
    columns: CatalogColumns,
    bands=("g", "r", "z"),
    psfdepth_units: str = "ivar",
    require_psf: bool = True,
) -> Catalog:
    """Parse a catalogue; every row is either usable or carries a quarantine reason.

    Parameters
    ----------
    path
        ``.csv`` (stdlib reader), or anything ``astropy.table.Table.read`` reads (FITS,
        Parquet, ECSV).
    columns
        Column names (``CatalogColumns``; ``{band}`` in ``psfsize``/``psfdepth`` is expanded).
    bands
        Band order of the ``psfsize``/``psfdepth`` outputs.
    psfdepth_units
        ``"ivar"`` (Tractor, nanomaggies^-2, converted to 5-sigma AB mag) or ``"mag"``.
    require_psf
        Require and validate the PSF columns (``fetch`` needs only id, ra and dec).

    Row reasons: ``unparsable row`` (ragged CSV line, non-numeric ra/dec), ``missing id``,
    ``ra/dec out of range``, ``bad brickname``, ``bad psfsize`` (NaN, <= 0 or
    > :data:`MAX_PSFSIZE_ARCSEC`), ``bad psfdepth`` (NaN or <= 0 inverse variance),
    ``duplicate id`` (later occurrences).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"catalogue {path} does not exist"
        raise FileNotFoundError(msg)
    if path.name.lower().endswith(".csv"):
        cols, ragged, ragged_detail = _read_csv(path)
    else:
        cols = _read_table(path)
        n0 = len(next(iter(cols.values()))) if cols else 0
        ragged, ragged_detail = np.zeros(n0, bool), np.full(n0, "", dtype=object)
    n = ragged.size
    bands = tuple(bands)
    look = {"source": path}
    ids = _id_text(_lookup(cols, columns.id, key="id", required=True, **look))
    ra, ra_bad = _numeric(_lookup(cols, columns.ra, key="ra", required=True, **look))
    dec, dec_bad = _numeric(_lookup(cols, columns.dec, key="dec", required=True, **look))
    bcol = _lookup(cols, columns.brickname, key="brickname", required=False, **look)

    psfsize = np.full((n, len(bands)), np.nan, np.float32)
    psfdepth = np.full((n, len(bands)), np.nan, np.float32)
    size_cols, depth_cols = [], []
    if require_psf:
        for j, b in enumerate(bands):
            name = columns.psfsize.replace("{band}", b)
            vals, _ = _numeric(_lookup(cols, name, key="psfsize", required=True, **look))
            psfsize[:, j] = vals
            size_cols.append(name)
            if columns.psfdepth is not None:
                name = columns.psfdepth.replace("{band}", b)
                vals, _ = _numeric(_lookup(cols, name, key="psfdepth", required=True, **look))
                depth_cols.append(name)
                if psfdepth_units == "ivar":
                    with np.errstate(invalid="ignore"):
                        bad_iv = ~(vals > 0)
                    vals = fitsio.psfdepth_ivar_to_mag(vals)
                    vals[bad_iv] = np.nan
                psfdepth[:, j] = vals

    host_mag = np.full(n, np.nan, np.float32)
    mcol = _lookup(cols, columns.mag_r, key="mag_r", required=False, **look)
    fcol = _lookup(cols, columns.flux_r, key="flux_r", required=False, **look)
    if mcol is not None:
        host_mag[:] = _numeric(mcol)[0]
    elif fcol is not None:
        flux = _numeric(fcol)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            host_mag[:] = np.where(flux > 0, 22.5 - 2.5 * np.log10(flux), np.nan)

    sample = np.full(n, -1, np.int64)
    for i, s in enumerate(ids):
        if s and s.lower() not in ("nan", "none", "--"):
            sample[i] = sample_id_for(s)
    cat = Catalog(
        source=str(path),
        ids=ids,
        sample=sample,
        ra=ra,
        dec=dec,
        brickname=np.full(n, "", dtype=object),
        psfsize=psfsize,
        psfdepth=psfdepth,
        host_mag_r=host_mag,
        reason=np.full(n, "", dtype=object),
        detail=np.full(n, "", dtype=object),
        sha256=file_sha256(path),
        brick_from_catalog=bcol is not None,
    )
    cat.reject(ragged, fitsio.UNPARSABLE, ragged_detail)
    cat.reject(sample < 0, fitsio.MISSING_ID, f"empty {columns.id!r}")
    nonnum = ra_bad | dec_bad | ~np.isfinite(ra) | ~np.isfinite(dec)
    raw_ra = _lookup(cols, columns.ra, key="ra", required=True, **look)
    raw_dec = _lookup(cols, columns.dec, key="dec", required=True, **look)
    cat.reject(
        nonnum, fitsio.UNPARSABLE, lambda i: f"ra/dec not numeric: {raw_ra[i]!r}, {raw_dec[i]!r}"
    )
    with np.errstate(invalid="ignore"):
        oor = (ra < 0) | (ra >= 360) | (dec < -90) | (dec > 90)
    cat.reject(oor, fitsio.OUT_OF_RANGE, lambda i: f"ra={ra[i]}, dec={dec[i]}")

    ok = cat.ok
    if bcol is not None:
        names = _id_text(bcol)
        good = np.asarray([bool(_BRICK.match(s)) for s in names])
        cat.reject(~good, fitsio.BAD_BRICKNAME, lambda i: f"brickname {names[i]!r}")
        cat.brickname[:] = names
    elif ok.any():
        cat.brickname[ok] = brickname_for(ra[ok], dec[ok])
    if require_psf:
        with np.errstate(invalid="ignore"):
            bad = ~((psfsize > 0) & (psfsize <= MAX_PSFSIZE_ARCSEC)).all(axis=1)
        cat.reject(bad, fitsio.BAD_PSFSIZE, lambda i: f"{size_cols} = {psfsize[i].tolist()}")
        if columns.psfdepth is not None:
            bad = ~np.isfinite(psfdepth).all(axis=1)
            cat.reject(bad, fitsio.BAD_PSFDEPTH, lambda i: f"{depth_cols} not positive/finite")
    # duplicates: the first occurrence of a sample id wins, whatever became of it
    first: dict[int, int] = {}
    dup = np.zeros(n, bool)
    dup_detail = np.full(n, "", dtype=object)
    for i, s in enumerate(sample):
        if s < 0 or cat.reason[i] in (fitsio.UNPARSABLE,):
            continue
        j = first.setdefault(int(s), i)
        if j != i:
            dup[i] = True
            dup_detail[i] = f"id {ids[i]!r} (sample {s}) first at row {j}"
    cat.reject(dup, fitsio.DUPLICATE_ID, dup_detail)
    return cat


__all__ = [
    "PARQUET_SUFFIXES",
    "Catalog",
    "file_sha256",
    "read_catalog",
    "require_parquet_engine",
    "sample_id_for",
]
