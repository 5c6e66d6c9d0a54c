"""``gen5dask calibrate``: the target arc_snr distribution of calibrated injections.

Writes ``OUTPUT_DIR/calibration.json`` and figures under ``OUTPUT_DIR/calibration/``.

* ``calibrate.target: plan`` -- the remediation plan's table: ``bins`` (arc_snr edges, the last
  one capping the open "20+" bin) and ``fractions``, uniform within each bin.
* ``calibrate.target: anchors`` -- measured on the anchors: the visibility proxy
  (:func:`gen5dask.kernels.photometry.visibility_proxy`, S/N form) of every anchor cutout is
  turned into an implied arc_snr by the relation ``log arc_snr = a + b log proxy`` fitted (least
  squares, residual scatter recorded) on a dry run of calibrated injections into hosts with
  known arc_snr (log-uniform in ``dry_run_snr_range``). Anchors with a non-positive proxy have
  no measurable arc and are counted in the first bin. The histogram of implied arc_snr in
  ``bins`` gives the target fractions.

Either way a dry run of ``dry_run_n`` calibrated injections (same keys as ``inject``) records
the implied ``src_dmag`` distribution (quantiles) and bound-hit rate.

JSON keys: ``bins``, ``target_fractions``, ``source`` (``plan``/``anchors``), ``n`` and
``achieved_fractions`` (null until ``inject`` ran; then counts and fractions of calibrated
injections), ``achieved_fractions_uncalibrated``, ``bound_hits`` ``{"bright", "faint"}``,
``unattainable`` (targets inside a jump of arc_snr(amplitude), given the nearest attainable
arc_snr instead),
``implied_src_dmag`` (quantiles, or null without hosts), ``proxy_relation`` (anchors only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gen5dask.kernels import photometry
from gen5dask.kernels.rng import keys_for, stage_id
from gen5dask.provenance import provenance_attrs
from gen5dask.sim.injection_params import MODE_CODES, TargetDistribution, draw_injection_params
from gen5dask.store import StoreError, is_complete, read_samples, read_table, store_geometry
from gen5dask.store.schema import KINDS, QUALITY

STAGE = "calibrate"
QUANTILES = (0.05, 0.16, 0.5, 0.84, 0.95)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(o: Any):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    msg = f"not JSON serialisable: {type(o).__name__}"
    raise TypeError(msg)


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
        ``arc_snr``, ``target``, ``src_dmag``, ``quality``, ``image_r`` (injected r-band
        stamps, nanomaggies) and ``host_id``; None when no host store exists.
    """
    from gen5dask.stages.inject import (
        HOST_VARS,
        PLAN_DTYPE,
        ROLE_INJECTION,
        _spec,
        host_table,
        inject_rows,
        resolve_hosts,
        sample_id,
    )

    try:
        host_path = resolve_hosts(cfg)
    except StoreError:
        return None
    hosts, _ = host_table(cfg, host_path, max_hosts=n)
    if hosts.empty:
        return None
    geom = store_geometry(host_path)
    plan = np.zeros(len(hosts), dtype=PLAN_DTYPE)
    plan["host_row"] = hosts["row"].to_numpy()
    plan["host_id"] = hosts["id"].to_numpy()
    plan["role"] = ROLE_INJECTION
    plan["mode"] = MODE_CODES["calibrated"]
    plan["host_mag_r"] = hosts["host_mag_r"].to_numpy()
    plan["sample"] = sample_id(plan["host_id"], ROLE_INJECTION, mode=MODE_CODES["calibrated"])
    host = read_samples(host_path, plan["host_row"], HOST_VARS)
    override = None
    if target_override == "loguniform":
        lo, hi = cfg.calibrate.dry_run_snr_range
        u = _keyed_uniform(cfg.seed, "calibrate.dry_run", plan["host_id"])
        override = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    spec = _spec(cfg, geom["bands"], geom["stamp_size"], target)
    spec["inject"] = {**spec["inject"], "store_arc": False}
    data, summary = inject_rows(host, plan, spec, target_override=override)
    ir = list(geom["bands"]).index("r")
    return {
        "arc_snr": data["arc_snr"].astype(np.float64),
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


def _anchor_images_r(cfg) -> tuple[np.ndarray, str]:
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
    ir = list(geom["bands"]).index("r")
    img = read_samples(path, rows, ["image"])["image"][:, ir]
    return img, str(path)


def anchors_target(cfg) -> tuple[TargetDistribution, dict]:
    """Target fractions implied by the anchors' visibility proxy (see module docstring)."""
    ccfg = cfg.calibrate
    r_in, r_out = ccfg.visibility_annulus
    images, apath = _anchor_images_r(cfg)
    proxy_a = photometry.visibility_proxy(
        images, r_in=r_in, r_out=r_out, model=ccfg.visibility_model
    ).snr
    plan_t = TargetDistribution(ccfg.bins, ccfg.fractions)
    dr = dry_run(cfg, target=plan_t, n=ccfg.dry_run_n, target_override="loguniform")
    if dr is None:
        msg = "calibrate.target 'anchors' needs a host store for the dry run (see inject.hosts)"
        raise StoreError(msg)
    proxy_d = photometry.visibility_proxy(
        dr["image_r"], r_in=r_in, r_out=r_out, model=ccfg.visibility_model
    ).snr
    rel = fit_proxy_relation(proxy_d, dr["arc_snr"])
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = np.where(
            proxy_a > 0, np.exp(rel["intercept"] + rel["slope"] * np.log(proxy_a)), np.nan
        )
    n_nonpos = int((~(proxy_a > 0)).sum())
    implied = np.where(np.isfinite(implied), implied, ccfg.bins[0])
    fr, n, _ = TargetDistribution(ccfg.bins, ccfg.fractions).fractions_of(implied)
    if n == 0 or fr.sum() == 0:
        msg = f"{apath}: no anchor with a finite visibility proxy"
        raise ValueError(msg)
    info = {
        **rel,
        "proxy": f"visibility_proxy snr, model {ccfg.visibility_model}, annulus {r_in}-{r_out} px",
        "anchor_store": apath,
        "n_anchors": int(images.shape[0]),
        "n_anchors_nonpositive_proxy": n_nonpos,
        "anchor_implied_arc_snr_quantiles": dict(
            zip(map(str, QUANTILES), np.quantile(implied, QUANTILES).tolist(), strict=True)
        ),
    }
    return TargetDistribution(ccfg.bins, fr.tolist()), info


# ---------------------------------------------------------------------------------------------
# achieved fractions (after inject)
# ---------------------------------------------------------------------------------------------


def calibration_summary(cfg, *, target: TargetDistribution | None = None) -> dict:
    """Achieved arc_snr fractions of ``train.zarr`` against the target.

    Returns ``n`` (injections with arc_snr >= bins[0]), ``achieved_fractions``,
    ``n_below_range`` (arc_snr < bins[0]; left out of the fractions), the same three with
    suffix ``_uncalibrated`` for the uncalibrated mode, ``bound_hits`` ``{"bright", "faint"}`` and
    ``unattainable``; fractions are None when a mode is absent or the store is incomplete.
    """
    from gen5dask.stages.inject import ID_STRIDE, target_distribution

    if target is None:
        target, _ = target_distribution(cfg)
    out: dict[str, Any] = {
        "n": 0,
        "achieved_fractions": None,
        "n_below_range": 0,
        "n_uncalibrated": 0,
        "achieved_fractions_uncalibrated": None,
        "n_below_range_uncalibrated": 0,
        "bound_hits": {"bright": 0, "faint": 0},
        "unattainable": 0,
    }
    path = cfg.layout.train
    if not is_complete(path):
        return out
    tab = read_table(path, ["sample", "host_sample", "kind", "inject_mode", "quality", "arc_snr"])
    inj = tab["kind"].to_numpy() == "injection"
    mode = tab["inject_mode"].to_numpy()
    cal = inj & (mode == "calibrated")
    unc = inj & (mode == "uncalibrated")
    snr = tab["arc_snr"].to_numpy(np.float64)
    if cal.any():
        fr, n, below = target.fractions_of(snr[cal])
        out["n"], out["achieved_fractions"], out["n_below_range"] = n, fr.tolist(), below
        q = tab["quality"].to_numpy()[cal]
        out["bound_hits"] = {
            "bright": int((q == "bound_hit_bright").sum()),
            "faint": int((q == "bound_hit_faint").sum()),
        }
        code = tab["sample"].to_numpy(np.int64)[cal] % ID_STRIDE
        par = draw_injection_params(
            cfg.inject,
            seed=cfg.seed,
            host_ids=tab["host_sample"].to_numpy(np.int64)[cal],
            replicates=(code - 2) // 2,
            modes=np.full(code.size, MODE_CODES["calibrated"]),
            target=target,
        )
        ok = q == QUALITY[0]
        miss = np.abs(snr[cal] / par["target_arc_snr"] - 1.0) > 1e-4
        out["unattainable"] = int((ok & miss).sum())
    if unc.any():
        fr, n, below = target.fractions_of(snr[unc])
        out["n_uncalibrated"], out["achieved_fractions_uncalibrated"] = n, fr.tolist()
        out["n_below_range_uncalibrated"] = below
    return out


def plot_calibration(data: dict, path: Path) -> Path:
    """Bar chart of target vs achieved arc_snr fractions (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    bins = data["bins"]
    labels = [f"{bins[i]:g}-{bins[i + 1]:g}" for i in range(len(bins) - 1)]
    x = np.arange(len(labels))
    series = [("target", data["target_fractions"])]
    if data.get("achieved_fractions") is not None:
        series.append((f"calibrated (n={data['n']})", data["achieved_fractions"]))
    if data.get("achieved_fractions_uncalibrated") is not None:
        series.append(
            (f"uncalibrated (n={data['n_uncalibrated']})", data["achieved_fractions_uncalibrated"])
        )
    w = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, (name, vals) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * w, vals, w, label=name)
    ax.set_xticks(x, labels)
    ax.set_xlabel("arc_snr bin (integrated, r band)")
    ax.set_ylabel("fraction")
    ax.set_title(f"arc_snr target ({data['source']}) vs achieved")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def record_achieved(cfg, *, target: TargetDistribution | None = None, source: str | None = None):
    """Update ``calibration.json`` (creating it from the target if absent) with the achieved
    fractions of ``train.zarr``; redraw the plot. Returns the JSON dict."""
    path = cfg.layout.calibration_json
    if path.exists():
        data = json.loads(path.read_text())
        target = TargetDistribution(data["bins"], data["target_fractions"])
    else:
        if target is None:
            from gen5dask.stages.inject import target_distribution

            target, source = target_distribution(cfg)
        data = {
            "bins": list(target.bins),
            "target_fractions": list(target.fractions),
            "source": source or "config",
            "implied_src_dmag": None,
        }
    data.update(calibration_summary(cfg, target=target))
    _write_json(path, data)
    if cfg.calibrate.plot:
        plot_calibration(data, cfg.layout.calibration_dir / "target_vs_achieved.png")
    return data


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------


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
    prov = provenance_attrs(
        stage=STAGE,
        config={"calibrate": ccfg.model_dump(mode="json"), "inject": cfg.inject.model_dump(
            mode="json"), "seed": cfg.seed},
        seed=cfg.seed,
        parents=None,
    )
    if path.exists() and not force:
        old = json.loads(path.read_text())
        if old.get("config_hash") == prov["config_hash"]:
            return path
    relation = None
    if ccfg.target == "plan":
        target = TargetDistribution(ccfg.bins, ccfg.fractions)
    else:
        target, relation = anchors_target(cfg)
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
        "source": ccfg.target,
        "implied_src_dmag": implied,
        "proxy_relation": relation,
        "config_hash": prov["config_hash"],
        "created": prov["created"],
    }
    data.update(calibration_summary(cfg, target=target))
    _write_json(path, data)
    if ccfg.plot:
        plot_calibration(data, cfg.layout.calibration_dir / "target_vs_achieved.png")
    return path


__all__ = [
    "anchors_target",
    "calibration_summary",
    "dry_run",
    "fit_proxy_relation",
    "plot_calibration",
    "record_achieved",
    "run_calibrate",
]
