"""``gen5dask calibrate``: the target arc S/N distribution of calibrated injections.

Writes ``OUTPUT_DIR/calibration.json`` and figures under ``OUTPUT_DIR/calibration/``.

* ``calibrate.target: plan`` -- the remediation plan's table: ``bins`` (arc_snr edges, the last
  one capping the open "20+" bin) and ``fractions``, uniform within each bin.
* ``calibrate.target: anchors`` -- measured on the anchors: the visibility proxy
  (:func:`gen5dask.kernels.photometry.visibility_proxy`, S/N form) of every anchor cutout is
  inverted with a dry run of ``proxy_dry_run_n`` calibrated injections into hosts with known arc
  S/N (log-uniform in ``dry_run_snr_range``). ``calibrate.inversion: regression``: the relation
  ``log s = a + b log proxy`` (least squares, residual scatter recorded) gives an implied value
  per anchor; anchors with a non-positive proxy have no measurable arc and are counted in the
  first bin; their histogram in ``bins`` gives the target fractions. ``deconvolve``: the
  maximum-likelihood fractions of a forward model of the proxy
  (:mod:`gen5dask.injection.deconvolve`), with a bootstrap interval per fraction
  (``proxy_relation.deconvolution.fractions_interval``). Where the anchors carry their true
  arc S/N (the mock survey), ``proxy_relation.recovery`` says how far the recovered
  distribution is from it.

The calibrated quantity is ``calibrate.quantity``: ``arc_snr`` (integrated) or ``arc_snr_peak``
(per-pixel peak, the earlier pipeline's "arc_snr"); ``s`` above is that quantity.

Either way a dry run of ``dry_run_n`` calibrated injections (same keys as ``inject``) records
the implied ``src_dmag`` distribution (quantiles) and bound-hit rate.

JSON keys: ``bins``, ``target_fractions``, ``quantity``, ``source`` (``plan``/``anchors``),
``n`` and ``achieved_fractions`` (null until ``inject`` ran; then counts and fractions of calibrated
injections), ``achieved_fractions_uncalibrated``, ``bound_hits`` ``{"bright", "faint"}``,
``unattainable`` (targets inside a jump of arc_snr(amplitude), given the nearest attainable
arc_snr instead),
``implied_src_dmag`` (quantiles, or null without hosts), ``proxy_relation`` (anchors only).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gen5dask.evaluate.calibration import recovery_distance
from gen5dask.injection.arc_colours import colour_law_from, measure_arc_colours
from gen5dask.injection.batch import inject_rows
from gen5dask.injection.calibration import empty_achieved, plot_calibration, write_json
from gen5dask.injection.deconvolve import deconvolve_fractions
from gen5dask.injection.laws import LAW_KEYS, ColourLaw, TargetDistribution
from gen5dask.injection.plan import HOST_VARS, calibrated_plan, host_table
from gen5dask.injection.spec import InjectionModel, InjectSpec
from gen5dask.kernels import photometry
from gen5dask.kernels.rng import key, keys_for, stage_id
from gen5dask.provenance import config_hash, utc_now
from gen5dask.stages.declare import config_value, stage
from gen5dask.stages.inject import resolve_hosts
from gen5dask.store import StoreError, read_samples, store_geometry
from gen5dask.store.schema import KINDS

STAGE = "calibrate"
QUANTILES = (0.05, 0.16, 0.5, 0.84, 0.95)


def _keyed_uniform(seed: int, stage: str, ids: np.ndarray) -> np.ndarray:
    """One uniform in [0, 1) per id, keyed by (seed, stage, id)."""
    k = keys_for(int(seed), stage_id(stage), np.ascontiguousarray(ids, dtype=np.int64), 0, 0)
    return (k >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


# ---------------------------------------------------------------------------------------------
# dry run
# ---------------------------------------------------------------------------------------------


def dry_run(
    cfg,
    *,
    target: TargetDistribution,
    n: int,
    target_override: str | None = None,
) -> dict[str, np.ndarray] | None:
    """Calibrated injections into the first ``n`` valid hosts, in process.

    Parameters
    ----------
    cfg : gen5dask.config.Config
        Run config (``inject`` parameter laws).
    target : TargetDistribution
        Target arc_snr law.
    n : int
        Number of injections (one per host).
    target_override : {"loguniform"}, optional
        Draw the targets log-uniformly in ``calibrate.dry_run_snr_range`` instead (for the
        proxy fit), keyed by (seed, "calibrate.dry_run", host id).

    Returns
    -------
    dict or None
        ``arc_snr``, ``arc_snr_peak``, ``target``, ``src_dmag``, ``quality``, ``image_r``
        (injected r-band stamps, nanomaggies) and ``host_id``; None when no host store
        exists.
    """
    try:
        host_path = resolve_hosts(cfg)
    except StoreError:
        return None
    hosts, _ = host_table(
        host_path, aperture_pix=cfg.inject.host_mag_aperture_pix, max_hosts=n
    )
    if hosts.empty:
        return None
    geom = store_geometry(host_path)
    plan = calibrated_plan(hosts)
    host = read_samples(host_path, plan["host_row"], HOST_VARS)
    override = None
    if target_override == "loguniform":
        lo, hi = cfg.calibrate.dry_run_snr_range
        u = _keyed_uniform(cfg.seed, "calibrate.dry_run", plan["host_id"])
        override = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    icfg = cfg.inject
    spec = InjectSpec(
        model=InjectionModel.from_config(icfg),
        seed=int(cfg.seed),
        pixscale=float(cfg.pixscale),
        bands=tuple(geom["bands"]),
        stamp_size=int(geom["stamp_size"]),
        target=target,
        calibrated_dmag_bounds=tuple(float(v) for v in icfg.calibrated_dmag_bounds),
        poisson=bool(icfg.poisson),
        gain=float(icfg.gain),
        store_arc=False,
    )
    data, summary = inject_rows(host, plan, spec, target_override=override)
    ir = list(geom["bands"]).index("r")
    return {
        "arc_snr": data["arc_snr"].astype(np.float64),
        "arc_snr_peak": data["arc_snr_peak"].astype(np.float64),
        "target": summary["target_arc_snr"],
        "src_dmag": data["src_dmag"].astype(np.float64),
        "quality": data["quality"],
        "image_r": data["image"][:, ir],
        "host_id": plan["host_id"],
    }


# ---------------------------------------------------------------------------------------------
# anchors -> target
# ---------------------------------------------------------------------------------------------


def fit_proxy_relation(proxy: np.ndarray, arc_snr: np.ndarray) -> dict[str, float]:
    """Least-squares ``log arc_snr = intercept + slope * log proxy`` on rows with both > 0.

    Returns ``slope``, ``intercept``, ``scatter`` (rms residual, natural-log units) and ``n``.
    """
    p = np.asarray(proxy, dtype=np.float64)
    s = np.asarray(arc_snr, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(s) & (p > 0) & (s > 0)
    if ok.sum() < 3:
        msg = f"proxy relation: only {int(ok.sum())} dry-run injections with proxy > 0 (need 3)"
        raise ValueError(msg)
    x, y = np.log(p[ok]), np.log(s[ok])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    return {
        "slope": float(slope),
        "intercept": float(intercept),
        "scatter": float(np.sqrt(np.mean(resid**2))),
        "n": int(ok.sum()),
    }


def _anchor_rows(cfg) -> tuple[Path, np.ndarray, dict]:
    """Anchor store, rows of kind ``anchor`` and the store geometry."""
    ccfg = cfg.calibrate
    if ccfg.anchors:
        path = Path(ccfg.anchors)
    elif cfg.layout.anchors.exists():
        path = cfg.layout.anchors
    else:
        path = cfg.layout.survey
    if not path.exists():
        msg = f"calibrate.target is 'anchors' but the anchor store {path} does not exist"
        raise StoreError(msg)
    geom = store_geometry(path)
    kinds = read_samples(path, slice(0, geom["n_samples"]), ["kind"])["kind"]
    rows = np.flatnonzero(kinds == KINDS.index("anchor"))
    if rows.size == 0:
        msg = f"{path}: no samples of kind 'anchor' for calibrate.target 'anchors'"
        raise StoreError(msg)
    return path, rows, geom


def _truth(path: Path, rows: np.ndarray, name: str) -> np.ndarray:
    """A truth column of the anchors (mock anchors only; NaN where the store has none)."""
    try:
        return read_samples(path, rows, [name])[name].astype(np.float64)
    except StoreError:
        return np.full(rows.size, np.nan)


def _anchor_images_r(cfg) -> tuple[np.ndarray, str, dict]:
    ccfg = cfg.calibrate
    path, rows, geom = _anchor_rows(cfg)
    ir = list(geom["bands"]).index("r")
    img = read_samples(path, rows, ["image"])["image"][:, ir]
    sample = read_samples(path, rows, ["sample"])["sample"]
    return img, str(path), {"sample": sample, "true": _truth(path, rows, ccfg.quantity)}


def anchors_colours(cfg) -> tuple[ColourLaw, dict]:
    """Colour law of calibrated injections measured in the anchors' annuli, with the
    per-anchor colours and, for mock anchors, the recovery of their true source colours."""
    ccfg = cfg.calibrate
    path, rows, geom = _anchor_rows(cfg)
    images = read_samples(path, rows, ["image"])["image"]
    r_in, r_out = ccfg.visibility_annulus
    m = measure_arc_colours(images, geom["bands"], r_in=r_in, r_out=r_out,
                            threshold_sigma=ccfg.colour_threshold_sigma,
                            min_snr=ccfg.colour_min_snr)
    law, summary = colour_law_from(m)
    sample = read_samples(path, rows, ["sample"])["sample"].astype(np.int64)
    info: dict[str, Any] = {
        "source": "anchors", "law": law.to_dict(), "summary": summary,
        "method": (f"arc-masked azimuthal-median residual in the {r_in}-{r_out} px annulus, "
                   f"pixels above {ccfg.colour_threshold_sigma} sigma of the band-summed smoothed "
                   f"detection map, r-band arc S/N >= {ccfg.colour_min_snr}"),
        "anchor_store": str(path),
        "per_anchor": {"sample": sample.tolist(),
                       "g_r": [None if not np.isfinite(v) else float(v) for v in m["g_r"]],
                       "r_z": [None if not np.isfinite(v) else float(v) for v in m["r_z"]]},
        "recovery": None,
    }
    t_gr, t_rz = _truth(path, rows, "src_gr"), _truth(path, rows, "src_rz")
    if np.isfinite(t_gr).any():
        ok = np.isfinite(m["g_r"]) & np.isfinite(t_gr) & np.isfinite(t_rz)
        info["recovery"] = {
            "n": int(ok.sum()),
            "true_g_r_median": float(np.nanmedian(t_gr)),
            "true_r_z_median": float(np.nanmedian(t_rz)),
            "true_g_r_std": float(np.nanstd(t_gr)),
            "true_r_z_std": float(np.nanstd(t_rz)),
            "median_error_g_r": float(np.median(m["g_r"][ok] - t_gr[ok])) if ok.any() else None,
            "median_error_r_z": float(np.median(m["r_z"][ok] - t_rz[ok])) if ok.any() else None,
        }
    return law, info


def anchors_target(cfg) -> tuple[TargetDistribution, dict]:
    """Target fractions implied by the anchors' visibility proxy (see module docstring).

    ``calibrate.inversion`` chooses the per-anchor regression or the forward-model
    deconvolution. Where the anchor store knows the anchors' true value of the calibrated
    quantity (the mock survey), the recovery is scored against it (``recovery``:
    :func:`gen5dask.evaluate.calibration.recovery_distance` plus the total-variation distance of
    the binned fractions); the implied value per anchor is kept (``anchor_implied``) so anyone
    can recompute it.
    """
    ccfg = cfg.calibrate
    quantity = ccfg.quantity
    r_in, r_out = ccfg.visibility_annulus
    images, apath, anchor = _anchor_images_r(cfg)
    proxy_a = photometry.visibility_proxy(
        images, r_in=r_in, r_out=r_out, model=ccfg.visibility_model
    ).snr
    plan_t = TargetDistribution(ccfg.bins, ccfg.fractions, quantity)
    dr = dry_run(cfg, target=plan_t, n=ccfg.proxy_dry_run_n, target_override="loguniform")
    if dr is None:
        msg = "calibrate.target 'anchors' needs a host store for the dry run (see inject.hosts)"
        raise StoreError(msg)
    proxy_d = photometry.visibility_proxy(
        dr["image_r"], r_in=r_in, r_out=r_out, model=ccfg.visibility_model
    ).snr
    rel = fit_proxy_relation(proxy_d, dr[quantity])
    n_nonpos = int((~(proxy_a > 0)).sum())
    info: dict[str, Any] = {}
    if ccfg.inversion == "deconvolve":
        rng = np.random.default_rng(int(key(cfg.seed, "calibrate.bootstrap", 0)))
        dec = deconvolve_fractions(proxy_a, proxy_d, dr[quantity], ccfg.bins,
                                   bootstrap=ccfg.bootstrap, rng=rng)
        implied = dec.pop("implied")
        fr = np.asarray(dec.pop("fractions"))
        dec["n_dry_run"] = int(proxy_d.size)
        dec["fractions_interval"] = fraction_intervals(dec["fractions_bootstrap"])
        info["deconvolution"] = dec
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            implied = np.where(
                proxy_a > 0, np.exp(rel["intercept"] + rel["slope"] * np.log(proxy_a)), np.nan
            )
        implied = np.where(np.isfinite(implied), implied, ccfg.bins[0])
        fr, n, _ = plan_t.fractions_of(implied)
        if n == 0 or fr.sum() == 0:
            msg = f"{apath}: no anchor with a finite visibility proxy"
            raise ValueError(msg)
    info.update({
        **rel,
        "inversion": ccfg.inversion,
        "quantity": quantity,
        "proxy": f"visibility_proxy snr, model {ccfg.visibility_model}, annulus {r_in}-{r_out} px",
        "anchor_store": apath,
        "n_anchors": int(images.shape[0]),
        "n_anchors_nonpositive_proxy": n_nonpos,
        "anchor_implied_arc_snr_quantiles": dict(
            zip(map(str, QUANTILES), np.nanquantile(implied, QUANTILES).tolist(), strict=True)
        ),
        "anchor_implied": {"sample": anchor["sample"].astype(np.int64).tolist(),
                           "implied": [None if not np.isfinite(v) else float(v)
                                       for v in implied]},
        "recovery": recovery_of(implied, fr, anchor["true"], ccfg.bins,
                                boot=info.get("deconvolution", {}).get("fractions_bootstrap")),
    })
    return TargetDistribution(ccfg.bins, fr.tolist(), quantity), info


#: percentiles of the bootstrap fractions written as ``fractions_interval``
INTERVAL_PERCENTILES = (2.5, 16.0, 84.0, 97.5)


def fraction_intervals(boot) -> dict[str, list[float]] | None:
    """Percentiles ``INTERVAL_PERCENTILES`` of bootstrap fractions ``(n_boot, n_bins)`` per bin,
    keyed ``"2.5"``, ``"16"``, ... (None without resamples)."""
    b = np.asarray(boot, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] == 0:
        return None
    q = np.percentile(b, INTERVAL_PERCENTILES, axis=0)
    return {f"{p:g}": row.tolist() for p, row in zip(INTERVAL_PERCENTILES, q, strict=True)}


def recovery_of(implied: np.ndarray, fractions: np.ndarray, true: np.ndarray,
                bins, boot=None) -> dict | None:
    """How well the anchors' calibration recovered their true values (None without truth).

    :func:`gen5dask.evaluate.calibration.recovery_distance` of the per-anchor implied values
    against the true ones, plus ``total_variation``: ``0.5 sum_k |f_k - t_k|`` between the
    target fractions and the true fractions in ``bins`` (the last bin open above, as the
    target's). With bootstrap fractions ``boot`` (``(n_boot, n_bins)``),
    ``total_variation_interval_95``: the 2.5 and 97.5 percentiles of the same distance over
    the resamples (None without).
    """
    t = np.asarray(true, dtype=np.float64)
    if not np.isfinite(t).any():
        return None
    out = recovery_distance(implied, t, bins=bins)
    t_fr, n_t, _ = TargetDistribution(bins, [1.0] + [0.0] * (len(bins) - 2)).fractions_of(t)
    out["fractions_true_open"] = t_fr.tolist()
    out["n_true_in_range"] = n_t
    out["fractions_target"] = np.asarray(fractions, dtype=np.float64).tolist()
    out["total_variation"] = (float(0.5 * np.abs(np.asarray(fractions) - t_fr).sum())
                              if n_t else None)
    b = np.asarray(boot if boot is not None else [], dtype=np.float64)
    out["total_variation_interval_95"] = (
        np.percentile(0.5 * np.abs(b - t_fr[None, :]).sum(axis=1), [2.5, 97.5]).tolist()
        if n_t and b.ndim == 2 and b.shape[0] else None)
    return out


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------


#: what the dry run reads of ``inject``: the laws, the source, rendering, bounds and noise.
INJECT_KEYS = (
    *LAW_KEYS, "hosts", "host_mag_aperture_pix", "real_galaxy_catalog",
    "real_galaxy_image_dir", "real_galaxy_max_size", "real_galaxy_threshold_sigma", "psf_beta",
    "supersample", "calibrated_dmag_bounds", "poisson", "gain",
)
READS = ("calibrate", "seed", "pixscale", *(f"inject.{k}" for k in INJECT_KEYS))


@stage("calibrate", reads=READS, after=("simulate", "anchors"))
def run_calibrate(cfg, client=None, *, force: bool = False) -> Path:
    """Write the arc_snr target (and implied src_dmag law) to ``calibration.json``.

    Parameters
    ----------
    cfg : gen5dask.config.Config
        Run config (``calibrate`` section; ``inject`` laws for the dry run).
    client : distributed.Client, optional
        Unused: the dry run is one small in-process batch.
    force : bool
        Recompute even if ``calibration.json`` exists with the same config hash.

    Returns
    -------
    Path
        ``cfg.layout.calibration_json``.
    """
    del client
    ccfg = cfg.calibrate
    path = cfg.layout.calibration_json
    chash = config_hash({k: config_value(cfg, k) for k in READS})
    if path.exists() and not force:
        old = json.loads(path.read_text())
        if old.get("config_hash") == chash:
            return path
    relation = None
    if ccfg.target == "plan":
        target = TargetDistribution(ccfg.bins, ccfg.fractions, ccfg.quantity)
    else:
        target, relation = anchors_target(cfg)
    colours = {"source": "prior", "law": None}
    if ccfg.colours == "anchors":
        law, colours = anchors_colours(cfg)
        target = replace(target, colours=law)
    implied = None
    dr = dry_run(cfg, target=target, n=ccfg.dry_run_n)
    if dr is not None:
        d = dr["src_dmag"]
        q = dr["quality"]
        implied = {
            "quantiles": dict(
                zip(map(str, QUANTILES), np.nanquantile(d, QUANTILES).tolist(), strict=True)
            ),
            "mean": float(np.nanmean(d)),
            "n_dry_run": int(d.size),
            "bound_hit_fraction": float(np.mean(q != 0)),
        }
    data: dict[str, Any] = {
        "bins": list(target.bins),
        "target_fractions": list(target.fractions),
        "quantity": target.quantity,
        "colours": colours,
        "source": ccfg.target,
        "implied_src_dmag": implied,
        "proxy_relation": relation,
        "config_hash": chash,
        "created": utc_now(),
        # filled by `inject` once train.zarr is complete (record_achieved)
        **empty_achieved(),
    }
    write_json(path, data)
    if ccfg.plot:
        plot_calibration(data, cfg.layout.calibration_dir / "target_vs_achieved.png")
    return path


__all__ = [
    "INJECT_KEYS",
    "READS",
    "anchors_colours",
    "anchors_target",
    "dry_run",
    "fit_proxy_relation",
    "fraction_intervals",
    "recovery_of",
    "run_calibrate",
]
