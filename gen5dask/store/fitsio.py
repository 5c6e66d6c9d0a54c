"""FITS reading and validation shared by ``ingest`` (cutouts, bricks) and ``fetch``.

Every problem with an input file is raised as :class:`Rejected` with a short, stable ``reason``
(one of :data:`REASONS`) and a human ``detail``; the stages turn these into quarantine rows, so
bad input never crashes a run and never vanishes silently.

Cutout format (Legacy Surveys cutout style): primary HDU float cube ``(nband, H, W)`` in
nanomaggies with header ``BANDS`` (e.g. ``'grz'``) or ``BAND0``, ``BAND1``, ... keys; optional
image extensions ``INVVAR`` (same shape, nanomaggies^-2) and ``MASKBITS`` (``(H, W)`` integer).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

# --- quarantine reasons (stable strings: tests, reports and users grep for them) -------------
MISSING_FILE = "missing file"
EMPTY_FILE = "empty file"
TRUNCATED = "truncated file"
NOT_FITS = "not a FITS file"
TOO_LARGE = "file too large"
UNREADABLE = "unreadable file"
WRONG_SHAPE = "wrong shape"
WRONG_DTYPE = "wrong dtype"
NON_FINITE = "non-finite pixels"
BAD_INVVAR = "bad invvar"
MISSING_BANDS = "missing bands"
MISSING_HDU = "missing HDU"
BAD_WCS = "bad WCS"
OFF_EDGE = "off edge"
PARTIAL = "partial overlap"
OUTSIDE_ROOTS = "path outside allowed roots"
DUPLICATE_ID = "duplicate id"
MISSING_ID = "missing id"
UNPARSABLE = "unparsable row"
OUT_OF_RANGE = "ra/dec out of range"
BAD_PSFSIZE = "bad psfsize"
BAD_PSFDEPTH = "bad psfdepth"
BAD_BRICKNAME = "bad brickname"
DOWNLOAD_FAILED = "download failed"
TIMEOUT = "timeout"

REASONS = (
    MISSING_FILE, EMPTY_FILE, TRUNCATED, NOT_FITS, TOO_LARGE, UNREADABLE, WRONG_SHAPE,
    WRONG_DTYPE, NON_FINITE, BAD_INVVAR, MISSING_BANDS, MISSING_HDU, BAD_WCS, OFF_EDGE, PARTIAL,
    OUTSIDE_ROOTS, DUPLICATE_ID, MISSING_ID, UNPARSABLE, OUT_OF_RANGE, BAD_PSFSIZE,
    BAD_PSFDEPTH, BAD_BRICKNAME, DOWNLOAD_FAILED, TIMEOUT,
)

FITS_BLOCK = 2880
FITS_MAGIC = b"SIMPLE  ="
NPRIMARY_BIT = 1  # DR10 MASKBITS bit 0: not in the brick's primary region


class Rejected(Exception):  # noqa: N818 - a quarantine verdict, not a program error
    """An input row or file is rejected; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Cutout:
    """A validated stamp: arrays in the requested band order, cropped to the stamp size."""

    image: np.ndarray
    """``(nband, S, S)`` float32, nanomaggies."""
    invvar: np.ndarray | None
    """``(nband, S, S)`` float32, nanomaggies^-2 (``None`` if the file has none)."""
    maskbits: np.ndarray
    """``(S, S)`` int32 DR10 MASKBITS (zeros if the file has none)."""


# --- paths ----------------------------------------------------------------------------------
def resolve_roots(roots) -> list[Path]:
    """Resolved (symlink-free, absolute) allowed root directories."""
    return [Path(r).expanduser().resolve() for r in roots]


def resolve_within(path: str | Path, roots: list[Path]) -> Path:
    """Resolve ``path`` (following symlinks) and require it to lie under one of ``roots``.

    Raises :class:`Rejected` (``OUTSIDE_ROOTS``) for ``..`` traversal or a symlink that leaves
    the roots. ``roots`` must already be resolved (:func:`resolve_roots`).
    """
    resolved = Path(path).expanduser().resolve()
    for root in roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    msg = f"{path} resolves to {resolved}, outside {[str(r) for r in roots]}"
    raise Rejected(OUTSIDE_ROOTS, msg)


def check_file(path: Path, *, max_bytes: int) -> int:
    """Cheap checks before parsing: exists, non-empty, not too large, FITS magic, 2880-blocked.

    Returns the size in bytes.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise Rejected(MISSING_FILE, str(path)) from None
    except OSError as exc:
        raise Rejected(UNREADABLE, f"{path}: {exc}") from None
    if not path.is_file():
        raise Rejected(MISSING_FILE, f"{path} is not a regular file")
    if size == 0:
        raise Rejected(EMPTY_FILE, str(path))
    if size > max_bytes:
        raise Rejected(TOO_LARGE, f"{path}: {size} bytes > {max_bytes}")
    with open(path, "rb") as fh:
        head = fh.read(len(FITS_MAGIC))
    check_magic(head, str(path), size)
    return size


def check_magic(head: bytes, source: str, size: int) -> None:
    """FITS magic bytes and 2880-byte blocking (a short last block means truncation)."""
    if head[: len(FITS_MAGIC)] != FITS_MAGIC:
        if len(head) < len(FITS_MAGIC) and FITS_MAGIC.startswith(head):
            raise Rejected(TRUNCATED, f"{source}: {size} bytes")
        raise Rejected(NOT_FITS, f"{source}: starts with {head[:16]!r}")
    if size % FITS_BLOCK:
        raise Rejected(TRUNCATED, f"{source}: {size} bytes is not a multiple of {FITS_BLOCK}")


@contextlib.contextmanager
def open_fits(source, *, name: str = ""):
    """Open a FITS file (path or file object) fully in memory; problems become :class:`Rejected`.

    Astropy's "File may have been truncated" warning is turned into ``TRUNCATED``.
    """
    label = name or str(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(source, memmap=False, lazy_load_hdus=False)
        except OSError as exc:
            text = str(exc)
            if "truncat" in text.lower() or "empty" in text.lower():
                raise Rejected(TRUNCATED, f"{label}: {text}") from None
            raise Rejected(UNREADABLE, f"{label}: {text}") from None
        except Exception as exc:  # noqa: BLE001 - any parser failure is a quarantine reason
            raise Rejected(UNREADABLE, f"{label}: {type(exc).__name__}: {exc}") from None
    try:
        with warnings.catch_warnings(record=True) as caught2:
            warnings.simplefilter("always")
            try:
                for hdu in hdul:
                    _ = hdu.data
                    for card in hdu.header.cards:  # a corrupt card fails here, not later
                        _ = card.value
            except Exception as exc:  # noqa: BLE001
                if _truncated(caught + caught2):
                    raise Rejected(TRUNCATED, f"{label}: {exc}") from None
                raise Rejected(UNREADABLE, f"{label}: {type(exc).__name__}: {exc}") from None
        if _truncated(caught + caught2):
            raise Rejected(TRUNCATED, label)
        yield hdul
    finally:
        hdul.close()


def _truncated(caught) -> bool:
    return any("truncated" in str(w.message).lower() for w in caught)


# --- headers --------------------------------------------------------------------------------
def header_bands(header) -> list[str] | None:
    """Band names from ``BANDS`` (``'grz'`` or ``'g,r,z'``) or ``BAND0``, ``BAND1``, ... keys."""
    if "BANDS" in header:
        text = str(header["BANDS"]).strip()
        parts = [p.strip() for p in text.split(",")] if "," in text else list(text.replace(" ", ""))
        return [p for p in parts if p]
    out = []
    i = 0
    while f"BAND{i}" in header:
        out.append(str(header[f"BAND{i}"]).strip())
        i += 1
    return out or None


def celestial_wcs(header, *, label: str) -> WCS:
    """The celestial WCS of a header, or :class:`Rejected` (``BAD_WCS``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header).celestial
        except Exception as exc:  # noqa: BLE001 - astropy raises many types for bad WCS
            raise Rejected(BAD_WCS, f"{label}: {type(exc).__name__}: {exc}") from None
    if not wcs.has_celestial or wcs.naxis != 2:
        raise Rejected(BAD_WCS, f"{label}: no celestial WCS")
    return wcs


def check_pixscale(wcs: WCS, *, pixscale: float, tolerance: float, label: str) -> None:
    """Require the WCS pixel scale (arcsec/pixel, both axes) to match ``pixscale``."""
    try:
        from astropy.wcs.utils import proj_plane_pixel_scales

        scales = np.abs(np.asarray(proj_plane_pixel_scales(wcs), dtype=np.float64)) * 3600.0
    except Exception as exc:  # noqa: BLE001
        raise Rejected(BAD_WCS, f"{label}: cannot compute pixel scale: {exc}") from None
    if not np.all(np.isfinite(scales)) or np.any(np.abs(scales / pixscale - 1) > tolerance):
        msg = f"{label}: pixel scale {np.round(scales, 4).tolist()} arcsec != {pixscale}"
        raise Rejected(BAD_WCS, msg)


def _header_scales(header) -> np.ndarray | None:
    """Pixel scales (deg/pixel, per axis) from CD or CDELT(+PC) keywords; None if absent."""
    if all(k in header for k in ("CD1_1", "CD2_2")):
        cd = np.array([[header.get("CD1_1", 0.0), header.get("CD1_2", 0.0)],
                       [header.get("CD2_1", 0.0), header.get("CD2_2", 0.0)]], dtype=np.float64)
    elif all(k in header for k in ("CDELT1", "CDELT2")):
        pc = np.array([[header.get("PC1_1", 1.0), header.get("PC1_2", 0.0)],
                       [header.get("PC2_1", 0.0), header.get("PC2_2", 1.0)]], dtype=np.float64)
        cd = pc * np.array([[header["CDELT1"]], [header["CDELT2"]]], dtype=np.float64)
    else:
        return None
    return np.sqrt((cd**2).sum(axis=0))


def check_header_wcs(header, *, pixscale: float, tolerance: float, label: str) -> None:
    """Fast WCS sanity check of a cutout header: celestial CTYPEs and the pixel scale.

    Reads CD / CDELT+PC keywords directly (building an astropy WCS per file costs more than
    reading the file); falls back to :func:`celestial_wcs` when they are absent.
    """
    c1, c2 = str(header.get("CTYPE1", "")), str(header.get("CTYPE2", ""))
    if not (c1.startswith("RA--") and c2.startswith("DEC-")) and not (
        c1.startswith("DEC-") and c2.startswith("RA--")
    ):
        raise Rejected(BAD_WCS, f"{label}: CTYPE1/2 = {c1!r}/{c2!r}, need RA/DEC")
    try:
        scales = _header_scales(header)
    except (TypeError, ValueError) as exc:
        raise Rejected(BAD_WCS, f"{label}: unreadable CD/CDELT keywords ({exc})") from None
    if scales is None:
        wcs = celestial_wcs(header, label=label)
        check_pixscale(wcs, pixscale=pixscale, tolerance=tolerance, label=label)
        return
    scales = scales * 3600.0
    if not np.all(np.isfinite(scales)) or np.any(np.abs(scales / pixscale - 1) > tolerance):
        msg = f"{label}: pixel scale {np.round(scales, 4).tolist()} arcsec != {pixscale}"
        raise Rejected(BAD_WCS, msg)


def has_wcs(header) -> bool:
    """True when the header carries celestial WCS keywords."""
    return "CTYPE1" in header or "CD1_1" in header


# --- cutouts --------------------------------------------------------------------------------
def crop_center(arr: np.ndarray, stamp_size: int) -> np.ndarray:
    """Crop the last two axes to ``stamp_size`` keeping pixel ``(H//2, W//2)`` at the centre."""
    h, w = arr.shape[-2:]
    y0 = h // 2 - stamp_size // 2
    x0 = w // 2 - stamp_size // 2
    return arr[..., y0 : y0 + stamp_size, x0 : x0 + stamp_size]


def _find_ext(hdul, names: tuple[str, ...]):
    for hdu in hdul[1:]:
        if hdu.name.upper() in names:
            return hdu
    return None


def read_cutout(
    path: str | Path,
    *,
    bands: tuple[str, ...],
    stamp_size: int,
    max_bytes: int,
    pixscale: float = 0.262,
    pixscale_tolerance: float = 0.01,
    require_invvar: bool = True,
    source=None,
) -> Cutout:
    """Read and validate one cutout file; raise :class:`Rejected` with the reason otherwise.

    Parameters
    ----------
    path
        File (used for messages; read unless ``source`` is given).
    bands
        Bands wanted, in output order; every one must be in the file's ``BANDS``.
    stamp_size
        Output side, pixels; larger cutouts are cropped about ``(H//2, W//2)``.
    max_bytes
        Larger files are rejected (``TOO_LARGE``).
    pixscale, pixscale_tolerance
        If the file has a WCS, its pixel scale (arcsec/pixel) must match within this relative
        tolerance (``BAD_WCS`` otherwise).
    require_invvar
        Reject a file without an ``INVVAR`` extension (``MISSING_HDU``); else ``invvar`` is None.
    source
        Bytes-like or file object to parse instead of reading ``path``.
    """
    path = Path(path)
    label = str(path)
    if source is None:
        check_file(path, max_bytes=max_bytes)
        ctx = open_fits(path, name=label)
    else:
        ctx = open_fits(source, name=label)
    with ctx as hdul:
        prim = hdul[0]
        data = prim.data
        if data is None:
            raise Rejected(MISSING_HDU, f"{label}: primary HDU has no image")
        if data.dtype.kind != "f":
            raise Rejected(WRONG_DTYPE, f"{label}: image dtype {data.dtype} (need float)")
        file_bands = header_bands(prim.header)
        if data.ndim == 2 and file_bands is not None and len(file_bands) == 1:
            data = data[None]
        if data.ndim != 3:
            raise Rejected(WRONG_SHAPE, f"{label}: image shape {data.shape}, need (nband, H, W)")
        if file_bands is None:
            raise Rejected(MISSING_BANDS, f"{label}: no BANDS / BAND0.. header keys")
        if len(file_bands) != data.shape[0]:
            msg = f"{label}: BANDS={''.join(file_bands)!r} but image has {data.shape[0]} planes"
            raise Rejected(WRONG_SHAPE, msg)
        missing = [b for b in bands if b not in file_bands]
        if missing:
            raise Rejected(MISSING_BANDS, f"{label}: no {missing} in BANDS={file_bands}")
        h, w = data.shape[1:]
        if h < stamp_size or w < stamp_size:
            msg = f"{label}: cutout {h}x{w} smaller than stamp {stamp_size}"
            raise Rejected(WRONG_SHAPE, msg)
        if has_wcs(prim.header):
            check_header_wcs(prim.header, pixscale=pixscale, tolerance=pixscale_tolerance,
                             label=label)
        idx = [file_bands.index(b) for b in bands]
        image = crop_center(np.asarray(data)[idx], stamp_size).astype(np.float32)
        if not np.isfinite(image).all():
            n = int((~np.isfinite(image)).sum())
            raise Rejected(NON_FINITE, f"{label}: {n} NaN/inf image pixels")
        invvar = None
        ext = _find_ext(hdul, ("INVVAR", "IVAR"))
        if ext is None or ext.data is None:
            if require_invvar:
                raise Rejected(MISSING_HDU, f"{label}: no INVVAR extension")
        else:
            iv = ext.data
            if iv.dtype.kind != "f":
                raise Rejected(WRONG_DTYPE, f"{label}: INVVAR dtype {iv.dtype} (need float)")
            if iv.ndim == 2 and len(file_bands) == 1:
                iv = iv[None]
            if iv.shape != (len(file_bands), h, w):
                msg = f"{label}: INVVAR shape {iv.shape} != image {(len(file_bands), h, w)}"
                raise Rejected(WRONG_SHAPE, msg)
            invvar = crop_center(np.asarray(iv)[idx], stamp_size).astype(np.float32)
            if not np.isfinite(invvar).all():
                n = int((~np.isfinite(invvar)).sum())
                raise Rejected(NON_FINITE, f"{label}: {n} NaN/inf INVVAR pixels")
            if (invvar < 0).any():
                raise Rejected(BAD_INVVAR, f"{label}: negative INVVAR pixels")
        mext = _find_ext(hdul, ("MASKBITS",))
        if mext is None or mext.data is None:
            maskbits = np.zeros((stamp_size, stamp_size), np.int32)
        else:
            mb = mext.data
            if mb.dtype.kind not in "iu":
                raise Rejected(WRONG_DTYPE, f"{label}: MASKBITS dtype {mb.dtype} (need integer)")
            if mb.shape != (h, w):
                raise Rejected(WRONG_SHAPE, f"{label}: MASKBITS shape {mb.shape} != {(h, w)}")
            maskbits = crop_center(np.asarray(mb), stamp_size).astype(np.int32)
    return Cutout(image=np.ascontiguousarray(image), invvar=invvar, maskbits=maskbits)


def invvar_from_psfdepth(
    psfdepth_mag: np.ndarray, psfsize_arcsec: np.ndarray, *, pixscale: float
) -> np.ndarray:
    """Per-pixel inverse variance (nanomaggies^-2) implied by a 5-sigma point-source depth.

    ``sigma_flux = 10**((22.5 - depth) / 2.5) / 5`` (nanomaggies) and, for a Gaussian PSF of
    FWHM ``psfsize``, the noise-equivalent area is ``NEA = 4 pi sigma_psf^2`` pixels, so
    ``invvar_pix = NEA / sigma_flux^2``. Non-finite results (NaN depth) come out as 0.
    """
    depth = np.asarray(psfdepth_mag, dtype=np.float64)
    sig_psf = np.asarray(psfsize_arcsec, dtype=np.float64) / (2.0 * np.sqrt(2 * np.log(2)))
    nea = 4.0 * np.pi * (sig_psf / pixscale) ** 2
    sigma_flux = 10.0 ** ((22.5 - depth) / 2.5) / 5.0
    out = nea / sigma_flux**2
    return np.where(np.isfinite(out), out, 0.0).astype(np.float32)


def psfdepth_ivar_to_mag(ivar: np.ndarray) -> np.ndarray:
    """Tractor ``psfdepth`` inverse variance (nanomaggies^-2) -> 5-sigma AB mag (NaN if <= 0)."""
    iv = np.asarray(ivar, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = -2.5 * (np.log10(5.0 / np.sqrt(iv)) - 9.0)
    return np.where(iv > 0, mag, np.nan)


def write_cutout(
    path: str | Path,
    image: np.ndarray,
    *,
    bands,
    invvar: np.ndarray | None = None,
    maskbits: np.ndarray | None = None,
    header=None,
) -> Path:
    """Write a cutout in the ingest format, atomically (temp file in the same dir, rename).

    ``header`` (e.g. a WCS header) is merged into the primary header.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prim = fits.PrimaryHDU(np.asarray(image, dtype=np.float32))
    if header is not None:
        for card in fits.Header(header).cards:
            if card.keyword not in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3",
                                    "EXTEND", "BANDS", "") and not card.keyword.startswith("BAND"):
                prim.header[card.keyword] = (card.value, card.comment)
    bands = list(bands)
    prim.header["BANDS"] = "".join(bands)
    for i, b in enumerate(bands):
        prim.header[f"BAND{i}"] = b
    hdus = [prim]
    if invvar is not None:
        hdus.append(fits.ImageHDU(np.asarray(invvar, dtype=np.float32), name="INVVAR"))
    if maskbits is not None:
        hdus.append(fits.ImageHDU(np.asarray(maskbits, dtype=np.int32), name="MASKBITS"))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fits.HDUList(hdus).writeto(tmp, overwrite=True)
    os.replace(tmp, path)
    return path


__all__ = [
    "REASONS",
    "Cutout",
    "Rejected",
    "check_file",
    "check_magic",
    "check_pixscale",
    "celestial_wcs",
    "check_header_wcs",
    "crop_center",
    "header_bands",
    "invvar_from_psfdepth",
    "open_fits",
    "psfdepth_ivar_to_mag",
    "read_cutout",
    "resolve_roots",
    "resolve_within",
    "write_cutout",
]
