"""DR10 coadd bricks: locate brick files and cut stamps around catalogue positions.

Layouts accepted under the ``bricks`` root (first match wins):
``<root>/<brick>/``, ``<root>/coadd/<RRR>/<brick>/`` (the DR10 tree) and ``<root>/<RRR>/<brick>/``,
each holding ``legacysurvey-<brick>-image-<band>.fits.fz``, ``-invvar-<band>.fits.fz`` and
``-maskbits.fits.fz`` (plain ``.fits`` also accepted). The image is the first HDU with 2-D data
(HDU 1, a ``CompImageHDU``, in ``.fits.fz`` files) and carries a TAN WCS.

Stamps are cut with :class:`astropy.nddata.Cutout2D` at the pixel nearest each position, so the
object lands on pixel ``(S//2, S//2)`` (DESIGN §4). A stamp whose centre is off the brick is
``off edge``; one that only partly overlaps is ``partial overlap`` (outside pixels: image 0,
invvar 0, maskbits NPRIMARY).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.nddata import Cutout2D
from astropy.nddata.utils import NoOverlapError, PartialOverlapError

from gen5dask.store import fitsio
from gen5dask.store.fitsio import Rejected

SUFFIXES = (".fits.fz", ".fits", ".fits.gz")

# overlap status of a stamp with a brick
NONE, PARTIAL, FULL = 0, 1, 2


def brick_dir(root: str | Path, brick: str) -> Path | None:
    """The directory of ``brick`` under ``root`` (flat or DR10 ``coadd/<RRR>/`` tree), or None."""
    root = Path(root)
    for cand in (root / brick, root / "coadd" / brick[:3] / brick, root / brick[:3] / brick):
        if cand.is_dir():
            return cand
    return None


def brick_file(directory: Path, brick: str, product: str, band: str | None = None) -> Path | None:
    """Path of ``legacysurvey-<brick>-<product>[-<band>].fits[.fz|.gz]`` in ``directory``."""
    stem = f"legacysurvey-{brick}-{product}" + (f"-{band}" if band else "")
    for suf in SUFFIXES:
        p = directory / (stem + suf)
        if p.exists():
            return p
    return None


def read_plane(path: Path, *, max_bytes: int, kind: str = "f"):
    """Read the first 2-D image HDU of a brick file -> ``(data, header)``; :class:`Rejected`."""
    fitsio.check_file(path, max_bytes=max_bytes)
    with fitsio.open_fits(path) as hdul:
        for hdu in hdul:
            data = hdu.data
            if data is None or getattr(data, "ndim", 0) != 2:
                continue
            if kind == "f" and data.dtype.kind != "f":
                raise Rejected(fitsio.WRONG_DTYPE, f"{path}: dtype {data.dtype} (need float)")
            if kind == "i" and data.dtype.kind not in "iu":
                raise Rejected(fitsio.WRONG_DTYPE, f"{path}: dtype {data.dtype} (need integer)")
            return np.asarray(data), hdu.header.copy()
    raise Rejected(fitsio.MISSING_HDU, f"{path}: no 2-D image HDU")


def pixel_positions(wcs, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-pixel (0-based) column/row of each position; non-finite -> ``Rejected``."""
    x, y = wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise Rejected(fitsio.BAD_WCS, "WCS gives non-finite pixel positions")
    return np.round(x).astype(np.int64), np.round(y).astype(np.int64)


def overlap(xi: np.ndarray, yi: np.ndarray, shape: tuple[int, int], stamp: int) -> np.ndarray:
    """Per position: NONE if the centre pixel is off the image, PARTIAL if the stamp runs off
    it, FULL otherwise."""
    h, w = shape
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    x0, y0 = xi - stamp // 2, yi - stamp // 2
    full = (x0 >= 0) & (y0 >= 0) & (x0 + stamp <= w) & (y0 + stamp <= h)
    return np.where(~inside, NONE, np.where(full, FULL, PARTIAL)).astype(np.int8)


def cut(data: np.ndarray, xi: int, yi: int, stamp: int, fill) -> np.ndarray:
    """One ``stamp x stamp`` cut centred on pixel ``(yi, xi)`` (``fill`` outside the image)."""
    try:
        c = Cutout2D(data, (int(xi), int(yi)), stamp, mode="partial", fill_value=fill, copy=True)
    except (NoOverlapError, PartialOverlapError) as exc:
        raise Rejected(fitsio.OFF_EDGE, str(exc)) from None
    return c.data


def cut_many(data: np.ndarray, xi, yi, stamp: int, fill, out: np.ndarray) -> None:
    """Cut every position into ``out[k]`` (``(n, stamp, stamp)``); positions must overlap."""
    for k, (x, y) in enumerate(zip(xi, yi, strict=True)):
        out[k] = cut(data, x, y, stamp, fill)


__all__ = [
    "FULL",
    "NONE",
    "PARTIAL",
    "brick_dir",
    "brick_file",
    "cut",
    "cut_many",
    "overlap",
    "pixel_positions",
    "read_plane",
]
