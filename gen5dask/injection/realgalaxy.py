"""Reader for GalSim RealGalaxy-format catalogues (e.g. COSMOS F814W at 0.03"/pix).

The format is a FITS binary table (HDU 1) with one row per galaxy and columns ``IDENT``,
``GAL_FILENAME`` (the FITS file holding its image), ``GAL_HDU`` (the HDU index in that file)
and ``PIXEL_SCALE`` (arcsec/pixel); ``MAG`` and others are kept as metadata when present.
Images are read lazily, one HDU at a time (memory-mapped), and returned as float64 surface
brightness arrays ready for :func:`gen5dask.kernels.render.render_lensed_image`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

REQUIRED_COLUMNS = ("IDENT", "GAL_FILENAME", "GAL_HDU", "PIXEL_SCALE")


@dataclass
class RealGalaxyCatalog:
    """A RealGalaxy catalogue: table metadata plus lazy access to the galaxy images.

    Attributes
    ----------
    path : pathlib.Path
        The catalogue FITS file.
    image_dir : pathlib.Path
        Directory holding the image files named in ``GAL_FILENAME``.
    ident : numpy.ndarray
        int64 galaxy identifiers (``IDENT``).
    gal_filename : list of str
        Image file name per row.
    gal_hdu : numpy.ndarray
        int64 HDU index per row.
    pixel_scale : numpy.ndarray
        float64 pixel scale per row, arcsec/pixel.
    mag : numpy.ndarray
        float64 catalogue magnitude per row (NaN if the column is absent).
    """

    path: Path
    image_dir: Path
    ident: np.ndarray
    gal_filename: list[str]
    gal_hdu: np.ndarray
    pixel_scale: np.ndarray
    mag: np.ndarray

    def __len__(self) -> int:
        return int(self.ident.shape[0])

    def index_of(self, ident: int) -> int:
        """Row index of galaxy ``ident``; ``KeyError`` if absent."""
        hits = np.flatnonzero(self.ident == int(ident))
        if hits.size == 0:
            msg = f"IDENT {ident} not in {self.path}"
            raise KeyError(msg)
        return int(hits[0])

    def image(self, i: int) -> tuple[np.ndarray, float]:
        """Image of row ``i`` as ``(float64 array (h, w), pixscale arcsec/pixel)``.

        Raises
        ------
        IndexError
            If ``i`` is out of range.
        ValueError
            If the image file or HDU is missing, empty, not 2-D or not finite, naming the file.
        """
        n = len(self)
        if not -n <= i < n:
            msg = f"row {i} out of range for {n} galaxies in {self.path}"
            raise IndexError(msg)
        i = int(i) % n
        fname = self.image_dir / self.gal_filename[i]
        hdu = int(self.gal_hdu[i])
        if not fname.exists():
            msg = f"image file {fname} (row {i}, IDENT {self.ident[i]}) does not exist"
            raise ValueError(msg)
        with fits.open(fname, memmap=True) as hdul:
            if not 0 <= hdu < len(hdul):
                msg = (
                    f"{fname}: GAL_HDU={hdu} (row {i}, IDENT {self.ident[i]}) but the file has "
                    f"{len(hdul)} HDUs"
                )
                raise ValueError(msg)
            data = hdul[hdu].data
            if data is None or np.ndim(data) != 2:
                shape = None if data is None else np.shape(data)
                msg = f"{fname}: HDU {hdu} (row {i}) holds no 2-D image (shape {shape})"
                raise ValueError(msg)
            arr = np.array(data, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            msg = f"{fname}: HDU {hdu} (row {i}) has non-finite pixels"
            raise ValueError(msg)
        return arr, float(self.pixel_scale[i])


def load_real_galaxy_catalog(path_catalog, image_dir=None) -> RealGalaxyCatalog:
    """Open a GalSim RealGalaxy-format catalogue.

    Parameters
    ----------
    path_catalog : str or path-like
        The catalogue FITS file (table in HDU 1).
    image_dir : str or path-like, optional
        Directory of the image files; default: the catalogue's directory.

    Returns
    -------
    RealGalaxyCatalog

    Raises
    ------
    ValueError
        If the file is missing, has no table in HDU 1, lacks a required column
        (``IDENT``, ``GAL_FILENAME``, ``GAL_HDU``, ``PIXEL_SCALE``) or has non-positive pixel
        scales; the message names the file.
    """
    path = Path(path_catalog)
    if not path.exists():
        msg = f"RealGalaxy catalogue {path} does not exist"
        raise ValueError(msg)
    with fits.open(path) as hdul:
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            msg = f"{path}: expected a binary table in HDU 1 (RealGalaxy catalogue)"
            raise ValueError(msg)
        table = hdul[1].data
        names = [c.upper() for c in hdul[1].columns.names]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            msg = f"{path}: missing required column(s) {missing}; has {names}"
            raise ValueError(msg)
        ident = np.asarray(table["IDENT"], dtype=np.int64)
        files = [str(v).strip() for v in table["GAL_FILENAME"]]
        hdus = np.asarray(table["GAL_HDU"], dtype=np.int64)
        scale = np.asarray(table["PIXEL_SCALE"], dtype=np.float64)
        mag = (
            np.asarray(table["MAG"], dtype=np.float64)
            if "MAG" in names
            else np.full(ident.shape, np.nan)
        )
    bad = ~np.isfinite(scale) | (scale <= 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        msg = f"{path}: PIXEL_SCALE[{i}] = {scale[i]!r} must be > 0 arcsec/pixel"
        raise ValueError(msg)
    img_dir = path.parent if image_dir is None else Path(image_dir)
    return RealGalaxyCatalog(
        path=path, image_dir=img_dir, ident=ident, gal_filename=files, gal_hdu=hdus,
        pixel_scale=scale, mag=mag,
    )


__all__ = ["REQUIRED_COLUMNS", "RealGalaxyCatalog", "load_real_galaxy_catalog"]
