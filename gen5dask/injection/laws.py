"""Parameter laws of injected lenses and sources (DESIGN §4-5): keyed, vectorised draws.

Every draw is a pure function of ``(seed, "inject", host id, replicate, mode)``: the key is
:func:`gen5dask.kernels.rng.mix_key` with the stage id of ``"inject"``, the host's sample id,
the replicate number and the brightness-mode code (its index in
:data:`gen5dask.store.schema.INJECT_MODES`: uncalibrated 1, calibrated 2, null 3) in the epoch
slot; each parameter uses its own fixed counter of that stream (:data:`COUNTERS`). Draws are
therefore bit-identical for any chunking, worker count or processing order.

Laws (``InjectConfig`` ranges, all uniform unless stated):

* ``theta_e`` (arcsec), ``lens_q``, ``lens_pa`` ~ U[0, pi) rad;
* ``shear_g1``, ``shear_g2`` ~ N(0, shear_sigma);
* source position uniform in area in a disk of radius ``src_pos_max_frac * theta_e``
  (``src_x``, ``src_y`` arcsec in the stamp frame);
* ``src_n``, ``src_reff`` (arcsec), ``src_q``, ``src_pa`` ~ U[0, pi) rad, ``src_gr``,
  ``src_rz`` (mag);
* real-galaxy sources (``source_mode: real_galaxy``): ``src_index`` (catalogue row) uniform
  over the ``n_galaxies`` rows, ``src_pa`` ~ U[0, 2 pi) rad (an image has no 180-degree
  symmetry; 0 when ``real_galaxy_rotate`` is off), ``src_n``/``src_reff``/``src_q`` NaN;
* ``src_dmag`` ~ U[uncalibrated_dmag_range] (mode uncalibrated only, NaN otherwise);
* ``target_arc_snr`` ~ :class:`TargetDistribution` (mode calibrated only, NaN otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gen5dask.kernels._jit import jit
from gen5dask.kernels.rng import mix_key, normal, stage_id, uniform
from gen5dask.store.schema import INJECT_MODES

#: Stage name of every injection draw.
STAGE = "inject"
#: Stage name of the noise keys of injected light.
NOISE_STAGE = "inject.noise"
#: Mode name -> code used in the key (index in ``INJECT_MODES``).
MODE_CODES: dict[str, int] = {m: i for i, m in enumerate(INJECT_MODES) if m}

#: Counter of each uniform draw in a sample's stream.
COUNTERS: dict[str, int] = {
    "theta_e": 0,
    "lens_q": 1,
    "lens_pa": 2,
    "src_r": 3,
    "src_phi": 4,
    "src_n": 5,
    "src_reff": 6,
    "src_q": 7,
    "src_pa": 8,
    "src_gr": 9,
    "src_rz": 10,
    "src_dmag": 11,
    "target_bin": 12,
    "target_within": 13,
    "src_index": 14,
}
#: Counters of the standard-normal draws (``rng.normal`` uses uniforms 2c and 2c + 1, so these
#: start above every uniform counter).
NORMAL_COUNTERS: dict[str, int] = {"shear_g1": 16, "shear_g2": 17}

_N_UNIFORM = len(COUNTERS)


@jit
def _draw_kernel(seed, stage, host_ids, replicates, modes, n_uniform, c_g1, c_g2, u_out, g_out):
    for i in range(host_ids.shape[0]):
        k = mix_key(seed, stage, host_ids[i], replicates[i], modes[i])
        for c in range(n_uniform):
            u_out[i, c] = uniform(k, c)
        g_out[i, 0] = normal(k, c_g1)
        g_out[i, 1] = normal(k, c_g2)


@jit
def _keys_kernel(seed, stage, host_ids, replicates, modes, out):
    for i in range(host_ids.shape[0]):
        out[i] = mix_key(seed, stage, host_ids[i], replicates[i], modes[i])


def _as_i64(name: str, x, n: int | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.int64).reshape(-1))
    if n is not None and arr.shape[0] != n:
        msg = f"{name} must have one value per sample ({n}), got {arr.shape[0]}"
        raise ValueError(msg)
    return arr


def mode_codes(modes: Sequence[str] | np.ndarray) -> np.ndarray:
    """int64 codes of brightness-mode names (``uncalibrated``/``calibrated``/``null``)."""
    out = np.empty(len(modes), dtype=np.int64)
    for i, m in enumerate(modes):
        try:
            out[i] = MODE_CODES[str(m)]
        except KeyError:
            msg = f"unknown injection mode {m!r} at row {i}; known: {sorted(MODE_CODES)}"
            raise ValueError(msg) from None
    return out


def noise_keys(seed: int, host_ids, replicates, modes) -> np.ndarray:
    """uint64 noise keys ``mix_key(seed, stage_id("inject.noise"), host, replicate, mode)``."""
    host_ids = _as_i64("host_ids", host_ids)
    n = host_ids.shape[0]
    out = np.empty(n, dtype=np.uint64)
    _keys_kernel(
        int(seed),
        stage_id(NOISE_STAGE),
        host_ids,
        _as_i64("replicates", replicates, n),
        _as_i64("modes", modes, n),
        out,
    )
    return out


@dataclass(frozen=True)
class ColourLaw:
    """Gaussian source colours of calibrated injections (mag), measured on the anchors
    (:mod:`gen5dask.injection.arc_colours`): ``src_gr ~ N(gr_mean, gr_std)``,
    ``src_rz ~ N(rz_mean, rz_std)``, independent, drawn from the same keyed uniforms as the
    prior's uniform colours (inverse normal CDF), so draws stay keyed by host and replicate."""

    gr_mean: float
    gr_std: float
    rz_mean: float
    rz_std: float

    def __post_init__(self) -> None:
        vals = (self.gr_mean, self.gr_std, self.rz_mean, self.rz_std)
        if not all(np.isfinite(v) for v in vals) or self.gr_std < 0 or self.rz_std < 0:
            msg = f"colour law needs finite means and std >= 0, got {vals}"
            raise ValueError(msg)
        for name in ("gr_mean", "gr_std", "rz_mean", "rz_std"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def draw(self, u_gr: np.ndarray, u_rz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colours from uniforms in [0, 1) (clipped away from 0 and 1 by 1e-12)."""
        from scipy.special import ndtri

        eps = 1e-12
        zg = ndtri(np.clip(np.asarray(u_gr, dtype=np.float64), eps, 1.0 - eps))
        zr = ndtri(np.clip(np.asarray(u_rz, dtype=np.float64), eps, 1.0 - eps))
        return self.gr_mean + self.gr_std * zg, self.rz_mean + self.rz_std * zr

    def to_dict(self) -> dict[str, float]:
        return {"gr_mean": self.gr_mean, "gr_std": self.gr_std, "rz_mean": self.rz_mean,
                "rz_std": self.rz_std}


#: the arc S/N definitions a calibration can target (both are truth columns of every store)
CALIBRATED_QUANTITIES = ("arc_snr", "arc_snr_peak")


@dataclass(frozen=True)
class TargetDistribution:
    """Piecewise-uniform distribution of the calibrated arc S/N (dimensionless).

    Parameters
    ----------
    bins : sequence of float
        Increasing bin edges of the calibrated quantity.
    fractions : sequence of float
        Probability of each bin (sums to 1); the density is uniform within a bin.
    quantity : {"arc_snr", "arc_snr_peak"}
        What the targets are: the integrated ``arc_snr`` (default) or the per-pixel peak
        ``arc_snr_peak`` (the earlier pipeline's "arc_snr", for which the remediation plan's
        table was written); both measured on the r band (:func:`gen5dask.kernels.photometry.
        arc_snr`).
    colours : ColourLaw, optional
        Source colours of calibrated injections (None: the prior's ``src_gr_range`` /
        ``src_rz_range``, as for uncalibrated ones).
    """

    bins: tuple[float, ...]
    fractions: tuple[float, ...]
    quantity: str = "arc_snr"
    colours: ColourLaw | None = None

    def __post_init__(self) -> None:
        if self.quantity not in CALIBRATED_QUANTITIES:
            msg = (f"calibrated quantity must be one of {CALIBRATED_QUANTITIES}, "
                   f"got {self.quantity!r}")
            raise ValueError(msg)
        b = np.asarray(self.bins, dtype=np.float64)
        f = np.asarray(self.fractions, dtype=np.float64)
        if b.ndim != 1 or b.size < 2 or np.any(np.diff(b) <= 0) or not np.all(np.isfinite(b)):
            msg = f"bins must be >= 2 finite increasing edges, got {self.bins}"
            raise ValueError(msg)
        if f.shape != (b.size - 1,) or np.any(f < 0) or abs(f.sum() - 1.0) > 1e-6:
            msg = f"fractions must be {b.size - 1} values >= 0 summing to 1, got {self.fractions}"
            raise ValueError(msg)
        object.__setattr__(self, "bins", tuple(float(v) for v in b))
        object.__setattr__(self, "fractions", tuple(float(v) for v in f))

    def sample(self, u_bin: np.ndarray, u_within: np.ndarray) -> np.ndarray:
        """Targets from two uniforms in [0, 1): one picks the bin, one the place in it."""
        b = np.asarray(self.bins)
        cdf = np.cumsum(self.fractions)
        cdf[-1] = 1.0
        k = np.searchsorted(cdf, np.asarray(u_bin, dtype=np.float64), side="right")
        k = np.minimum(k, len(self.fractions) - 1)
        return b[k] + np.asarray(u_within, dtype=np.float64) * (b[k + 1] - b[k])

    def bin_of(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[low, high)`` of the bin of each value (the last bin open above, the first below)."""
        b = np.asarray(self.bins)
        k = np.searchsorted(b, np.asarray(values, dtype=np.float64), side="right") - 1
        k = np.clip(k, 0, len(self.fractions) - 1)
        hi = np.where(k == len(self.fractions) - 1, np.inf, b[k + 1])
        return b[k], hi

    def fractions_of(self, values: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Fractions of finite ``values`` per bin, among those ``>= bins[0]``.

        The last bin is open above (the plan's "20+"), so values beyond the last edge count in
        it. Returns ``(fractions, n_in, n_below)``: ``n_below`` values fell under ``bins[0]``
        (invisible arcs) and are left out of the fractions (NaN fractions when ``n_in == 0``).
        """
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        b = np.asarray(self.bins)
        below = v < b[0]
        v = v[~below]
        if v.size == 0:
            return np.full(len(self.fractions), np.nan), 0, int(below.sum())
        k = np.minimum(np.searchsorted(b, v, side="right") - 1, len(self.fractions) - 1)
        counts = np.bincount(k, minlength=len(self.fractions))
        return counts / v.size, int(v.size), int(below.sum())

Range = tuple[float, float]

#: keys of ``InjectConfig`` that define the laws (what ``calibrate`` and ``inject`` share).
LAW_KEYS = (
    "theta_e_range", "lens_q_range", "shear_sigma", "src_pos_max_frac", "src_n_range",
    "src_reff_range", "src_q_range", "src_gr_range", "src_rz_range", "uncalibrated_dmag_range",
    "source_mode", "real_galaxy_rotate",
)


@dataclass(frozen=True)
class Laws:
    """Parameter laws of an injected lens and source (uniform on the ranges unless stated;
    units as in ``InjectConfig``: arcsec, rad, mag)."""

    theta_e_range: Range
    lens_q_range: Range
    shear_sigma: float
    src_pos_max_frac: float
    src_n_range: Range
    src_reff_range: Range
    src_q_range: Range
    src_gr_range: Range
    src_rz_range: Range
    uncalibrated_dmag_range: Range
    source_mode: str = "sersic"
    """``sersic`` or ``real_galaxy`` (then src_n/reff/q are NaN, src_pa is the rotation)."""
    real_galaxy_rotate: bool = True

    @classmethod
    def from_config(cls, icfg) -> Laws:
        """The laws of an ``InjectConfig`` (or any object with the :data:`LAW_KEYS`)."""
        vals = {}
        for k in LAW_KEYS:
            v = getattr(icfg, k)
            vals[k] = tuple(float(x) for x in v) if isinstance(v, (tuple, list)) else v
        return cls(**vals)


def _u(lo_hi: tuple[float, float], u: np.ndarray) -> np.ndarray:
    lo, hi = lo_hi
    return lo + (hi - lo) * u


def draw_injection_params(
    laws: Laws,
    *,
    seed: int,
    host_ids,
    replicates,
    modes,
    target: TargetDistribution | None = None,
    n_galaxies: int | None = None,
    stage: str = STAGE,
) -> dict[str, np.ndarray]:
    """Lens and source parameters for a batch of injections (vectorised, keyed draws).

    Parameters
    ----------
    laws : Laws or gen5dask.config.inject.InjectConfig
        Parameter laws (a config is converted with :meth:`Laws.from_config`).
    seed : int
        Run seed.
    host_ids, replicates : array_like of int
        Host sample id and replicate number of every injection, ``(n,)``.
    modes : array_like of int
        Mode codes (:data:`MODE_CODES`; see :func:`mode_codes`), ``(n,)``.
    target : TargetDistribution, optional
        Required when any mode is ``calibrated``.
    n_galaxies : int, optional
        Rows of the real-galaxy catalogue (``source_mode: real_galaxy``); the galaxy of each
        injection is row ``floor(u * n_galaxies)``. Without it ``src_index`` is -1 (callers
        that only need the other draws, e.g. the calibration bookkeeping).
    stage : str
        Stage name of the key (default ``"inject"``; the mock survey's injection-model anchors
        use their own stream).

    Returns
    -------
    dict of str to numpy.ndarray
        float64 ``(n,)`` each: ``theta_e``, ``src_x``, ``src_y``, ``src_reff`` (arcsec),
        ``lens_q``, ``src_q``, ``src_n``, ``shear_g1``, ``shear_g2`` (1), ``lens_pa``,
        ``src_pa`` (rad), ``src_gr``, ``src_rz`` (mag), ``src_dmag`` (mag; uncalibrated rows,
        NaN elsewhere) and ``target_arc_snr`` (calibrated rows, NaN elsewhere); int64
        ``src_index`` (real-galaxy catalogue row, -1 for Sersic sources). For real galaxies
        ``src_n``, ``src_reff``, ``src_q`` are NaN and ``src_pa`` is the image rotation.
    """
    host_ids = _as_i64("host_ids", host_ids)
    n = host_ids.shape[0]
    reps = _as_i64("replicates", replicates, n)
    mcode = _as_i64("modes", modes, n)
    u = np.empty((n, _N_UNIFORM), dtype=np.float64)
    g = np.empty((n, 2), dtype=np.float64)
    _draw_kernel(
        int(seed),
        stage_id(stage),
        host_ids,
        reps,
        mcode,
        _N_UNIFORM,
        NORMAL_COUNTERS["shear_g1"],
        NORMAL_COUNTERS["shear_g2"],
        u,
        g,
    )
    cfg = laws if isinstance(laws, Laws) else Laws.from_config(laws)
    c = COUNTERS
    theta_e = _u(cfg.theta_e_range, u[:, c["theta_e"]])
    r = cfg.src_pos_max_frac * theta_e * np.sqrt(u[:, c["src_r"]])
    phi = 2.0 * np.pi * u[:, c["src_phi"]]
    out = {
        "theta_e": theta_e,
        "lens_q": _u(cfg.lens_q_range, u[:, c["lens_q"]]),
        "lens_pa": np.pi * u[:, c["lens_pa"]],
        "shear_g1": cfg.shear_sigma * g[:, 0],
        "shear_g2": cfg.shear_sigma * g[:, 1],
        "src_x": r * np.cos(phi),
        "src_y": r * np.sin(phi),
        "src_n": _u(cfg.src_n_range, u[:, c["src_n"]]),
        "src_reff": _u(cfg.src_reff_range, u[:, c["src_reff"]]),
        "src_q": _u(cfg.src_q_range, u[:, c["src_q"]]),
        "src_pa": np.pi * u[:, c["src_pa"]],
        "src_gr": _u(cfg.src_gr_range, u[:, c["src_gr"]]),
        "src_rz": _u(cfg.src_rz_range, u[:, c["src_rz"]]),
    }
    uncal = mcode == MODE_CODES["uncalibrated"]
    cal = mcode == MODE_CODES["calibrated"]
    out["src_dmag"] = np.where(
        uncal, _u(cfg.uncalibrated_dmag_range, u[:, c["src_dmag"]]), np.nan
    )
    tgt = np.full(n, np.nan)
    if cal.any():
        if target is None:
            msg = "draw_injection_params: calibrated rows need a target distribution"
            raise ValueError(msg)
        tgt[cal] = target.sample(u[cal, c["target_bin"]], u[cal, c["target_within"]])
        if target.colours is not None:
            gr, rz = target.colours.draw(u[cal, c["src_gr"]], u[cal, c["src_rz"]])
            out["src_gr"][cal] = gr
            out["src_rz"][cal] = rz
    out["target_arc_snr"] = tgt
    out["src_index"] = np.full(n, -1, dtype=np.int64)
    if cfg.source_mode == "real_galaxy":
        for name in ("src_n", "src_reff", "src_q"):
            out[name] = np.full(n, np.nan)
        rot = 2.0 * np.pi * u[:, c["src_pa"]]
        out["src_pa"] = rot if cfg.real_galaxy_rotate else np.zeros(n)
        if n_galaxies is not None:
            if int(n_galaxies) < 1:
                msg = f"draw_injection_params: n_galaxies must be >= 1, got {n_galaxies}"
                raise ValueError(msg)
            ng = int(n_galaxies)
            idx = np.floor(u[:, c["src_index"]] * ng).astype(np.int64)
            out["src_index"] = np.minimum(idx, ng - 1)
    return out


__all__ = [
    "CALIBRATED_QUANTITIES",
    "COUNTERS",
    "ColourLaw",
    "LAW_KEYS",
    "Laws",
    "MODE_CODES",
    "NOISE_STAGE",
    "NORMAL_COUNTERS",
    "STAGE",
    "TargetDistribution",
    "draw_injection_params",
    "mode_codes",
    "noise_keys",
]
