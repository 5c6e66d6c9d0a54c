"""Lens-light subtraction of flux stamps: the network's optional residual input (DESIGN §4).

A lens finder has to see a faint arc on top of a deflector that is often 10-100x brighter per
pixel. :func:`subtract_lens_light` removes the round part of that light before the stamp is
normalised, so the network is shown the residual instead of learning the subtraction from
data (``train.lens_light``):

* ``"azimuthal_median"``: the model at a pixel is the median of the finite pixels of the same
  band in its circular radial bin ``floor(r / 1 px)`` about the centre pixel ``(H//2, W//2)``
  (sky included) -- the lens-light model of the visibility proxy
  (:func:`gen5dask.kernels.photometry.visibility_proxy`). It removes any circularly symmetric
  light: the deflector's round part, the sky, *and a complete uniform ring* (a near-ring arc
  keeps only its azimuthal variation), while an arc covering less than half of a bin's
  azimuth survives whole. Elliptical deflectors leave a quadrupole residual.
* ``"none"``: the stamp unchanged.

The profile (one median per band and radial bin, :func:`lens_light_profile`) is rounded to
float32, so a profile cached once per store (:mod:`gen5dask.train.normstats`) and one computed
on the spot give bit-identical residuals ``float32(x - profile[bin])``
(:func:`subtract_profile`); a non-finite pixel stays non-finite (the normalisation writes it as
0) and a bin with no finite pixel is left as it is. The radial bins are invariant under the
8 D4 symmetries about the centre pixel, so subtracting before or after a rotation/flip is the
same.
"""

from __future__ import annotations

import functools

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.geometry import count_inside_many, gather_finite, median_of, radial_order

#: lens-light models accepted by :func:`subtract_lens_light` (``train.lens_light``)
LENS_LIGHT_MODELS = ("none", "azimuthal_median")
#: width of the radial bins of ``"azimuthal_median"``, pixels
BIN_WIDTH_PIX = 1.0


@jit
def _profile_kernel(src, planes, order, starts, buf, prof):
    for t in range(planes.size):
        img = src[planes[t]]
        for b in range(starts.size - 1):
            n = gather_finite(img, order, starts[b], starts[b + 1], buf)
            prof[t, b] = median_of(buf, n) if n > 0 else np.nan


@jit
def _subtract_kernel(flat, planes, prof, pix_bin):
    """In place: ``flat[plane] -= prof[t][bin]`` (float64 arithmetic), NaN bins untouched."""
    for t in range(planes.size):
        img = flat[planes[t]]
        pr = prof[t]
        for p in range(img.size):
            m = pr[pix_bin[p]]
            if np.isfinite(m):
                img[p] = img[p] - np.float64(m)


@functools.lru_cache(maxsize=16)
def _bins(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Radial-bin starts in the radial order (``nbins + 1`` entries) and each flat pixel's bin."""
    order, r_sorted = radial_order(H, W)
    n_bins = int(np.floor(float(r_sorted[-1]) / BIN_WIDTH_PIX)) + 1
    edges = np.arange(n_bins + 1, dtype=np.float64) * BIN_WIDTH_PIX
    starts = count_inside_many(r_sorted, edges)
    starts[-1] = H * W
    pix_bin = np.empty(H * W, np.int64)
    for b in range(n_bins):
        pix_bin[order[starts[b]:starts[b + 1]]] = b
    starts.setflags(write=False)
    pix_bin.setflags(write=False)
    return starts, pix_bin


def n_profile_bins(model: str, H: int, W: int) -> int:
    """Length of a plane's lens-light profile for ``model`` on ``H x W`` stamps (0 for none)."""
    _check_model(model)
    return 0 if model == "none" else int(_bins(H, W)[0].size - 1)


def _check_model(model: str) -> None:
    if model not in LENS_LIGHT_MODELS:
        msg = f"lens-light model must be one of {LENS_LIGHT_MODELS}, got {model!r}"
        raise ValueError(msg)


def _check_images(name: str, x: np.ndarray, rows: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 4:
        msg = f"{name}: images must be (n, nband, H, W), got shape {x.shape}"
        raise ValueError(msg)
    n = x.shape[0]
    sel = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    if sel.size and (sel.min() < 0 or sel.max() >= n):
        msg = f"{name}: rows must lie in [0, {n}), got {sel.min()}..{sel.max()}"
        raise ValueError(msg)
    return sel, (sel[:, None] * x.shape[1] + np.arange(x.shape[1], dtype=np.int64)).ravel()


def lens_light_profile(
    images: np.ndarray, model: str = "azimuthal_median", *, rows: np.ndarray | None = None
) -> np.ndarray:
    """Radial lens-light profile of each plane (module docstring), float32.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, nband, H, W)`` flux, nanomaggies.
    model : {"none", "azimuthal_median"}
        Lens-light model.
    rows : numpy.ndarray, optional
        Sample rows to profile (default all).

    Returns
    -------
    numpy.ndarray
        float32 ``(k, nband, nbins)``: the median flux of radial bin ``b`` (``[b, b + 1)`` px),
        nanomaggies, NaN where the bin has no finite pixel; ``nbins`` is 0 for ``"none"``.
    """
    _check_model(model)
    x = np.asarray(images)
    sel, planes = _check_images("lens_light_profile", x, rows)
    n, nb, H, W = x.shape
    nbins = n_profile_bins(model, H, W)
    prof = np.empty((sel.size * nb, nbins), np.float64)
    if nbins and sel.size:
        starts, _ = _bins(H, W)
        src = np.ascontiguousarray(x).reshape(n * nb, H * W)
        _profile_kernel(src, planes, radial_order(H, W).order, starts,
                        np.empty(H * W, np.float64), prof)
    return prof.astype(np.float32).reshape(sel.size, nb, nbins)


def subtract_profile(
    images: np.ndarray,
    profile: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``float32(images - profile[bin])`` for rows ``rows`` (a NaN bin is left unchanged).

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, nband, H, W)`` flux, nanomaggies.
    profile : numpy.ndarray
        float32 ``(k, nband, nbins)`` profiles of rows ``rows`` (:func:`lens_light_profile`);
        ``nbins == 0`` subtracts nothing.
    rows : numpy.ndarray, optional
        Sample rows (default all); only those rows of ``out`` are written.
    out : numpy.ndarray, optional
        float32 C-contiguous array of the shape of ``images`` to write into; may be ``images``
        itself (in place). Default: a copy of ``images``.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, nband, H, W)`` residual flux, nanomaggies.
    """
    x = np.asarray(images)
    sel, planes = _check_images("subtract_profile", x, rows)
    n, nb, H, W = x.shape
    prof = np.ascontiguousarray(profile, dtype=np.float32)
    nbins = prof.shape[-1] if prof.ndim == 3 else -1
    allowed = (0, n_profile_bins("azimuthal_median", H, W))
    if prof.shape[:2] != (sel.size, nb) or nbins not in allowed:
        msg = (f"subtract_profile: profile must be ({sel.size}, {nb}, nbins) for {H}x{W} "
               f"stamps, got {prof.shape}")
        raise ValueError(msg)
    if out is None:
        out = np.array(x, dtype=np.float32, order="C", copy=True)
    else:
        if out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            msg = (f"subtract_profile: out must be float32 C-contiguous {x.shape}, got "
                   f"{out.dtype} {out.shape}")
            raise ValueError(msg)
        if x is not out:
            out[sel] = x[sel]
    if nbins and sel.size:
        _subtract_kernel(out.reshape(n * nb, H * W), planes,
                         prof.reshape(sel.size * nb, nbins), _bins(H, W)[1])
    return out


def subtract_lens_light(
    images: np.ndarray,
    model: str = "azimuthal_median",
    *,
    rows: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Stamps minus their lens-light model (module docstring):
    ``subtract_profile(images, lens_light_profile(images, model, rows=rows), rows=rows, out=out)``.
    float32 ``(n, nband, H, W)`` residual flux, nanomaggies."""
    return subtract_profile(images, lens_light_profile(images, model, rows=rows), rows=rows,
                            out=out)


__all__ = [
    "BIN_WIDTH_PIX",
    "LENS_LIGHT_MODELS",
    "lens_light_profile",
    "n_profile_bins",
    "subtract_lens_light",
    "subtract_profile",
]
