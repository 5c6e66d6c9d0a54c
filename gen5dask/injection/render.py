"""Batch rendering of unit-flux lensed arcs (Sersic or real-galaxy sources), bit-stable.

The renderers size their PSF kernels and margins by the largest kernel of a batch (and the
real-galaxy renderer its magnification grid by the source-stack shape), which changes results at
the float-rounding level with a batch's composition; :func:`render_unit_arcs` therefore renders
each group of equal PSF-kernel side (and source-image shape) separately, so every arc is a
function of its own inputs only (bit-identical for any chunking).
"""

from __future__ import annotations

import numpy as np

from gen5dask.kernels.psf import moffat_size
from gen5dask.kernels.render import render_lensed_image, render_lensed_sersic

#: lens and source parameters of a Sersic source, in the renderer's keyword names.
SERSIC_KEYS = ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y",
               "src_reff", "src_n", "src_q", "src_pa")
#: the same for an image source.
IMAGE_KEYS = ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y", "src_pa")


def render_unit_arcs(model, par, unit, psf, *, stamp_size: int, pixscale: float, bands):
    """Lensed, PSF-convolved arcs of a batch.

    Parameters
    ----------
    model : gen5dask.injection.spec.InjectionModel
        Source kind, PSF beta and supersampling.
    par : dict of str to numpy.ndarray
        Lens and source parameters (:func:`gen5dask.injection.laws.draw_injection_params`).
    unit : numpy.ndarray
        ``(n, nband)`` source flux per band, nanomaggies (r = 1 for unit arcs).
    psf : numpy.ndarray
        ``(n, nband)`` PSF FWHM, arcsec.

    Returns
    -------
    arc : numpy.ndarray
        float32 ``(n, nband, H, W)``, nanomaggies per pixel.
    magnification : numpy.ndarray
        float64 ``(n,)``.
    """
    n = unit.shape[0]
    bands = list(bands)
    psf = np.asarray(psf, dtype=np.float64)
    kside = np.asarray(moffat_size(psf / pixscale, model.psf_beta)).reshape(n, -1).max(axis=1)
    arc = np.empty((n, len(bands), stamp_size, stamp_size), dtype=np.float32)
    mag = np.empty(n, dtype=np.float64)
    common = {"stamp_size": int(stamp_size), "pixscale": float(pixscale),
              "psf_beta": model.psf_beta, "supersample": model.supersample, "bands": bands}
    if model.source is None:
        for k in np.unique(kside):
            g = np.flatnonzero(kside == k)
            arc[g], mag[g] = render_lensed_sersic(
                **{name: par[name][g] for name in SERSIC_KEYS},
                src_flux_bands=unit[g], psf_fwhm_arcsec=psf[g], **common,
            )
        return arc, mag
    srcs = [model.source.image(int(k)) for k in par["src_index"]]
    shape = np.array([s[0].shape for s in srcs], dtype=np.int64).reshape(n, 2)
    spix = np.array([s[1] for s in srcs], dtype=np.float64)
    keys = np.column_stack([kside, shape])
    for key in np.unique(keys, axis=0):
        g = np.flatnonzero(np.all(keys == key, axis=1))
        arc[g], mag[g] = render_lensed_image(
            **{name: par[name][g] for name in IMAGE_KEYS},
            src_image=np.stack([srcs[i][0] for i in g]), src_pixscale=spix[g],
            src_flux_bands=unit[g], psf_fwhm_arcsec=psf[g], **common,
        )
    return arc, mag


__all__ = ["IMAGE_KEYS", "SERSIC_KEYS", "render_unit_arcs"]
