"""Per-sample, per-band PSF kernel stacks for the renderers and the final convolution."""

from __future__ import annotations

import numpy as np

from gen5dask.kernels import psf as _psf


def psf_kernel_stack(psf_fwhm_arcsec, n, nband, pixscale, psf_beta, bands, psf_kernels):
    """Normalised ``(n, nband, K, K)`` PSF kernels (odd ``K``).

    Supplied ``psf_kernels`` are validated and normalised (:func:`psf.normalise_psf_image`);
    otherwise Moffat kernels of FWHM ``psf_fwhm_arcsec`` (arcsec, shape ``(n, nband)``) and
    ``psf_beta`` share the largest default size of the chunk. Errors name sample and band.
    """
    if psf_kernels is not None:
        ker = np.asarray(psf_kernels, dtype=np.float64)
        if ker.ndim != 4 or ker.shape[:2] != (n, nband) or ker.shape[2] != ker.shape[3]:
            msg = f"psf_kernels must have shape ({n}, {nband}, K, K), got {ker.shape}"
            raise ValueError(msg)
        if ker.shape[2] % 2 == 0:
            msg = f"psf_kernels side {ker.shape[2]} must be odd (centred)"
            raise ValueError(msg)
        out = np.empty_like(ker)
        for i in range(n):
            for b in range(nband):
                out[i, b] = _psf.normalise_psf_image(ker[i, b], name=f"psf_kernels[{i}, {b}]")
        return out
    fwhm = np.asarray(psf_fwhm_arcsec, dtype=np.float64)
    if fwhm.shape != (n, nband):
        msg = f"psf_fwhm_arcsec must have shape ({n}, {nband}), got {fwhm.shape}"
        raise ValueError(msg)
    _psf.check_fwhm(fwhm, bands=bands)
    psf_beta = float(psf_beta)
    if not (np.isfinite(psf_beta) and psf_beta > 1.0):
        msg = f"psf_beta={psf_beta!r} must be finite and > 1"
        raise ValueError(msg)
    fwhm_pix = fwhm / pixscale
    k = int(np.max(_psf.moffat_size(fwhm_pix, psf_beta))) if n else 3
    out = np.empty((n, nband, k, k))
    _psf.moffat_fill_batch(out, fwhm_pix, psf_beta)
    return out


def convolve_to_stamps(region, kernels, amplitudes, stamp_size: int, *, workers: int = 1):
    """Band images ``(n, nband, H, H)`` float32: ``region`` convolved and scaled per band.

    ``region`` is the unit-amplitude unconvolved image on the stamp plus a ``K // 2`` margin;
    ``amplitudes`` ``(n, nband)`` the per-band factors (:func:`psf.convolve_bands`).
    """
    arc = _psf.convolve_bands(
        region, kernels, amplitudes, stamp_shape=(stamp_size, stamp_size), workers=workers
    )
    return arc.astype(np.float32)



__all__ = ["convolve_to_stamps", "psf_kernel_stack"]
