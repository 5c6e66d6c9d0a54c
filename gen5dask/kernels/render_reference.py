"""Slow, obvious numpy reference of the lensed-Sersic renderer (tests and benchmarks only)."""

from __future__ import annotations

import numpy as np

from gen5dask.kernels import psf as _psf
from gen5dask.kernels.lensing import sie_shear_deflection
from gen5dask.kernels.profiles import sersic_bn, sersic_total_flux


def reference_render_lensed_sersic(
    *,
    stamp_size: int,
    pixscale: float,
    theta_e,
    lens_q,
    lens_pa,
    shear_g1,
    shear_g2,
    src_x,
    src_y,
    src_reff,
    src_n,
    src_q,
    src_pa,
    src_flux_bands,
    psf_fwhm_arcsec,
    psf_beta: float = 3.5,
    supersample: int = 3,
):
    """Slow, obvious numpy reference of :func:`render_lensed_sersic` (stamp only).

    Uniform ``supersample x supersample`` midpoint sampling of every pixel of the stamp plus
    the PSF margin, an untruncated Sersic, and ``psf.convolve`` per band. No magnification.

    Returns
    -------
    numpy.ndarray
        float64 ``(n, nband, H, H)``, nanomaggies per pixel.
    """
    theta_e = np.atleast_1d(np.asarray(theta_e, dtype=np.float64))
    n = theta_e.shape[0]
    flux = np.asarray(src_flux_bands, dtype=np.float64).reshape(n, -1)
    fwhm = np.asarray(psf_fwhm_arcsec, dtype=np.float64).reshape(n, -1)
    _psf.check_fwhm(fwhm)
    args = [
        np.broadcast_to(np.asarray(a, dtype=np.float64), (n,))
        for a in (lens_q, lens_pa, shear_g1, shear_g2, src_x, src_y, src_reff, src_n, src_q,
                  src_pa)
    ]
    lq, lpa, g1, g2, sx, sy, reff, sn, sq, spa = args
    h = int(stamp_size)
    out = np.zeros((n, flux.shape[1], h, h))
    s = int(supersample)
    for i in range(n):
        k = max(int(_psf.moffat_size(f / pixscale, psf_beta)) for f in fwhm[i])
        m = k // 2
        idx = np.arange(-(h // 2) - m, h - h // 2 + m)
        sub = (np.arange(s) + 0.5) / s - 0.5
        coords = (idx[:, None] + sub[None, :]).ravel() * pixscale
        yy, xx = np.meshgrid(coords, coords, indexing="ij")
        ax, ay = sie_shear_deflection(xx, yy, theta_e[i], lq[i], lpa[i], g1[i], g2[i])
        dx, dy = xx - ax - sx[i], yy - ay - sy[i]
        xp = np.cos(spa[i]) * dx + np.sin(spa[i]) * dy
        yp = -np.sin(spa[i]) * dx + np.cos(spa[i]) * dy
        r = np.sqrt(sq[i] * xp**2 + yp**2 / sq[i])
        bn = sersic_bn(sn[i])
        unit = np.exp(-bn * ((r / reff[i]) ** (1.0 / sn[i]) - 1.0))
        npix = idx.size
        img = unit.reshape(npix, s, npix, s).mean(axis=(1, 3)) * pixscale**2
        funit = sersic_total_flux(1.0, reff[i], sn[i])
        for b in range(flux.shape[1]):
            ker = _psf.moffat_kernel(fwhm[i, b] / pixscale, psf_beta, size=k)
            conv = _psf.convolve(img, ker) * flux[i, b] / funit
            out[i, b] = conv[m : m + h, m : m + h]
    return out


__all__ = ["reference_render_lensed_sersic"]
