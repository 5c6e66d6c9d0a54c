"""Writers of small, real FITS inputs for the ingest/fetch tests: cutouts and DR10-style bricks.

Everything is generated (seeded) -- no downloads. Cutouts follow the Legacy Surveys cutout
format (primary float32 cube (nband, H, W), BANDS/BANDn keys, INVVAR and MASKBITS extensions,
TAN WCS); bricks follow the DR10 coadd layout (``legacysurvey-<brick>-image-<band>.fits.fz``
as a Rice-compressed ``CompImageHDU`` with a TAN WCS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

PIXSCALE = 0.262


def tan_header(ra: float, dec: float, size: int, *, pixscale: float = PIXSCALE) -> fits.Header:
    """TAN WCS header with (ra, dec) at 0-based pixel (size//2, size//2), north up, east left."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [size // 2 + 1, size // 2 + 1]
    w.wcs.cd = np.array([[-pixscale / 3600.0, 0.0], [0.0, pixscale / 3600.0]])
    return w.to_header()


def cutout_arrays(seed: int, *, nband: int = 3, size: int = 32):
    """Deterministic (image, invvar, maskbits) for one object: noise + a centred blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size // 2
    blob = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2)).astype(np.float32)
    image = rng.normal(0, 0.01, (nband, size, size)).astype(np.float32)
    image += blob[None] * rng.uniform(0.5, 2.0, (nband, 1, 1)).astype(np.float32)
    invvar = rng.uniform(5e3, 2e4, (nband, size, size)).astype(np.float32)
    maskbits = (rng.random((size, size)) < 0.05).astype(np.int32) * 2
    return image, invvar, maskbits


def write_cutout_file(
    path: Path,
    *,
    seed: int,
    ra: float = 150.0,
    dec: float = 2.0,
    bands: str = "grz",
    size: int = 32,
    invvar: bool = True,
    maskbits: bool = True,
    wcs: bool = True,
    pixscale: float = PIXSCALE,
    image_dtype=np.float32,
    image=None,
) -> dict:
    """Write one cutout; returns the arrays written (``image``, ``invvar``, ``maskbits``)."""
    img, iv, mb = cutout_arrays(seed, nband=len(bands), size=size)
    if image is not None:
        img = image
    prim = fits.PrimaryHDU(np.asarray(img).astype(image_dtype))
    if wcs:
        prim.header.update(tan_header(ra, dec, size, pixscale=pixscale))
    prim.header["BANDS"] = bands
    for i, b in enumerate(bands):
        prim.header[f"BAND{i}"] = b
    hdus = [prim]
    if invvar:
        hdus.append(fits.ImageHDU(iv, name="INVVAR"))
    if maskbits:
        hdus.append(fits.ImageHDU(mb, name="MASKBITS"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return {"image": img, "invvar": iv, "maskbits": mb}


def catalog_frame(n: int, *, seed: int = 0, start_id: int = 1000) -> pd.DataFrame:
    """A Tractor-like catalogue (psfdepth as inverse variance, flux_r in nanomaggies)."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(150.0, 150.2, n)
    dec = rng.uniform(2.0, 2.2, n)
    df = pd.DataFrame({"id": np.arange(start_id, start_id + n), "ra": ra, "dec": dec})
    df["brickname"] = "1501p020"
    for b in "grz":
        df[f"psfsize_{b}"] = rng.uniform(1.0, 1.6, n)
        df[f"psfdepth_{b}"] = rng.uniform(500.0, 3000.0, n)
    df["flux_r"] = rng.uniform(5.0, 50.0, n)
    return df


def make_cutout_set(root: Path, n: int, *, size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """``root/cutouts/{id}.fits`` for ``n`` objects + ``root/catalog.csv``; returns both paths."""
    df = catalog_frame(n, seed=seed)
    cdir = root / "cutouts"
    for row in df.itertuples():
        write_cutout_file(cdir / f"{row.id}.fits", seed=int(row.id), ra=row.ra, dec=row.dec,
                          size=size)
    cat = root / "catalog.csv"
    df.to_csv(cat, index=False)
    return cdir, cat


def brick_arrays(brick: str, band: str, size: int):
    """Deterministic brick planes: (image, invvar) float32 and maskbits int32."""
    rng = np.random.default_rng([sum(map(ord, brick)), ord(band), size])
    image = rng.normal(0, 0.01, (size, size)).astype(np.float32)
    invvar = rng.uniform(5e3, 2e4, (size, size)).astype(np.float32)
    maskbits = (rng.random((size, size)) < 0.05).astype(np.int32) * 2
    return image, invvar, maskbits


def write_brick(
    root: Path,
    brick: str,
    *,
    ra: float,
    dec: float,
    size: int = 120,
    bands: str = "grz",
    layout: str = "flat",
    compressed: bool = True,
    with_invvar: bool = True,
    with_maskbits: bool = True,
    pixscale: float = PIXSCALE,
    sources=(),
) -> dict:
    """Write a small DR10-style brick centred on (ra, dec); ``sources`` = [(ra, dec, flux)]
    point sources added at their nearest pixel in every band. Returns the arrays and WCS."""
    d = root / brick if layout == "flat" else root / "coadd" / brick[:3] / brick
    d.mkdir(parents=True, exist_ok=True)
    hdr = tan_header(ra, dec, size, pixscale=pixscale)
    w = WCS(hdr)
    suffix = ".fits.fz" if compressed else ".fits"
    out = {"wcs": w, "dir": d}

    def _write(path, data):
        if compressed:
            # lossless: GZIP_2 without quantisation for floats, RICE_1 for integers
            if data.dtype.kind == "f":
                h = fits.CompImageHDU(data, header=hdr, compression_type="GZIP_2",
                                      quantize_level=0.0)
            else:
                h = fits.CompImageHDU(data, header=hdr, compression_type="RICE_1")
            fits.HDUList([fits.PrimaryHDU(), h]).writeto(path, overwrite=True)
        else:
            fits.PrimaryHDU(data, header=hdr).writeto(path, overwrite=True)

    for b in bands:
        image, invvar, mb = brick_arrays(brick, b, size)
        for sra, sdec, flux in sources:
            x, y = w.world_to_pixel_values(sra, sdec)
            xi, yi = int(np.round(x)), int(np.round(y))
            if 0 <= xi < size and 0 <= yi < size:
                image[yi, xi] += flux
        _write(d / f"legacysurvey-{brick}-image-{b}{suffix}", image)
        if with_invvar:
            _write(d / f"legacysurvey-{brick}-invvar-{b}{suffix}", invvar)
        out[f"image-{b}"] = image
        out[f"invvar-{b}"] = invvar
    mb = brick_arrays(brick, "m", size)[2]
    if with_maskbits:
        _write(d / f"legacysurvey-{brick}-maskbits{suffix}", mb)
    out["maskbits"] = mb
    return out


def ingest_config(tmp: Path, **ingest) -> dict:
    """A small config dict for ingest tests (synchronous executor, no progress bars)."""
    return {
        "output_dir": str(tmp / "out"),
        "seed": 7,
        "chunk_size": 8,
        "stamp_size": 16,
        "cluster": {"kind": "synchronous", "progress": False},
        "ingest": ingest,
    }
