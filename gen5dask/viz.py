"""Colour composites, lens-light residuals and PNG stamps for visual inspection.

Pure numpy functions (arrays in, arrays or bytes out) except :func:`stamp_gallery_items`, which
reads pixels from a store for the report's anchor gallery and the ``inspect`` stage.

Conventions (DESIGN §4): images are fluxes in nanomaggies per pixel (AB zero point 22.5), the
object centre is pixel ``(H//2, W//2)`` and ``r`` is the distance from it in pixels.

RGB composites
--------------
``stretch="legacysurvey"`` reproduces the Legacy Surveys viewer's DR2+ colour images
(``dr2_rgb`` / ``sdss_rgb`` of legacysurvey/imagine ``map/views.py``): band ``b`` goes to plane
``p_b`` (z -> R, r -> G, g -> B; i -> R) after scaling by ``s_b`` (g 6.0, r 3.4, i 3.0, z 2.2)
and adding the offset ``m = 0.03``; with ``I`` the mean over bands of ``max(0, s_b x_b + m)``,
each plane is ``(s_b x_b + m) asinh(Q I) / (sqrt(Q) I)`` with ``Q = 20``, clipped to [0, 1].
``stretch="lupton"`` is :func:`astropy.visualization.make_lupton_rgb` (Lupton et al. 2004) on the
same scaled planes.

Residuals
---------
:func:`azimuthal_median_model` is the smooth lens-light model of the arc visibility proxy
(:func:`gen5dask.kernels.photometry.visibility_proxy`, ``model="azimuthal_median"``): the median
of the cutout over its circular radial bin ``floor(r / bin_width_pix)``. :func:`residual_image`
subtracts it, so the proxy's ring energy is the sum of the residual over ``4 <= r < 16`` px.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Legacy Surveys viewer (DR2+) colour mapping: band -> (RGB plane, flux scale per nanomaggy).
LEGACY_RGB_SCALES: dict[str, tuple[int, float]] = {
    "g": (2, 6.0),
    "r": (1, 3.4),
    "i": (0, 3.0),
    "z": (0, 2.2),
}

#: Stamps read and rendered at a time by :func:`stamp_gallery_items`.
_GALLERY_BLOCK = 256

#: Stretches accepted by :func:`rgb_composite`.
STRETCHES = ("legacysurvey", "lupton")


# ---------------------------------------------------------------------------------------------
# RGB composites
# ---------------------------------------------------------------------------------------------


def _as_image_stack(name: str, image: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 3:
        msg = f"{name} must be (n_band, H, W), got shape {arr.shape}"
        raise ValueError(msg)
    if arr.shape[0] != len(bands):
        msg = f"{name} has {arr.shape[0]} bands but bands={tuple(bands)!r}"
        raise ValueError(msg)
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def rgb_composite(
    image: np.ndarray,
    *,
    bands: Sequence[str] = ("g", "r", "z"),
    stretch: str = "legacysurvey",
    Q: float = 20.0,
    m: float = 0.03,
    scales: dict[str, tuple[int, float]] | None = None,
    lupton_stretch: float = 0.5,
) -> np.ndarray:
    """Colour composite of a multi-band cutout, as in the Legacy Surveys viewer.

    Parameters
    ----------
    image : numpy.ndarray
        ``(n_band, H, W)`` fluxes, nanomaggies per pixel, bands in the order of ``bands``.
        Non-finite pixels are shown as 0 flux.
    bands : sequence of str
        Band names; each must be in :data:`LEGACY_RGB_SCALES` (or ``scales``). A single band gives
        a grey image.
    stretch : {"legacysurvey", "lupton"}
        ``"legacysurvey"``: the viewer's asinh stretch (module docstring); ``"lupton"``:
        :func:`astropy.visualization.make_lupton_rgb` with ``Q`` and ``lupton_stretch``.
    Q : float
        Asinh softening parameter (> 0), dimensionless (viewer: 20).
    m : float
        Offset added to every scaled band before the stretch (viewer: 0.03), scaled flux units;
        also the ``minimum`` (black level, negated) of the Lupton stretch.
    scales : dict, optional
        Overrides of :data:`LEGACY_RGB_SCALES`: band -> (plane 0=R 1=G 2=B, scale per nanomaggy).
    lupton_stretch : float
        Linear range of the Lupton stretch (> 0), scaled flux units.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)`` RGB image (row 0 at the top, as stored).
    """
    bands = tuple(bands)
    table = dict(LEGACY_RGB_SCALES)
    if scales:
        table.update(scales)
    unknown = [b for b in bands if b not in table]
    if unknown:
        msg = f"rgb_composite: no colour scale for band(s) {unknown}; known: {sorted(table)}"
        raise ValueError(msg)
    if stretch not in STRETCHES:
        msg = f"rgb_composite: stretch must be one of {STRETCHES}, got {stretch!r}"
        raise ValueError(msg)
    if not (np.isfinite(Q) and Q > 0):
        msg = f"rgb_composite: Q must be finite and > 0, got {Q!r}"
        raise ValueError(msg)
    stack = _as_image_stack("image", image, bands)
    _, H, W = stack.shape
    grey = len(bands) == 1
    scaled = [stack[k] * table[b][1] for k, b in enumerate(bands)]
    planes = [table[b][0] for b in bands]
    if stretch == "lupton":
        if not (np.isfinite(lupton_stretch) and lupton_stretch > 0):
            msg = f"rgb_composite: lupton_stretch must be finite and > 0, got {lupton_stretch!r}"
            raise ValueError(msg)
        from astropy.visualization import make_lupton_rgb

        chan = [np.zeros((H, W)) for _ in range(3)]
        for img, p in zip(scaled, planes, strict=True):
            for c in range(3) if grey else (p,):
                chan[c] = chan[c] + img
        return make_lupton_rgb(
            chan[0], chan[1], chan[2], minimum=-m, stretch=lupton_stretch, Q=Q
        ).astype(np.uint8)
    # Legacy Surveys viewer (sdss_rgb with the dr2_rgb scales)
    mean = np.zeros((H, W))
    for img in scaled:
        mean += np.maximum(0.0, img + m)
    mean /= len(bands)
    f = np.arcsinh(Q * mean) / np.sqrt(Q)
    mean = np.where(mean == 0.0, 1e-6, mean)
    rgb = np.zeros((H, W, 3))
    for img, p in zip(scaled, planes, strict=True):
        val = np.clip((img + m) * f / mean, 0.0, 1.0)
        if grey:
            rgb[:] = val[:, :, None]
        else:
            rgb[:, :, p] = val
    return np.round(rgb * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# smooth lens-light model and residual
# ---------------------------------------------------------------------------------------------


def _radius(H: int, W: int) -> np.ndarray:
    dy = np.arange(H) - H // 2
    dx = np.arange(W) - W // 2
    return np.sqrt((dy[:, None] ** 2 + dx[None, :] ** 2).astype(np.float64))


def azimuthal_median_model(image: np.ndarray, *, bin_width_pix: float = 1.0) -> np.ndarray:
    """Smooth, circularly symmetric lens-light model: the median over each radial bin.

    The model at a pixel is the median of the finite pixels of ``image`` in its radial bin
    ``floor(r / bin_width_pix)`` (``r`` from the centre pixel ``(H//2, W//2)``, pixels) -- the
    model of :func:`gen5dask.kernels.photometry.visibility_proxy`. Sky is included (no separate
    background subtraction). It removes any circularly symmetric light (the round part of the
    lens galaxy, and any complete uniform ring) while an arc covering less than half of a bin's
    azimuth leaves the median unchanged.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(n, H, W)`` fluxes, nanomaggies per pixel.
    bin_width_pix : float
        Radial bin width, pixels (> 0).

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``image``, nanomaggies per pixel; NaN in a bin with no finite pixel.
    """
    bin_width_pix = float(bin_width_pix)
    if not (np.isfinite(bin_width_pix) and bin_width_pix > 0):
        msg = f"bin_width_pix must be finite and > 0 (pixels), got {bin_width_pix!r}"
        raise ValueError(msg)
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim not in (2, 3):
        msg = f"image must be (H, W) or (n, H, W), got shape {arr.shape}"
        raise ValueError(msg)
    stack = arr[None] if arr.ndim == 2 else arr
    n, H, W = stack.shape
    bins = np.floor(_radius(H, W) / bin_width_pix).astype(np.int64).ravel()
    order = np.argsort(bins, kind="stable")
    edges = np.flatnonzero(np.diff(bins[order])) + 1
    groups = np.split(order, edges)
    flat = stack.reshape(n, H * W)
    model = np.full_like(flat, np.nan)
    for idx in groups:
        vals = flat[:, idx]
        vals = np.where(np.isfinite(vals), vals, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bin -> NaN model
            model[:, idx] = np.nanmedian(vals, axis=1)[:, None]
    model = model.reshape(stack.shape)
    return model[0] if arr.ndim == 2 else model


def residual_image(image_r: np.ndarray, *, bin_width_pix: float = 1.0) -> np.ndarray:
    """Cutout minus the smooth lens-light model of the visibility proxy.

    Parameters
    ----------
    image_r : numpy.ndarray
        ``(H, W)`` or ``(n, H, W)`` r-band fluxes, nanomaggies per pixel.
    bin_width_pix : float
        Radial bin width of :func:`azimuthal_median_model`, pixels.

    Returns
    -------
    numpy.ndarray
        float64, same shape, nanomaggies per pixel (NaN where the input is not finite).
    """
    arr = np.asarray(image_r, dtype=np.float64)
    res = arr - azimuthal_median_model(arr, bin_width_pix=bin_width_pix)
    res[~np.isfinite(arr)] = np.nan
    return res


def robust_sigma(values: np.ndarray) -> float:
    """``1.4826 * MAD`` of the finite values (standard deviation if the MAD is 0; 0 if none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    s = 1.4826 * float(np.median(np.abs(v - np.median(v))))
    return s if s > 0 else float(np.std(v))


# ---------------------------------------------------------------------------------------------
# PNG encoding
# ---------------------------------------------------------------------------------------------


def to_grey_uint8(
    image: np.ndarray, *, vmin: float | None = None, vmax: float | None = None, nsigma: float = 5.0
) -> np.ndarray:
    """Linear grey scale of a 2-D float image: ``vmin`` -> 0 (black), ``vmax`` -> 255 (white).

    Defaults: symmetric limits ``+-nsigma * robust_sigma(image)`` about 0 (suited to residuals,
    where 0 is mid-grey). Non-finite pixels become 0 (black).
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        msg = f"to_grey_uint8: image must be 2-D, got shape {a.shape}"
        raise ValueError(msg)
    s = robust_sigma(a)
    if vmin is None:
        vmin = -nsigma * s
    if vmax is None:
        vmax = nsigma * s
    if not vmax > vmin:
        vmin, vmax = vmin - 0.5, vmin + 0.5
    out = np.clip((a - vmin) / (vmax - vmin), 0.0, 1.0)
    out = np.where(np.isfinite(a), out, 0.0)
    return np.round(out * 255.0).astype(np.uint8)


def png_bytes(image: np.ndarray, *, scale: int = 4, **grey_kwargs) -> bytes:
    """Encode an image as PNG, upscaled by nearest neighbour so small stamps stay visible.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 ``(H, W, 3)`` RGB (e.g. :func:`rgb_composite`), uint8 ``(H, W)`` grey, or a float
        ``(H, W)`` image mapped through :func:`to_grey_uint8` (``grey_kwargs``: vmin, vmax, nsigma).
    scale : int
        Integer upscaling factor (>= 1): every pixel becomes a ``scale x scale`` block.

    Returns
    -------
    bytes
        PNG file contents.
    """
    from PIL import Image

    scale = int(scale)
    if scale < 1:
        msg = f"png_bytes: scale must be an integer >= 1, got {scale!r}"
        raise ValueError(msg)
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 3:
        if a.dtype != np.uint8:
            msg = f"png_bytes: an (H, W, 3) image must be uint8 RGB, got {a.dtype}"
            raise ValueError(msg)
        mode = "RGB"
    elif a.ndim == 2:
        if a.dtype != np.uint8:
            a = to_grey_uint8(a, **grey_kwargs)
        mode = "L"
    else:
        msg = f"png_bytes: image must be (H, W) or (H, W, 3), got shape {a.shape}"
        raise ValueError(msg)
    if scale > 1:
        a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode=mode).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# store helper for galleries
# ---------------------------------------------------------------------------------------------


def stamp_gallery_items(
    store_path: str | Path,
    samples: Sequence[int] | np.ndarray,
    *,
    max_items: int,
    names: Sequence[str] | None = None,
    scale: int = 4,
    stretch: str = "legacysurvey",
    Q: float = 20.0,
    residual: bool = True,
    residual_nsigma: float = 5.0,
) -> list[dict]:
    """PNG stamps (colour composite and r-band residual) of selected samples of a store.

    Parameters
    ----------
    store_path : str or Path
        A gen5dask store (``image`` in nanomaggies, any bands known to :func:`rgb_composite`).
    samples : sequence of int
        Sample ids (values of the ``sample`` coordinate), in display order.
    max_items : int
        Keep the first ``max_items`` of ``samples`` (>= 0).
    names : sequence of str, optional
        Display names aligned with ``samples``.
    scale : int
        Nearest-neighbour upscaling of the PNGs.
    stretch, Q
        Passed to :func:`rgb_composite`.
    residual : bool
        Also render the r-band residual after :func:`azimuthal_median_model`, grey scale
        ``+-residual_nsigma`` robust sigma of the outer (r >= 16 px) pixels.

    Returns
    -------
    list of dict
        One dict per sample: ``sample`` (int), ``name`` (str or None), ``png_bytes`` (RGB
        composite) and, with ``residual``, ``residual_png_bytes``.
    """
    from gen5dask.store import read_samples, read_table, store_geometry

    if int(max_items) < 0:
        msg = f"stamp_gallery_items: max_items must be >= 0, got {max_items!r}"
        raise ValueError(msg)
    ids = np.asarray(samples, dtype=np.int64)[: int(max_items)]
    if names is not None:
        if len(names) != len(samples):
            msg = f"stamp_gallery_items: {len(names)} names for {len(samples)} samples"
            raise ValueError(msg)
        names = list(names)[: len(ids)]
    if len(ids) == 0:
        return []
    path = Path(store_path)
    bands = tuple(store_geometry(path)["bands"])
    all_ids = read_table(path, ["sample"])["sample"].to_numpy()
    pos = {int(s): k for k, s in enumerate(all_ids)}
    missing = [int(s) for s in ids if int(s) not in pos]
    if missing:
        msg = f"{path}: no sample(s) {missing[:10]} in the store"
        raise ValueError(msg)
    rows = np.array([pos[int(s)] for s in ids], dtype=np.int64)
    r_band = bands.index("r") if "r" in bands else len(bands) // 2
    out = []
    for a in range(0, len(ids), _GALLERY_BLOCK):  # bounded memory: one block of stamps at a time
        uniq, inverse = np.unique(rows[a : a + _GALLERY_BLOCK], return_inverse=True)
        image = read_samples(path, uniq, ["image"])["image"][inverse]
        if residual:
            residuals = residual_image(image[:, r_band])  # one vectorised pass per block
            H, W = image.shape[-2:]
            outer = _radius(H, W) >= min(16.0, 0.4 * min(H, W))
        for j in range(len(image)):
            k = a + j
            item = {
                "sample": int(ids[k]),
                "name": None if names is None else str(names[k]),
                "png_bytes": png_bytes(
                    rgb_composite(image[j], bands=bands, stretch=stretch, Q=Q), scale=scale
                ),
            }
            if residual:
                res = residuals[j]
                s_out = robust_sigma(image[j, r_band][outer])
                lim = residual_nsigma * (s_out if s_out > 0 else robust_sigma(res))
                item["residual_png_bytes"] = png_bytes(
                    res, scale=scale, vmin=-lim if lim > 0 else None, vmax=lim if lim > 0 else None
                )
            out.append(item)
    return out


__all__ = [
    "LEGACY_RGB_SCALES",
    "STRETCHES",
    "azimuthal_median_model",
    "png_bytes",
    "residual_image",
    "rgb_composite",
    "robust_sigma",
    "stamp_gallery_items",
    "to_grey_uint8",
]
