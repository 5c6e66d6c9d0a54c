"""Arc colours measured in the anchors' annuli: the colour law of calibrated injections.

Bright deflector light that the azimuthal median leaves (elliptical residuals) is measured with
the arc and reddens it: on mock anchors in host-like deflectors (``configs/closed_loop.yaml``)
the measured g-r is ~0.7 mag redder than the true source colour, while behind the demo's faint
Tier-A deflector cores the median per-anchor error is 0.03 mag (numbers in README).

Lensing is achromatic, so an arc has its source's colours (up to the bands' PSF differences).
The plan's step 1 measures the real lenses; a published measurement of 388 DESI Tier-A lenses
found arc colours ``g-r = 1.23 +- 0.39`` and ``r-z = 0.95 +- 0.27`` in their annuli (realism-gap
study of DR10 lens finders, 2026), far redder than blue-source injection priors.

:func:`measure_arc_colours` does that measurement on any anchor store, per anchor:

1. lens-light model per band: the azimuthal median of the cutout in 1-pixel radial bins (as
   :func:`gen5dask.kernels.photometry.visibility_proxy`), subtracted;
2. arc pixels: annulus ``r_in <= r < r_out`` pixels where a detection map -- the 3x3 box mean
   of the band-summed S/N maps (each band's residual over its outer noise, ``1.4826 MAD`` of
   ``r >= r_out``), in units of its own noise -- exceeds ``threshold_sigma``. Selecting on one
   band would let that band's noise choose the pixels and bias the colours (measured on the
   mock anchors with an r-band selection: g-r +1.1 mag too red, r-z 0.9 mag too blue);
3. arc flux per band: the residual summed over those pixels, with its error from the per-band
   outer noise; colours ``-2.5 log10`` of the flux ratios where every flux is positive and the
   r flux has S/N >= ``min_snr``.

:func:`colour_law_from` turns the usable anchors into a :class:`~gen5dask.injection.laws.
ColourLaw`: the median colour and the robust scatter (``1.4826 MAD``) with the median measurement
error removed in quadrature (never below ``min_std`` mag).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gen5dask.injection.laws import ColourLaw

__all__ = ["colour_law_from", "measure_arc_colours"]


def _azimuthal_residual(img: np.ndarray, rbin: np.ndarray, nbins: int,
                        keep: np.ndarray | None = None) -> np.ndarray:
    """``img - median over the pixel's radial bin`` for one ``(H, W)`` plane (NaN-aware); with
    ``keep`` (bool, flat) the medians use only those pixels (arc pixels masked out)."""
    flat = img.ravel()
    model = np.zeros(nbins)
    for b in range(nbins):
        inb = rbin == b
        v = flat[inb & keep] if keep is not None else flat[inb]
        if keep is not None and v.size < 0.25 * inb.sum():
            v = flat[inb]  # a bin almost all arc: fall back to every pixel
        v = v[np.isfinite(v)]
        model[b] = np.median(v) if v.size else 0.0
    return (flat - model[rbin]).reshape(img.shape)


#: passes of (model, detect, mask): the first model is the plain azimuthal median, which an arc
#: covering a fair part of its bins lifts by ~1 sigma per pixel in every band (the faint band loses
#: most: g-r biased red); later models leave the detected arc pixels out.
N_MODEL_ITER = 3
#: detection level (detection-map sigmas) of the pixels masked from the lens-light model
MASK_SIGMA = 1.5


def _outer_sigma(o: np.ndarray) -> float:
    o = o[np.isfinite(o)]
    if not o.size:
        return float("nan")
    s = 1.4826 * np.median(np.abs(o - np.median(o)))
    return float(s if s > 0 else np.std(o))


def _detection(res: dict, sig: dict, shape: tuple[int, int]) -> np.ndarray:
    """Detection map in units of its own noise: the 3x3 box mean of the band-summed S/N maps
    ``sum_b res_b / sigma_b``, divided by its outer noise ``sqrt(3 bands / 9 pixels)`` for white
    noise. Selecting on every band at once, smoothed, keeps the noise of any one band from
    choosing the pixels (selecting on r alone boosts the r flux and biases g-r red, r-z blue)."""
    chi = sum(np.nan_to_num(res[b] / sig[b]) for b in res).reshape(shape)
    pad = np.pad(chi, 1, mode="edge")
    box = sum(pad[dy:dy + shape[0], dx:dx + shape[1]] for dy in range(3) for dx in range(3)) / 9.0
    return (box / np.sqrt(len(res) / 9.0)).ravel()


def measure_arc_colours(
    images: np.ndarray,
    bands: Sequence[str],
    *,
    r_in: float = 4.0,
    r_out: float = 16.0,
    threshold_sigma: float = 2.0,
    min_snr: float = 5.0,
) -> dict[str, np.ndarray]:
    """Arc fluxes and colours of anchors (see the module docstring).

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, n_bands, H, W)`` cutouts, nanomaggies per pixel; ``bands`` must contain g, r, z.
    bands : sequence of str
        Band of each plane.
    r_in, r_out : float
        Annulus radii, pixels; the noise region is ``r >= r_out``.
    threshold_sigma : float
        Arc pixels have a detection map above this many of its noise sigmas.
    min_snr : float
        A colour is kept when the r-band arc flux has at least this S/N.

    Returns
    -------
    dict
        float64 ``(n,)``: ``g_r``, ``r_z`` (mag; NaN where unusable), ``g_r_err``, ``r_z_err``
        (mag, first-order), ``snr_r`` (S/N of the r-band arc flux), ``n_pix`` (int64).
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        msg = f"images must be (n, n_bands, H, W), got shape {x.shape}"
        raise ValueError(msg)
    bands = list(bands)
    missing = [b for b in ("g", "r", "z") if b not in bands]
    if missing:
        msg = f"arc colours need bands g, r, z; missing {missing} (bands {bands})"
        raise ValueError(msg)
    if not 0 <= r_in < r_out:
        msg = f"annulus must satisfy 0 <= r_in < r_out, got {(r_in, r_out)}"
        raise ValueError(msg)
    n, _, H, W = x.shape
    y, xx = np.indices((H, W))
    r = np.hypot(y - H // 2, xx - W // 2)
    rbin = np.floor(r).astype(np.int64).ravel()
    nbins = int(rbin.max()) + 1
    ann = ((r >= r_in) & (r < r_out)).ravel()
    outer = (r >= r_out).ravel()
    if not outer.any():
        msg = f"no pixel with r >= r_out={r_out} in a {H}x{W} stamp"
        raise ValueError(msg)
    ib = {b: bands.index(b) for b in ("g", "r", "z")}
    flux = {b: np.full(n, np.nan) for b in ib}
    err = {b: np.full(n, np.nan) for b in ib}
    n_pix = np.zeros(n, dtype=np.int64)
    for i in range(n):
        keep = None
        for _ in range(N_MODEL_ITER):  # the arc pixels of one pass are masked from the next model
            res = {b: _azimuthal_residual(x[i, k], rbin, nbins, keep).ravel()
                   for b, k in ib.items()}
            sig = {b: _outer_sigma(res[b][outer]) for b in ib}
            if any(not (np.isfinite(sig[b]) and sig[b] > 0) for b in ib):
                break
            det = _detection(res, sig, (H, W))
            keep = ~(np.isfinite(det) & (det > MASK_SIGMA))
        if any(not (np.isfinite(sig[b]) and sig[b] > 0) for b in ib):
            continue
        sel = ann & np.isfinite(det) & (det > threshold_sigma)
        for b in ib:
            sel &= np.isfinite(res[b])
        n_pix[i] = int(sel.sum())
        if n_pix[i] == 0:
            continue
        for b in ib:
            flux[b][i] = res[b][sel].sum()
            err[b][i] = sig[b] * np.sqrt(n_pix[i])
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_r = flux["r"] / err["r"]
        ok = (snr_r >= min_snr) & (flux["g"] > 0) & (flux["z"] > 0)
        k = 2.5 / np.log(10.0)
        g_r = np.where(ok, -2.5 * np.log10(flux["g"] / flux["r"]), np.nan)
        r_z = np.where(ok, -2.5 * np.log10(flux["r"] / flux["z"]), np.nan)
        rel = {b: err[b] / flux[b] for b in ib}
        g_r_err = np.where(ok, k * np.hypot(rel["g"], rel["r"]), np.nan)
        r_z_err = np.where(ok, k * np.hypot(rel["r"], rel["z"]), np.nan)
    return {"g_r": g_r, "r_z": r_z, "g_r_err": g_r_err, "r_z_err": r_z_err,
            "snr_r": snr_r, "n_pix": n_pix}


def _robust(v: np.ndarray, e: np.ndarray, min_std: float) -> tuple[float, float, float]:
    med = float(np.median(v))
    scatter = float(1.4826 * np.median(np.abs(v - med)))
    e_med = float(np.median(e))
    return med, float(max(np.sqrt(max(scatter**2 - e_med**2, 0.0)), min_std)), scatter


def colour_law_from(measured: dict[str, np.ndarray], *, min_anchors: int = 5,
                    min_std: float = 0.05) -> tuple[ColourLaw, dict]:
    """Colour law of the anchors with usable colours (see the module docstring).

    Returns the :class:`ColourLaw` and a summary (``n_used``, per colour the median, the
    observed scatter and the intrinsic std adopted). Raises ``ValueError`` naming the count when
    fewer than ``min_anchors`` anchors have usable colours.
    """
    ok = np.isfinite(measured["g_r"]) & np.isfinite(measured["r_z"])
    if ok.sum() < min_anchors:
        msg = (f"arc colours: only {int(ok.sum())} anchors have a measurable arc in g, r and z "
               f"(need {min_anchors}); use calibrate.colours: prior")
        raise ValueError(msg)
    gr = _robust(measured["g_r"][ok], measured["g_r_err"][ok], min_std)
    rz = _robust(measured["r_z"][ok], measured["r_z_err"][ok], min_std)
    law = ColourLaw(gr_mean=gr[0], gr_std=gr[1], rz_mean=rz[0], rz_std=rz[1])
    summary = {"n_used": int(ok.sum()), "n_anchors": int(ok.size),
               "g_r_median": gr[0], "g_r_scatter_observed": gr[2], "g_r_std": gr[1],
               "r_z_median": rz[0], "r_z_scatter_observed": rz[2], "r_z_std": rz[1]}
    return law, summary
