"""Brightness, arc signal-to-noise, visibility and mask-fraction kernels (DESIGN §4).

All functions take a whole chunk with a leading sample axis and return one value per sample.
Stamp geometry follows :mod:`gen5dask.kernels.geometry`: centre pixel ``(H//2, W//2)``, radius
``r`` in pixels, "inside R" means ``r < R`` and an annulus means ``r_in <= r < r_out``.
Images are fluxes in nanomaggies per pixel (AB zero point 22.5); inverse variances are in
nanomaggies^-2. Non-finite image pixels are left out of every median and sum.

Arc S/N and its inverse
-----------------------
``arc_snr`` (Collett 2015) sums the noise-free r-band arc ``a`` over ``A = {a >= sigma_pix}``:
``sum_A a / sqrt(sum_A 1/invvar)``. For an arc ``s * u`` (unit arc ``u``, amplitude ``s >= 0``),
pixel ``p`` (good, ``u_p > 0``) is in ``A`` iff ``s >= t_p = sigma_p / u_p``, so ``A`` grows with
``s`` and between two consecutive thresholds ``arc_snr = s * S_A / sqrt(V_A)`` is linear in ``s``.
**It is not monotone overall**: when a pixel enters ``A`` it adds ``~1`` sigma of signal and one
pixel of noise, so ``arc_snr`` jumps at every threshold -- *down* when the pixels already in ``A``
average more than ~2 sigma (bright arcs), *up* otherwise (the first pixel makes it jump from 0 to
1). Consequently some targets are skipped by an upward jump and are attained by no amplitude.
:func:`solve_amplitude_for_arc_snr` therefore returns the *smallest* amplitude with
``arc_snr >= target``, found exactly by walking the sorted thresholds; it attains the target
exactly whenever the first crossing falls inside a linear piece (the usual case) and otherwise
returns the threshold where the jump overshoots (report the ``arc_snr`` of the arc you actually
injected, never the target).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.geometry import (
    count_inside,
    gather_finite,
    median_of,
    radial_order,
    robust_loc_scale,
    stack_2d,
)

# ---------------------------------------------------------------------------------------------
# DR10 MASKBITS
# ---------------------------------------------------------------------------------------------

#: DR10 Legacy Surveys MASKBITS: name -> bit number.
MASKBITS: dict[str, int] = {
    "NPRIMARY": 0,
    "BRIGHT": 1,
    "SATUR_G": 2,
    "SATUR_R": 3,
    "SATUR_Z": 4,
    "ALLMASK_G": 5,
    "ALLMASK_R": 6,
    "ALLMASK_Z": 7,
    "WISEM1": 8,
    "WISEM2": 9,
    "BAILOUT": 10,
    "MEDIUM": 11,
    "GALAXY": 12,
    "CLUSTER": 13,
}

#: Bits counted by :func:`bad_pixel_frac`.
BAD_PIXEL_BITS: tuple[str, ...] = (
    "NPRIMARY",
    "BRIGHT",
    "SATUR_G",
    "SATUR_R",
    "SATUR_Z",
    "ALLMASK_G",
    "ALLMASK_R",
    "ALLMASK_Z",
    "BAILOUT",
    "MEDIUM",
)

#: Bits counted by :func:`wise_mask_frac`.
WISE_BITS: tuple[str, ...] = ("WISEM1", "WISEM2")


def bit_mask(names: tuple[str, ...] | list[str]) -> int:
    """OR of ``1 << MASKBITS[name]`` over ``names``; unknown names raise ``ValueError``."""
    value = 0
    for name in names:
        if name not in MASKBITS:
            msg = f"unknown MASKBITS name {name!r}; known: {sorted(MASKBITS)}"
            raise ValueError(msg)
        value |= 1 << MASKBITS[name]
    return value


BAD_PIXEL_MASK = bit_mask(BAD_PIXEL_BITS)  # 0b1100_1111_1111 = 3327
WISE_MASK = bit_mask(WISE_BITS)  # 0b11_0000_0000 = 768


class CoreBrightness(NamedTuple):
    """Result of :func:`core_brightness` (float64 ``(n,)`` each)."""

    median_core: np.ndarray
    """Median r-band flux of core pixels, nanomaggies per pixel."""
    excess_sum: np.ndarray
    """Sum over core pixels of (pixel - annulus median), nanomaggies (total)."""


class ArcSNR(NamedTuple):
    """Result of :func:`arc_snr` (float64 ``(n,)`` each, dimensionless)."""

    arc_snr: np.ndarray
    """Integrated S/N over ``A = {a >= sigma_pix}`` (0 if ``A`` is empty)."""
    arc_snr_peak: np.ndarray
    """``max(a * sqrt(invvar))`` over good pixels (0 if there is none)."""


class VisibilityProxy(NamedTuple):
    """Result of :func:`visibility_proxy` (float64 ``(n,)`` each, dimensionless)."""

    snr: np.ndarray
    """Ring residual energy / (1.4826 MAD(outer) sqrt(N_annulus)): a signal-to-noise."""
    per_pixel: np.ndarray
    """Ring residual energy / (1.4826 MAD(outer) N_annulus): the remediation plan's variant."""


def _check_radius(name: str, value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and value >= 0.0):
        msg = f"{name} must be finite and >= 0 (pixels), got {value!r}"
        raise ValueError(msg)
    return value


def _check_annulus(name: str, annulus: tuple[float, float]) -> tuple[float, float]:
    try:
        r_in, r_out = (float(v) for v in annulus)
    except (TypeError, ValueError):
        msg = f"{name} must be a pair (r_in, r_out) in pixels, got {annulus!r}"
        raise ValueError(msg) from None
    if not (np.isfinite(r_in) and np.isfinite(r_out) and 0.0 <= r_in < r_out):
        msg = f"{name} must satisfy 0 <= r_in < r_out (pixels), got {annulus!r}"
        raise ValueError(msg)
    return r_in, r_out


# ---------------------------------------------------------------------------------------------
# core brightness
# ---------------------------------------------------------------------------------------------


@jit
def _core_brightness_kernel(flat, order, n_core, a_lo, a_hi, buf, med_out, exc_out):
    for i in range(flat.shape[0]):
        img = flat[i]
        nc = gather_finite(img, order, 0, n_core, buf)
        if nc == 0:
            med_out[i] = np.nan
            exc_out[i] = np.nan
            continue
        core_sum = 0.0
        for k in range(nc):
            core_sum += buf[k]
        med_out[i] = median_of(buf, nc)
        na = gather_finite(img, order, a_lo, a_hi, buf)
        if na == 0:
            exc_out[i] = np.nan
        else:
            exc_out[i] = core_sum - nc * median_of(buf, na)


def core_brightness(
    images_r: np.ndarray,
    *,
    radius_pix: float = 8.0,
    annulus: tuple[float, float] = (8.0, 16.0),
) -> CoreBrightness:
    """Robust central brightness of r-band stamps.

    Parameters
    ----------
    images_r : numpy.ndarray
        ``(n, H, W)`` r-band flux, nanomaggies per pixel.
    radius_pix : float
        Core radius, pixels: the core is ``r < radius_pix``.
    annulus : tuple of float
        ``(r_in, r_out)``, pixels: the local background is the median over
        ``r_in <= r < r_out``.

    Returns
    -------
    CoreBrightness
        ``(median_core, excess_sum)``, float64 ``(n,)``: median of core pixels (nanomaggies per
        pixel) and ``sum_core (pixel - median(annulus))`` (nanomaggies). NaN where the core (or,
        for ``excess_sum``, the annulus) has no finite pixel.
    """
    stack, lead = stack_2d("images_r", images_r)
    radius_pix = _check_radius("radius_pix", radius_pix)
    r_in, r_out = _check_annulus("annulus", annulus)
    n, H, W = stack.shape
    order, r_sorted = radial_order(H, W)
    n_core = count_inside(r_sorted, radius_pix)
    a_lo = count_inside(r_sorted, r_in)
    a_hi = count_inside(r_sorted, r_out)
    med = np.empty(n, dtype=np.float64)
    exc = np.empty(n, dtype=np.float64)
    buf = np.empty(H * W, dtype=np.float64)
    _core_brightness_kernel(stack.reshape(n, H * W), order, n_core, a_lo, a_hi, buf, med, exc)
    return CoreBrightness(med.reshape(lead), exc.reshape(lead))


# ---------------------------------------------------------------------------------------------
# arc S/N
# ---------------------------------------------------------------------------------------------


def _arc_pair(arc_r: np.ndarray, invvar_r: np.ndarray, arc_name: str):
    arc, lead = stack_2d(arc_name, arc_r)
    iv, lead_iv = stack_2d("invvar_r", invvar_r)
    if arc.shape != iv.shape or lead != lead_iv:
        msg = (
            f"{arc_name} and invvar_r must have the same shape, got "
            f"{np.shape(arc_r)} and {np.shape(invvar_r)}"
        )
        raise ValueError(msg)
    n = arc.shape[0]
    return arc.reshape(n, -1), iv.reshape(n, -1), lead


@jit
def _arc_snr_kernel(arc, iv, snr_out, peak_out):
    for i in range(arc.shape[0]):
        s_sum = 0.0
        v_sum = 0.0
        peak = -np.inf
        ngood = 0
        for p in range(arc.shape[1]):
            ivp = np.float64(iv[i, p])
            if not (ivp > 0.0 and np.isfinite(ivp)):
                continue
            a = np.float64(arc[i, p])
            ngood += 1
            sq = np.sqrt(ivp)
            if a * sq > peak:
                peak = a * sq
            if a >= 1.0 / sq:
                s_sum += a
                v_sum += 1.0 / ivp
        snr_out[i] = s_sum / np.sqrt(v_sum) if v_sum > 0.0 else 0.0
        peak_out[i] = peak if ngood > 0 else 0.0


def arc_snr(arc_r: np.ndarray, invvar_r: np.ndarray) -> ArcSNR:
    """Integrated and peak signal-to-noise of noise-free r-band arcs (DESIGN §4).

    Good pixels have ``invvar > 0`` (finite); ``sigma_pix = 1 / sqrt(invvar)``;
    ``A = {good pixels with a >= sigma_pix}``.

    Parameters
    ----------
    arc_r : numpy.ndarray
        ``(n, H, W)`` noise-free, PSF-convolved r-band arc, nanomaggies per pixel.
    invvar_r : numpy.ndarray
        ``(n, H, W)`` r-band inverse variance, nanomaggies^-2 (0 = no data).

    Returns
    -------
    ArcSNR
        ``(arc_snr, arc_snr_peak)``, float64 ``(n,)``: ``sum_A a / sqrt(sum_A 1/invvar)`` (0 if
        ``A`` is empty) and ``max(a * sqrt(invvar))`` over good pixels (0 if none is good).
        Computed in float64 whatever the input dtype.
    """
    arc, iv, lead = _arc_pair(arc_r, invvar_r, "arc_r")
    n = arc.shape[0]
    snr = np.empty(n, dtype=np.float64)
    peak = np.empty(n, dtype=np.float64)
    _arc_snr_kernel(arc, iv, snr, peak)
    return ArcSNR(snr.reshape(lead), peak.reshape(lead))


@jit
def _sift_down_min(keys, idx, start, end):
    """Restore the min-heap order of ``keys[start:end + 1]`` below ``start`` (``idx`` follows)."""
    root = start
    while True:
        child = 2 * root + 1
        if child > end:
            return
        if child + 1 <= end and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] < keys[root]:
            tk = keys[root]
            keys[root] = keys[child]
            keys[child] = tk
            ti = idx[root]
            idx[root] = idx[child]
            idx[child] = ti
            root = child
        else:
            return


@jit
def _heapify_min(keys, idx, m):
    """Arrange ``keys[:m]`` (and ``idx[:m]`` alike) as a binary min-heap, O(m)."""
    for start in range((m - 2) // 2, -1, -1):
        _sift_down_min(keys, idx, start, m - 1)


@jit
def _pop_min(keys, idx, pos):
    """Move the heap minimum of ``keys[:pos + 1]`` to ``pos``; the heap shrinks to ``[0, pos)``.

    Popping at ``pos = m - 1, m - 2, ...`` leaves the ``j``-th smallest key at ``m - 1 - j``,
    and after each pop ``keys[0]`` is the next smallest (when ``pos > 0``).
    """
    if pos > 0:
        tk = keys[0]
        keys[0] = keys[pos]
        keys[pos] = tk
        ti = idx[0]
        idx[0] = idx[pos]
        idx[pos] = ti
        _sift_down_min(keys, idx, 0, pos - 1)


@jit
def _solve_kernel(arc, iv, target, thr, idx, out):
    for i in range(arc.shape[0]):
        tgt = target[i]
        if tgt <= 0.0:
            out[i] = 0.0
            continue
        m = 0
        for p in range(arc.shape[1]):
            ivp = np.float64(iv[i, p])
            a = np.float64(arc[i, p])
            if ivp > 0.0 and np.isfinite(ivp) and a > 0.0:
                thr[m] = (1.0 / np.sqrt(ivp)) / a
                idx[m] = p
                m += 1
        if m == 0:
            out[i] = np.inf
            continue
        # walk the thresholds in ascending order, popping them lazily from a min-heap: the
        # walk usually stops after the brightest few pixels, so it costs O(m + k log m) rather
        # than a full sort; the j-th smallest threshold lands at position m - 1 - j
        _heapify_min(thr, idx, m)
        s_sum = 0.0
        v_sum = 0.0
        res = np.inf
        last = 0
        jump = np.inf  # first upward jump over the target (used when no exact crossing exists)
        jump_last = 0
        for j in range(m):
            pos = m - 1 - j
            _pop_min(thr, idx, pos)
            p = idx[pos]
            s_sum += np.float64(arc[i, p])
            v_sum += 1.0 / np.float64(iv[i, p])
            t_next = thr[0] if pos > 0 else np.inf
            if t_next == thr[pos]:
                continue  # pixels entering together form one step
            s = tgt * np.sqrt(v_sum) / s_sum
            if s < thr[pos]:
                # f already exceeds the target on this whole piece (it jumped over it); a later
                # piece can come back down after a downward jump and cross it exactly
                if not np.isfinite(jump):
                    jump = thr[pos]
                    jump_last = j
                continue
            if s < t_next:
                res = s
                last = j
                break
        if not np.isfinite(res) and np.isfinite(jump):
            res = jump
            last = jump_last
        # make every pixel of the chosen set pass arc_snr's own test fl(s * a) >= sigma, which
        # rounding of the threshold t = sigma / a can miss by an ulp when s sits on a threshold
        if np.isfinite(res):
            ok = False
            tries = 0
            while not ok and tries < 64:  # a few ulps at most; the cap only guards the loop
                ok = True
                tries += 1
                for jj in range(last + 1):
                    p = idx[m - 1 - jj]
                    if res * np.float64(arc[i, p]) < 1.0 / np.sqrt(np.float64(iv[i, p])):
                        ok = False
                        res = np.nextafter(res, np.inf)
                        break
        out[i] = res


def solve_amplitude_for_arc_snr(
    arc_unit_r: np.ndarray,
    invvar_r: np.ndarray,
    target: float | np.ndarray,
) -> np.ndarray:
    """Source amplitude whose arc has a target integrated ``arc_snr``; exact when attainable.

    With ``f(s) = arc_snr(s * arc_unit_r, invvar_r)`` (piecewise linear with jumps where pixels
    enter ``A``; see the module docstring), returns the smallest ``s >= 0`` with
    ``f(s) == target`` when the target is attained on some linear piece, else (the target lies
    in a gap skipped by upward jumps) the smallest ``s`` with ``f(s) >= target``. Thresholds
    ``t_p = sigma_p / u_p`` are sorted and the linear equation ``s * S_k / sqrt(V_k) = target``
    solved piece by piece: no grid, no bisection; the thresholds come off a min-heap in
    ascending order only as far as the walk goes (``O(N + k log N)`` per sample, ``k`` the pixels
    walked).

    Parameters
    ----------
    arc_unit_r : numpy.ndarray
        ``(n, H, W)`` noise-free r-band arc for unit amplitude, nanomaggies per pixel per unit.
        Pixels ``<= 0`` never enter ``A``.
    invvar_r : numpy.ndarray
        ``(n, H, W)`` r-band inverse variance, nanomaggies^-2 (0 = no data).
    target : float or numpy.ndarray
        Target ``arc_snr`` (dimensionless), scalar or ``(n,)``; NaN is an error.

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)`` amplitude ``s``, with:

        * ``s = 0`` where ``target <= 0``;
        * ``s = inf`` where the target is unreachable, which happens only when no good pixel has
          ``arc_unit_r > 0`` (all-zero arc or no data); otherwise ``f(s) -> inf`` as ``s -> inf``;
        * ``f(s) == target`` (to rounding, ~1e-15 relative) whenever some linear piece attains
          it; only when every piece misses it (it falls in an upward jump, e.g. ``target < 1``
          is below the first non-zero value ``f = 1``) is ``s`` the threshold of the first jump
          over it and ``f(s) > target``.

        Exactness refers to ``arc_snr(s * arc_unit_r)`` evaluated in float64; rounding the
        scaled arc to float32 can move pixels sitting exactly at ``sigma_pix`` across the
        threshold.
    """
    arc, iv, lead = _arc_pair(arc_unit_r, invvar_r, "arc_unit_r")
    n = arc.shape[0]
    tgt = np.asarray(target, dtype=np.float64)
    if tgt.ndim == 0:
        tgt = np.full(n, float(tgt))
    else:
        tgt = tgt.reshape(-1)
        if tgt.shape != (n,):
            msg = f"target must be a scalar or have one value per sample ({n}), got {tgt.shape}"
            raise ValueError(msg)
    if np.isnan(tgt).any():
        i = int(np.flatnonzero(np.isnan(tgt))[0])
        msg = f"target arc_snr is NaN at row {i}"
        raise ValueError(msg)
    npix = arc.shape[1]
    thr = np.empty(npix, dtype=np.float64)
    idx = np.empty(npix, dtype=np.int64)
    out = np.empty(n, dtype=np.float64)
    _solve_kernel(arc, iv, np.ascontiguousarray(tgt), thr, idx, out)
    return out.reshape(lead)


# ---------------------------------------------------------------------------------------------
# visibility proxy
# ---------------------------------------------------------------------------------------------

#: Lens-light models accepted by :func:`visibility_proxy`.
VISIBILITY_MODELS = ("azimuthal_median", "none")


@jit
def _visibility_kernel(
    flat, order, r_sorted, a_lo, a_hi, o_lo, bin_width, azimuthal, buf, snr_out, pp_out
):
    npix = flat.shape[1]
    for i in range(flat.shape[0]):
        img = flat[i]
        no = gather_finite(img, order, o_lo, npix, buf)
        med_o, sig, std = robust_loc_scale(buf, no)
        if not sig > 0.0:
            sig = std
        energy = 0.0
        n_ann = 0
        if azimuthal:
            k = a_lo
            while k < a_hi:
                # one radial bin [b w, (b+1) w) is a contiguous run of the radial order
                b = np.floor(r_sorted[k] / bin_width)
                b_lo = count_inside(r_sorted, b * bin_width)
                b_hi = count_inside(r_sorted, (b + 1.0) * bin_width)
                if b_hi <= k:  # guard against rounding of the bin edge
                    b_hi = k + 1
                nb = gather_finite(img, order, b_lo, b_hi, buf)
                med_b = median_of(buf, nb)
                stop = min(b_hi, a_hi)
                for kk in range(k, stop):
                    v = img[order[kk]]
                    if np.isfinite(v):
                        energy += v - med_b
                        n_ann += 1
                k = stop
        else:
            for kk in range(a_lo, a_hi):
                v = img[order[kk]]
                if np.isfinite(v):
                    energy += v - med_o
                    n_ann += 1
        if n_ann == 0 or not (sig > 0.0) or not np.isfinite(med_o):
            snr_out[i] = np.nan
            pp_out[i] = np.nan
        else:
            snr_out[i] = energy / (sig * np.sqrt(n_ann))
            pp_out[i] = energy / (sig * n_ann)


def visibility_proxy(
    images_r: np.ndarray,
    *,
    r_in: float = 4.0,
    r_out: float = 16.0,
    model: str = "azimuthal_median",
    bin_width_pix: float = 1.0,
) -> VisibilityProxy:
    """Arc visibility proxy for real lenses without a truth arc (DESIGN §4).

    Ring energy ``E = sum over r_in <= r < r_out of (cutout - model)`` divided by the outer noise
    ``sigma = 1.4826 * MAD(cutout[r >= r_out])``: ``snr = E / (sigma sqrt(N))`` and
    ``per_pixel = E / (sigma N)`` with ``N`` the number of (finite) annulus pixels.

    Lens-light models:

    * ``"azimuthal_median"`` (default): the model at a pixel is the median of the cutout over its
      circular radial bin ``floor(r / bin_width_pix)`` (sky included, so no separate outer-median
      subtraction is needed). It removes any circularly symmetric light -- the lens galaxy's
      round part *and any complete, uniform ring*, which therefore scores ~0 -- while an arc
      covering less than half of a bin's azimuth leaves the median and survives. Elliptical lens
      light leaves a quadrupole residual (positive along the major axis, negative along the
      minor) that largely cancels in ``E``.
    * ``"none"``: the model is the outer median only (the remediation plan's form); lens light
      and rings both count as signal.

    Parameters
    ----------
    images_r : numpy.ndarray
        ``(n, H, W)`` r-band cutouts, nanomaggies per pixel.
    r_in, r_out : float
        Annulus radii, pixels; the outer (noise) region is ``r >= r_out``.
    model : {"azimuthal_median", "none"}
        Lens-light model (above).
    bin_width_pix : float
        Width of the radial bins of ``"azimuthal_median"``, pixels (> 0).

    Returns
    -------
    VisibilityProxy
        ``(snr, per_pixel)``, float64 ``(n,)``, dimensionless. When the outer MAD is 0 the outer
        standard deviation is used; NaN when that is 0 too, or the annulus or outer region has
        no finite pixel.
    """
    if model not in VISIBILITY_MODELS:
        msg = f"model must be one of {VISIBILITY_MODELS}, got {model!r}"
        raise ValueError(msg)
    r_in, r_out = _check_annulus("(r_in, r_out)", (r_in, r_out))
    bin_width_pix = float(bin_width_pix)
    if not (np.isfinite(bin_width_pix) and bin_width_pix > 0.0):
        msg = f"bin_width_pix must be finite and > 0 (pixels), got {bin_width_pix!r}"
        raise ValueError(msg)
    stack, lead = stack_2d("images_r", images_r)
    n, H, W = stack.shape
    order, r_sorted = radial_order(H, W)
    a_lo = count_inside(r_sorted, r_in)
    a_hi = count_inside(r_sorted, r_out)
    if a_hi >= H * W:
        msg = f"visibility_proxy: no pixel with r >= r_out={r_out} in a {H}x{W} stamp"
        raise ValueError(msg)
    snr = np.empty(n, dtype=np.float64)
    pp = np.empty(n, dtype=np.float64)
    buf = np.empty(H * W, dtype=np.float64)
    _visibility_kernel(
        stack.reshape(n, H * W),
        order,
        r_sorted,
        a_lo,
        a_hi,
        a_hi,
        bin_width_pix,
        model == "azimuthal_median",
        buf,
        snr,
        pp,
    )
    return VisibilityProxy(snr.reshape(lead), pp.reshape(lead))


# ---------------------------------------------------------------------------------------------
# mask fractions
# ---------------------------------------------------------------------------------------------


@jit
def _bit_fraction_kernel(bits, mask, out):
    for i in range(bits.shape[0]):
        c = 0
        for p in range(bits.shape[1]):
            if bits[i, p] & mask:
                c += 1
        out[i] = c / bits.shape[1] if bits.shape[1] > 0 else 0.0


def _bit_fraction(maskbits: np.ndarray, mask: int) -> np.ndarray:
    mb = np.asarray(maskbits)
    if mb.ndim < 2 or not np.issubdtype(mb.dtype, np.integer):
        msg = f"maskbits must be an integer (int32) array (n, H, W), got {mb.dtype} {mb.shape}"
        raise ValueError(msg)
    lead = mb.shape[:-2]
    flat = np.ascontiguousarray(mb).reshape(-1, mb.shape[-2] * mb.shape[-1])
    out = np.empty(flat.shape[0], dtype=np.float64)
    _bit_fraction_kernel(flat, flat.dtype.type(mask), out)
    return out.reshape(lead)


def bad_pixel_frac(maskbits: np.ndarray) -> np.ndarray:
    """Fraction of stamp pixels with any of :data:`BAD_PIXEL_BITS` set.

    Parameters
    ----------
    maskbits : numpy.ndarray
        int32 ``(n, H, W)`` DR10 MASKBITS.

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)`` in [0, 1].
    """
    return _bit_fraction(maskbits, BAD_PIXEL_MASK)


def wise_mask_frac(maskbits: np.ndarray) -> np.ndarray:
    """Fraction of stamp pixels with WISEM1 or WISEM2 (bits 8, 9) set; float64 ``(n,)``."""
    return _bit_fraction(maskbits, WISE_MASK)


__all__ = [
    "BAD_PIXEL_BITS",
    "BAD_PIXEL_MASK",
    "MASKBITS",
    "VISIBILITY_MODELS",
    "WISE_BITS",
    "WISE_MASK",
    "ArcSNR",
    "CoreBrightness",
    "VisibilityProxy",
    "arc_snr",
    "bad_pixel_frac",
    "bit_mask",
    "core_brightness",
    "solve_amplitude_for_arc_snr",
    "visibility_proxy",
    "wise_mask_frac",
]
