"""Training-time augmentation and the shared network input transform.

* :func:`network_input` is the ONE image transform of training *and* scoring: the optional
  lens-light subtraction (:mod:`gen5dask.kernels.lenslight`, ``train.lens_light``), then
  :func:`gen5dask.kernels.normalize.normalize_stamps` (DESIGN §4). Augmentation only happens
  between the two, and only in training.
* :func:`d4_transform`: the 8 rotations/flips of the square stamp about the centre pixel
  ``(H//2, W//2)`` (so the object stays centred for even sizes too; the one row/column that
  wraps round is the far border). Op code ``c`` in 0..7: bit 0 flips x, bit 1 flips y, bit 2
  transposes (applied last).
* :func:`augment_batch`: lens-light subtraction, centre mask (arms with ``center_mask``) on the
  (residual) flux image, then the normalisation, then D4. Every draw is keyed by (seed, sample
  id, epoch) with the counter RNG, so a sample gets the same augmentation whatever the worker
  count, rank or batch it lands in.
* :class:`TrainTransform` / :class:`EvalTransform`: the loader's two-step form of the same
  transform. ``prepare`` works on a whole decoded store chunk in place (lens-light subtraction
  and centre mask of the selected rows, normalisation statistics — the cached ones (and the
  cached lens-light profiles) from
  :mod:`gen5dask.train.normstats` wherever the mask cannot change them — and D4 codes); the
  stream then normalises, applies D4 and lays out each batch in one pass with
  :func:`gen5dask.kernels.normalize.apply_norm_into`. The result is bit-identical to
  :func:`augment_batch` (and, for :class:`EvalTransform`, to :func:`network_input`).
"""

from __future__ import annotations

import numpy as np

from gen5dask import PIXSCALE_ARCSEC
from gen5dask.kernels._jit import jit
from gen5dask.kernels.lenslight import lens_light_profile, subtract_lens_light, subtract_profile
from gen5dask.kernels.masking import center_mask, draw_mask_radius
from gen5dask.kernels.normalize import norm_stats, normalize_stamps
from gen5dask.kernels.rng import keys_for, stage_id, uniform
from gen5dask.train.normstats import split_cached

D4_STAGE = "augment_d4"
MASK_STAGE = "center_mask"
#: counters of the per-sample D4 key: op code and mask coin flip
_D4_COUNTER = 0
_COIN_COUNTER = 1


def network_input(images: np.ndarray, *, r_outer: float = 16.0, clip: float = 10.0,
                  lens_light: str = "none") -> np.ndarray:
    """The network's input from flux stamps (training and scoring): the lens-light subtraction,
    then the shared normalisation.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, nband, H, W)`` flux, nanomaggies.
    r_outer : float
        Inner radius of the statistics region, pixels.
    clip : float
        Clip level, units of the outer-region noise.
    lens_light : {"none", "azimuthal_median"}
        Lens-light model subtracted first (:func:`gen5dask.kernels.lenslight.subtract_lens_light`).

    Returns
    -------
    numpy.ndarray
        float32 ``(n, nband, H, W)``, dimensionless.
    """
    if lens_light != "none":
        images = subtract_lens_light(images, lens_light)
    return normalize_stamps(images, r_outer=r_outer, clip=clip)


@jit
def _d4_kernel(src, codes, out):
    n = src.shape[0]
    nb = src.shape[1]
    H = src.shape[2]
    W = src.shape[3]
    cy = H // 2
    cx = W // 2
    for i in range(n):
        c = codes[i]
        fx = (c & 1) != 0
        fy = (c & 2) != 0
        tr = (c & 4) != 0
        for b in range(nb):
            for y in range(H):
                for x in range(W):
                    # output pixel (y, x) <- input pixel after transpose and flips
                    yy = x if tr else y
                    xx = y if tr else x
                    if fy:
                        yy = (2 * cy - yy) % H
                    if fx:
                        xx = (2 * cx - xx) % W
                    out[i, b, y, x] = src[i, b, yy, xx]


def d4_transform(images: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Apply one of the 8 D4 symmetries about the centre pixel to each stamp.

    Parameters
    ----------
    images : numpy.ndarray
        float32 ``(n, nband, H, W)`` with ``H == W``.
    codes : numpy.ndarray
        int ``(n,)`` in 0..7 (bit 0: flip x, bit 1: flip y, bit 2: transpose).

    Returns
    -------
    numpy.ndarray
        float32 ``(n, nband, H, W)``, a new array; pixel ``(H//2, W//2)`` stays in place.
    """
    x = np.ascontiguousarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[2] != x.shape[3]:
        msg = f"d4_transform needs square stamps (n, nband, H, H), got shape {x.shape}"
        raise ValueError(msg)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.shape != (x.shape[0],) or (codes.size and (codes.min() < 0 or codes.max() > 7)):
        msg = f"codes must be ({x.shape[0]},) ints in 0..7, got shape {codes.shape}"
        raise ValueError(msg)
    out = np.empty_like(x)
    _d4_kernel(x, codes, out)
    return out


@jit
def _draws(keys, counter, out):
    for i in range(keys.shape[0]):
        out[i] = uniform(keys[i], counter)


def d4_codes(ids: np.ndarray, *, seed: int, epoch: int) -> np.ndarray:
    """D4 op code (0..7) per sample id, keyed by (seed, "augment_d4", id, 0, epoch)."""
    keys = keys_for(int(seed), stage_id(D4_STAGE), np.asarray(ids, dtype=np.int64), 0, int(epoch))
    u = np.empty(keys.shape[0])
    _draws(keys, np.uint64(_D4_COUNTER), u)
    return np.minimum((u * 8).astype(np.int64), 7)


def mask_coin(ids: np.ndarray, *, seed: int, epoch: int) -> np.ndarray:
    """Uniform [0, 1) per sample deciding whether the centre mask is applied (keyed)."""
    keys = keys_for(int(seed), stage_id(D4_STAGE), np.asarray(ids, dtype=np.int64), 0, int(epoch))
    u = np.empty(keys.shape[0])
    _draws(keys, np.uint64(_COIN_COUNTER), u)
    return u


def augment_batch(
    images: np.ndarray,
    ids: np.ndarray,
    *,
    seed: int,
    epoch: int,
    rotate_flip: bool = True,
    mask: bool = False,
    mask_prob: float = 1.0,
    mask_law: str = "uniform",
    mask_rmin: float = 3.0,
    mask_rmax: float = 7.0,
    mask_annulus: tuple[float, float] | None = None,
    psfsize_r: np.ndarray | None = None,
    pixscale: float = PIXSCALE_ARCSEC,
    r_outer: float = 16.0,
    clip: float = 10.0,
    lens_light: str = "none",
) -> np.ndarray:
    """Training transform of flux stamps: [lens light] -> [centre mask] -> normalisation -> [D4].

    Parameters
    ----------
    images : numpy.ndarray
        float32 ``(n, nband, H, W)`` flux, nanomaggies (not modified).
    ids : numpy.ndarray
        int64 ``(n,)`` sample ids (keys of every draw).
    seed, epoch : int
        Run seed and epoch (keys of every draw).
    rotate_flip : bool
        Apply a keyed D4 symmetry.
    mask, mask_prob, mask_law, mask_rmin, mask_rmax, mask_annulus
        Centre mask (DESIGN §4): applied with probability ``mask_prob`` per sample; radius law
        ``uniform`` U[rmin, rmax) px or ``psf`` (needs ``psfsize_r``, arcsec); fill drawn from
        the pixels outside the mask (or from ``mask_annulus`` = (r_in, r_out) px).
    psfsize_r : numpy.ndarray, optional
        ``(n,)`` r-band PSF FWHM, arcsec (for ``mask_law="psf"``).
    pixscale : float
        Arcsec per pixel.
    r_outer, clip : float
        Normalisation parameters (see :func:`network_input`).
    lens_light : {"none", "azimuthal_median"}
        Lens-light model subtracted before the mask (see :func:`network_input`).

    Returns
    -------
    numpy.ndarray
        float32 ``(n, nband, H, W)`` network input.
    """
    ids = np.asarray(ids, dtype=np.int64)
    x = np.ascontiguousarray(images, dtype=np.float32)
    if lens_light != "none":
        x = subtract_lens_light(x, lens_light)
    if mask and ids.size:
        keys = keys_for(int(seed), stage_id(MASK_STAGE), ids, 0, int(epoch))
        radius = draw_mask_radius(
            keys, law=mask_law, rmin=mask_rmin, rmax=mask_rmax,
            psfsize_r_arcsec=psfsize_r, pixscale=pixscale,
        )
        if mask_prob < 1.0:
            radius = np.where(mask_coin(ids, seed=seed, epoch=epoch) < mask_prob, radius, 0.0)
        x = center_mask(x, radius, keys, annulus=mask_annulus)
    x = normalize_stamps(x, r_outer=r_outer, clip=clip)
    if rotate_flip and ids.size:
        x = d4_transform(x, d4_codes(ids, seed=seed, epoch=epoch))
    return x




#: keyword defaults of :func:`augment_batch` that the two-step transform needs
_AUGMENT_DEFAULTS = {
    "rotate_flip": True, "mask": False, "mask_prob": 1.0, "mask_law": "uniform",
    "mask_rmin": 3.0, "mask_rmax": 7.0, "mask_annulus": None, "pixscale": PIXSCALE_ARCSEC,
    "r_outer": 16.0, "clip": 10.0, "lens_light": "none",
}


def subtract_rows(images: np.ndarray, local: np.ndarray, profiles: np.ndarray | None,
                  lens_light: str) -> None:
    """Subtract the lens light of rows ``local`` of a decoded chunk in place (cached profiles,
    or computed now when None)."""
    if lens_light == "none" or not len(local):
        return
    if profiles is None:
        profiles = lens_light_profile(images, lens_light, rows=local)
    subtract_profile(images, profiles, rows=local, out=images)


def resolve_stats(images: np.ndarray, local: np.ndarray, stats: np.ndarray | None, *,
                  r_outer: float, mask_radius: np.ndarray | None = None) -> np.ndarray:
    """Normalisation statistics of rows ``local`` of ``images`` (after any centre mask).

    ``stats`` are the cached statistics of those rows (float32 ``(k, nband, 2)``, location NaN
    where the plane had no finite outer pixel; None: none cached). Rows whose statistics the
    mask may have changed (``mask_radius > r_outer``, or a NaN location) and all rows when
    nothing is cached are computed from ``images`` now, so the result always equals
    :func:`gen5dask.kernels.normalize.norm_stats` of the (masked) rows.
    """
    local = np.asarray(local, dtype=np.int64)
    if stats is None:
        return norm_stats(images[local], r_outer=r_outer)
    stale = np.isnan(stats[:, :, 0]).any(axis=1)
    if mask_radius is not None:
        stale |= np.asarray(mask_radius) > r_outer
    if stale.any():
        stats = stats.copy()
        stats[stale] = norm_stats(images[local[stale]], r_outer=r_outer)
    return stats


class TrainTransform:
    """Picklable training transform for :class:`gen5dask.train.dataset.StampStream`.

    ``TrainTransform(seed=..., **augment_kwargs)(images, ids, psfsize_r, epoch)`` calls
    :func:`augment_batch` with the keyword arguments given at construction; the stream uses the
    equivalent two-step form (:meth:`prepare`, then ``apply_norm_into`` with :attr:`clip`).
    """

    def __init__(self, *, seed: int, **kwargs):
        unknown = sorted(set(kwargs) - set(_AUGMENT_DEFAULTS))
        if unknown:
            msg = f"TrainTransform: unknown augmentation option(s) {unknown}"
            raise TypeError(msg)
        self.seed = int(seed)
        self.kwargs = dict(kwargs)
        self.opts = {**_AUGMENT_DEFAULTS, **kwargs}

    @property
    def clip(self) -> float:
        return float(self.opts["clip"])

    def __call__(self, images, ids, psfsize_r, epoch):
        psf = psfsize_r if self.opts["mask_law"] == "psf" else None
        return augment_batch(images, ids, seed=self.seed, epoch=epoch, psfsize_r=psf,
                             **self.kwargs)

    def prepare(self, images: np.ndarray, local: np.ndarray, ids: np.ndarray,
                psfsize_r: np.ndarray, stats: np.ndarray | None, epoch: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """Lens-light-subtract and centre-mask rows ``local`` of a decoded chunk in place; their
        statistics and D4 codes.

        Parameters
        ----------
        images : numpy.ndarray
            float32 C-contiguous ``(N, nband, H, W)`` flux of a whole store chunk (modified).
        local : numpy.ndarray
            int ``(k,)`` rows of the chunk being used, with sample ids ``ids``.
        psfsize_r : numpy.ndarray
            ``(k,)`` r-band PSF FWHM, arcsec (for ``mask_law="psf"``).
        stats : numpy.ndarray or None
            Cached statistics of those rows (see :func:`resolve_stats`), followed by their
            lens-light profiles when a model is set
            (:func:`gen5dask.train.normstats.split_cached`).
        epoch : int
            Epoch (key of every draw).

        Returns
        -------
        tuple
            float32 ``(k, nband, 2)`` statistics of the masked rows and int64 ``(k,)`` D4 codes.
        """
        o = self.opts
        ids = np.asarray(ids, dtype=np.int64)
        local = np.asarray(local, dtype=np.int64)
        stats, profiles = split_cached(stats, o["lens_light"])
        subtract_rows(images, local, profiles, o["lens_light"])
        radius = None
        if o["mask"] and ids.size:
            keys = keys_for(self.seed, stage_id(MASK_STAGE), ids, 0, int(epoch))
            psf = psfsize_r if o["mask_law"] == "psf" else None
            radius = draw_mask_radius(keys, law=o["mask_law"], rmin=o["mask_rmin"],
                                      rmax=o["mask_rmax"], psfsize_r_arcsec=psf,
                                      pixscale=o["pixscale"])
            if o["mask_prob"] < 1.0:
                coin = mask_coin(ids, seed=self.seed, epoch=epoch)
                radius = np.where(coin < o["mask_prob"], radius, 0.0)
            full_r = np.zeros(images.shape[0])
            full_r[local] = radius
            full_k = np.zeros(images.shape[0], np.uint64)
            full_k[local] = keys
            center_mask(images, full_r, full_k, annulus=o["mask_annulus"], out=images)
        st = resolve_stats(images, local, stats, r_outer=o["r_outer"], mask_radius=radius)
        if o["rotate_flip"] and ids.size:
            codes = d4_codes(ids, seed=self.seed, epoch=epoch)
        else:
            codes = np.zeros(ids.size, np.int64)
        return st, codes


class EvalTransform:
    """Picklable evaluation transform: only :func:`network_input` (no augmentation)."""

    def __init__(self, *, r_outer: float = 16.0, clip: float = 10.0, lens_light: str = "none"):
        self.r_outer = float(r_outer)
        self.clip = float(clip)
        self.lens_light = str(lens_light)

    def __call__(self, images, ids, psfsize_r, epoch):
        return network_input(images, r_outer=self.r_outer, clip=self.clip,
                             lens_light=self.lens_light)

    def prepare(self, images, local, ids, psfsize_r, stats, epoch):
        """Lens-light subtraction of rows ``local`` in place, their statistics (cached or
        computed) and identity D4 codes."""
        local = np.asarray(local, dtype=np.int64)
        stats, profiles = split_cached(stats, self.lens_light)
        subtract_rows(images, local, profiles, self.lens_light)
        st = resolve_stats(images, local, stats, r_outer=self.r_outer)
        return st, np.zeros(len(local), np.int64)


__all__ = [
    "EvalTransform",
    "TrainTransform",
    "augment_batch",
    "d4_codes",
    "d4_transform",
    "mask_coin",
    "network_input",
    "resolve_stats",
    "subtract_rows",
]
