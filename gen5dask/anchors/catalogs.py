"""Read anchor catalogues (the lenscat catalogue, user tables) into one normal form.

The lenscat catalogue ships with gen5dask (``gen5dask/data``, MIT licence); an installed
``lenscat`` package can supply a newer one (``copy="package"``).

The normal form is a DataFrame with columns ``id`` (int64, -1 if none), ``name``, ``ra``,
``dec`` (deg), ``grade``, ``theta_e`` (arcsec), ``z_lens``, ``z_source``, ``ref``, ``source``.
lenscat packs several names / redshifts / references of merged entries with ``|``; the first
name is kept as ``name`` and all references in ``ref``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask.data import lenscat_csv, lenscat_info
from gen5dask.store.catalogs import PARQUET_SUFFIXES, require_parquet_engine

NORMAL_COLUMNS = (
    "id",
    "name",
    "ra",
    "dec",
    "grade",
    "theta_e",
    "z_lens",
    "z_source",
    "ref",
    "source",
)


def bundled_lenscat_info() -> dict:
    """Version, licence and checksum of the bundled lenscat catalogue (``lenscat_catalog.json``)."""
    return lenscat_info()


def lenscat_path(copy: str = "bundled") -> Path:
    """Path of the lenscat catalogue CSV.

    ``copy="bundled"`` (default): the copy shipped with gen5dask (lenscat 1.1.3, MIT licence;
    no extra dependency). ``copy="package"``: the CSV inside an installed ``lenscat`` package
    (``pip install 'gen5dask[catalogs]'``), found without importing it (``import lenscat``
    pulls in ligo.skymap and takes seconds) -- the way to use a newer catalogue.
    """
    if copy == "bundled":
        return lenscat_csv()
    if copy != "package":
        msg = f"lenscat copy must be 'bundled' or 'package', got {copy!r}"
        raise ValueError(msg)
    spec = importlib.util.find_spec("lenscat")
    if spec is None or not spec.submodule_search_locations:
        msg = (
            "the lenscat package is not installed: pip install 'gen5dask[catalogs]', or use the "
            "bundled catalogue (lenscat_copy: bundled)"
        )
        raise FileNotFoundError(msg)
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "catalog.csv"
    if not path.exists():
        msg = f"lenscat is installed but its catalogue file {path} is missing"
        raise FileNotFoundError(msg)
    return path


def _first(value) -> str:
    return str(value).split("|")[0].strip()


def _first_float(value) -> float:
    for part in str(value).split("|"):
        try:
            return float(part)
        except ValueError:
            continue
    return np.nan


def read_lenscat(
    *,
    gradings=("confident", "probable"),
    types=("galaxy",),
    ref_include=(),
    ref_exclude=("Lopes et al. (2004)",),
    path: str | Path | None = None,
    copy: str = "bundled",
) -> pd.DataFrame:
    """lenscat's catalogue in normal form, filtered by grading, type and reference.

    ``path`` overrides the file; otherwise ``copy`` picks the bundled copy or the installed
    lenscat package's (:func:`lenscat_path`).
    """
    raw = pd.read_csv(path or lenscat_path(copy))
    keep = raw["grading"].isin(list(gradings)) & raw["type"].isin(list(types))
    refs = raw["ref"].fillna("").astype(str)
    if ref_include:
        keep &= refs.apply(lambda r: any(s in r for s in ref_include))
    if ref_exclude:
        keep &= ~refs.apply(lambda r: any(s in r for s in ref_exclude))
    df = raw[keep]
    return pd.DataFrame(
        {
            "id": np.full(len(df), -1, dtype=np.int64),
            "name": df["name"].map(_first).to_numpy(),
            "ra": df["RA [deg]"].astype(float).to_numpy(),
            "dec": df["DEC [deg]"].astype(float).to_numpy(),
            "grade": df["grading"].astype(str).to_numpy(),
            "theta_e": np.full(len(df), np.nan),
            "z_lens": df["zlens"].map(_first_float).to_numpy(),
            "z_source": np.full(len(df), np.nan),
            "ref": refs[keep].to_numpy(),
            "source": "lenscat",
        }
    )


def read_table(path: str | Path, columns: dict[str, str] | None = None, *, source: str = ""):
    """A user CSV / FITS / Parquet list in normal form; missing ra/dec columns are an error."""
    from astropy.table import Table

    path = Path(path)
    if not path.exists():
        msg = f"anchor catalogue {path} does not exist"
        raise FileNotFoundError(msg)
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
    elif path.name.lower().endswith(PARQUET_SUFFIXES):
        require_parquet_engine(path)
        df = Table.read(path, format="parquet").to_pandas()
    else:
        df = Table.read(path).to_pandas()
    cols = {k: k for k in NORMAL_COLUMNS}
    cols.update(columns or {})
    for req in ("ra", "dec"):
        if cols[req] not in df.columns:
            msg = f"{path}: column {cols[req]!r} (for {req}) not found; columns: {list(df.columns)}"
            raise ValueError(msg)
    n = len(df)

    def col(key, default):
        c = cols[key]
        return df[c].to_numpy() if c in df.columns else np.full(n, default)

    ra = pd.to_numeric(df[cols["ra"]], errors="coerce").to_numpy(dtype=float)
    dec = pd.to_numeric(df[cols["dec"]], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90)
    if bad.any():
        rows = np.nonzero(bad)[0][:5].tolist()
        msg = f"{path}: unparsable or out-of-range ra/dec in rows {rows}"
        raise ValueError(msg)
    names = col("name", "")
    names = np.array(
        [str(x) if str(x) not in ("", "nan") else f"row{i}" for i, x in enumerate(names)],
        dtype=object,
    )
    return pd.DataFrame(
        {
            "id": pd.to_numeric(pd.Series(col("id", -1)), errors="coerce")
            .fillna(-1)
            .astype(np.int64)
            .to_numpy(),
            "name": names,
            "ra": ra % 360.0,
            "dec": dec,
            "grade": np.array([str(g) for g in col("grade", "")], dtype=object),
            "theta_e": pd.to_numeric(pd.Series(col("theta_e", np.nan)), errors="coerce").to_numpy(),
            "z_lens": pd.to_numeric(pd.Series(col("z_lens", np.nan)), errors="coerce").to_numpy(),
            "z_source": pd.to_numeric(
                pd.Series(col("z_source", np.nan)), errors="coerce"
            ).to_numpy(),
            "ref": np.array([str(r) for r in col("ref", "")], dtype=object),
            "source": source or path.name,
        }
    )


def crossmatch(ra1, dec1, ra2, dec2) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour of each (ra1, dec1) in (ra2, dec2): (index, separation in arcsec).

    Uses astropy's ``SkyCoord.match_to_catalog_sky`` (a KD-tree on the unit sphere).
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if len(ra2) == 0:
        return np.full(len(ra1), -1), np.full(len(ra1), np.inf)
    if len(ra1) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    c1 = SkyCoord(np.asarray(ra1) * u.deg, np.asarray(dec1) * u.deg)
    c2 = SkyCoord(np.asarray(ra2) * u.deg, np.asarray(dec2) * u.deg)
    idx, sep, _ = c1.match_to_catalog_sky(c2)
    return np.asarray(idx, dtype=np.int64), sep.to_value(u.arcsec)


def merge_sources(frames: list[pd.DataFrame], tolerance_arcsec: float) -> pd.DataFrame:
    """Merge catalogues; rows within ``tolerance_arcsec`` of an earlier row are the same anchor.

    The first occurrence keeps its values (earlier sources take precedence); every source that
    listed the anchor is kept in ``provenance`` (``source:name`` joined by ``;``).
    """
    merged: pd.DataFrame | None = None
    for df in frames:
        df = df.copy()
        df["provenance"] = df["source"].astype(str) + ":" + df["name"].astype(str)
        if merged is None or merged.empty:
            merged = df.reset_index(drop=True)
            continue
        idx, sep = crossmatch(df["ra"], df["dec"], merged["ra"], merged["dec"])
        dup = sep <= tolerance_arcsec
        for j, i in zip(np.nonzero(dup)[0], idx[dup], strict=True):
            merged.loc[i, "provenance"] += ";" + df["provenance"].iloc[j]
            if merged.loc[i, "id"] < 0 and df["id"].iloc[j] >= 0:
                merged.loc[i, "id"] = df["id"].iloc[j]
        merged = pd.concat([merged, df[~dup]], ignore_index=True)
    if merged is None:
        return pd.DataFrame(columns=[*NORMAL_COLUMNS, "provenance"])
    return merged


def classify_origin(ref: str, *, desi_native, stress, secondary) -> str:
    """``stress`` (SLACS/BELLS), ``desi`` (Legacy Surveys searches), ``secondary`` or ``other``."""
    ref = str(ref)
    if any(s in ref for s in stress):
        return "stress"
    if any(s in ref for s in desi_native):
        return "desi"
    if any(s in ref for s in secondary):
        return "secondary"
    return "other"


def assign_tier(origin: str, grade: str) -> str:
    """Tier rule: ``stress`` = SLACS/BELLS; ``secondary`` = cross-survey sets (SuGOHI, DES, ...);
    otherwise A for the highest grades (confident / A / confirmed) and B for probable / B;
    anything else is ``secondary``."""
    grade = str(grade).lower()
    if origin in ("stress", "secondary"):
        return origin
    if grade in ("confident", "a", "confirmed"):
        return "A"
    if grade in ("probable", "b"):
        return "B"
    return "secondary"


__all__ = [
    "assign_tier",
    "bundled_lenscat_info",
    "classify_origin",
    "crossmatch",
    "lenscat_path",
    "merge_sources",
    "read_lenscat",
    "read_table",
]
