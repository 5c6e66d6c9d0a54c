"""Injection sources: real-galaxy images (GalSim RealGalaxy catalogues) prepared for the renderer.

:func:`prepare_real_galaxy` background-subtracts, thresholds, crops and unit-normalises one HST
stamp; :class:`RealGalaxySource` names a catalogue (absolute paths, so worker processes find the
files whatever their cwd) and serves prepared images from a per-process cache keyed by the
catalogue file's mtime and size (a rewritten catalogue is reloaded).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: width (pixels) of the stamp border whose median is the background of a galaxy image.
BORDER_PIX = 2


def prepare_real_galaxy(
    image: np.ndarray,
    *,
    max_size: int | None = None,
    threshold_sigma: float = 0.0,
    name: str = "galaxy image",
) -> np.ndarray:
    """Background-subtract, threshold, crop and unit-normalise a real-galaxy (HST) stamp.

    1. background = median of the pixels within :data:`BORDER_PIX` of the stamp edge
       (sky-dominated in GalSim RealGalaxy stamps), subtracted;
    2. pixels below ``threshold_sigma * sigma`` are set to 0, with ``sigma`` = 1.4826 x the
       median absolute deviation of the border (``threshold_sigma = 0`` clips negatives only;
       the positive half of the noise then stays as a faint pedestal, see
       ``InjectConfig.real_galaxy_threshold_sigma``);
    3. optional crop to ``max_size`` pixels per side keeping pixel ``(h//2, w//2)`` at the new
       ``(m//2, m//2)`` (the renderer's source centre);
    4. divided by its sum (unit flux; the renderer rescales to ``src_flux_bands``).

    Parameters
    ----------
    image : numpy.ndarray
        2-D surface brightness (any units), finite.
    max_size : int, optional
        Maximum side of the returned stamp, pixels.
    threshold_sigma : float
        Threshold in units of the border noise (>= 0).
    name : str
        Used in error messages (catalogue row, file).

    Returns
    -------
    numpy.ndarray
        float64 ``(h', w')`` >= 0, summing to 1.

    Raises
    ------
    ValueError
        If the image is not 2-D, smaller than 2 * BORDER_PIX + 1 per side, non-finite, or has
        no flux left after steps 1-3.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2 or min(a.shape) < 2 * BORDER_PIX + 1:
        msg = f"{name}: need a 2-D image >= {2 * BORDER_PIX + 1} px per side, got {a.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(a)):
        msg = f"{name}: non-finite pixels"
        raise ValueError(msg)
    if threshold_sigma < 0:
        msg = f"{name}: threshold_sigma must be >= 0, got {threshold_sigma}"
        raise ValueError(msg)
    b = BORDER_PIX
    edge = np.concatenate(
        [a[:b].ravel(), a[-b:].ravel(), a[b:-b, :b].ravel(), a[b:-b, -b:].ravel()]
    )
    bg = np.median(edge)
    sigma = 1.4826 * np.median(np.abs(edge - bg))
    out = a - bg
    out[out < threshold_sigma * sigma] = 0.0
    out[out < 0.0] = 0.0  # threshold 0 with sigma 0 still clips negatives
    if max_size is not None:
        m = int(max_size)
        h, w = out.shape
        if h > m:
            r0 = h // 2 - m // 2
            out = out[r0 : r0 + m]
        if w > m:
            c0 = w // 2 - m // 2
            out = out[:, c0 : c0 + m]
    total = out.sum()
    if not total > 0:
        msg = (
            f"{name}: no flux left after background subtraction (median of the border), "
            f"threshold ({threshold_sigma} sigma) and crop (max_size={max_size})"
        )
        raise ValueError(msg)
    return np.ascontiguousarray(out / total)


def _file_stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return int(st.st_mtime_ns), int(st.st_size)


@functools.lru_cache(maxsize=4)
def _catalog_cached(path: str, image_dir: str | None, stamp: tuple[int, int]):
    from gen5dask.injection.realgalaxy import load_real_galaxy_catalog

    del stamp  # part of the cache key only: a rewritten catalogue is reloaded
    return load_real_galaxy_catalog(path, image_dir)


@functools.lru_cache(maxsize=64)
def _galaxy_cached(path, image_dir, stamp, index, max_size, threshold):
    cat = _catalog_cached(path, image_dir, stamp)
    try:
        raw, pix = cat.image(index)
    except (ValueError, IndexError) as exc:
        msg = f"inject: real galaxy row {index} of {path}: {exc}"
        raise ValueError(msg) from None
    name = f"{path} row {index} (IDENT {cat.ident[index]}, {cat.gal_filename[index]})"
    img = prepare_real_galaxy(raw, max_size=max_size, threshold_sigma=threshold, name=name)
    img.setflags(write=False)
    return img, float(pix)


@dataclass(frozen=True)
class RealGalaxySource:
    """A RealGalaxy catalogue and how its images are prepared (``inject.real_galaxy_*``)."""

    catalog: str
    """Catalogue FITS, absolute path."""
    image_dir: str | None
    """Directory of the ``GAL_FILENAME`` files, absolute (None: the catalogue's directory)."""
    max_size: int | None
    threshold_sigma: float

    @classmethod
    def from_config(cls, icfg) -> RealGalaxySource | None:
        """From an ``InjectConfig``; None unless ``source_mode`` is ``real_galaxy``."""
        if icfg.source_mode != "real_galaxy":
            return None
        idir = icfg.real_galaxy_image_dir
        return cls(
            catalog=str(Path(icfg.real_galaxy_catalog).resolve()),
            image_dir=None if idir is None else str(Path(idir).resolve()),
            max_size=icfg.real_galaxy_max_size,
            threshold_sigma=float(icfg.real_galaxy_threshold_sigma),
        )

    def catalog_table(self):
        """The catalogue (cached per process).

        Raises
        ------
        ValueError
            If the catalogue is missing, invalid or empty; the message names
            ``inject.real_galaxy_catalog`` and the file.
        """
        path = Path(self.catalog)
        if not path.exists():
            msg = f"inject.real_galaxy_catalog: {path} does not exist"
            raise ValueError(msg)
        try:
            cat = _catalog_cached(str(path), self.image_dir, _file_stamp(path))
        except ValueError as exc:
            msg = f"inject.real_galaxy_catalog: {exc}"
            raise ValueError(msg) from None
        if len(cat) == 0:
            msg = f"inject.real_galaxy_catalog: {path} has no galaxies"
            raise ValueError(msg)
        return cat

    def __len__(self) -> int:
        return len(self.catalog_table())

    def fingerprint(self) -> dict:
        """``n_galaxies`` and the catalogue's sha256 (store configs hash its content)."""
        cat = self.catalog_table()
        return {
            "n_galaxies": len(cat),
            "catalog_sha256": hashlib.sha256(Path(cat.path).read_bytes()).hexdigest(),
        }

    def image(self, index: int) -> tuple[np.ndarray, float]:
        """Prepared (unit-flux, read-only) image and pixel scale (arcsec) of row ``index``.

        Cached per process (64 galaxies), keyed by the catalogue file's mtime and size too.
        """
        self.catalog_table()  # existence and validity, with a clear message
        path = Path(self.catalog)
        return _galaxy_cached(
            str(path), self.image_dir, _file_stamp(path), int(index), self.max_size,
            float(self.threshold_sigma),
        )


__all__ = ["BORDER_PIX", "RealGalaxySource", "prepare_real_galaxy"]
