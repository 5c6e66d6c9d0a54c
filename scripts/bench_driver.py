"""Driver cost of the per-sample table work at catalogue scale (no pixels).

Usage::

    python scripts/bench_driver.py --json bench_driver.json [--rows 1000000 10000000]
        [--stages split audit inject_plan evaluate]

For each size N and stage a fresh subprocess (so peaks are per stage) builds synthetic
per-sample tables shaped exactly as the stage's driver code receives them (string columns as
``read_table`` decodes them), then runs that stage's driver-side table work through the public
functions the stage itself calls:

* ``split``: ``compute_split`` + ``split_summary`` (host links, near-duplicate groups, HEALPix
  regions, region assignment, KS report) on N rows: N/4 survey hosts and 3N/4 training rows
  (injections and controls at their host's position). Store reads/writes are not included.
* ``audit``: the table part of ``audit`` on the same rows with diagnostic columns: split gates,
  class balance, metadata leakage, mask-bit fractions by kind, brightness comparison, and the
  keyed core-only subsample selection (the logistic regression itself sees a bounded
  subsample and its pixel features come from workers).
* ``inject_plan``: ``build_plan`` for the hosts that give N output rows (paired controls).
* ``evaluate``: ``compute_arm_metrics`` on a synthetic N-row scores table.

Reported per stage: driver CPU seconds (``process_time``) and wall seconds of the stage call
alone, the subprocess's peak RSS (``VmHWM``, includes the synthetic input tables) and its RSS
just before the stage (the tables themselves). The machine is shared: absolute seconds vary by
+-30 % or more; peaks are stable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

STAGES = ("split", "audit", "inject_plan", "evaluate")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def synthetic_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """The table ``split.load_rows`` returns for N rows (N/4 survey hosts, 3N/4 train rows)."""
    from gen5dask.store.schema import brickname_for

    rng = np.random.default_rng(seed)
    nh = max(n // 4, 1)
    nt = n - nh
    # hosts over a DR10-like patch: ra in [0, 60) deg, dec in [-10, 30) deg
    ra_h = rng.uniform(0.0, 60.0, nh)
    dec_h = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-10)), np.sin(np.radians(30)),
                                             nh)))
    host_id = np.arange(nh, dtype=np.int64) * 7 + 3
    link = rng.integers(0, nh, nt)
    kinds_t = np.where(rng.random(nt) < 0.5, "injection", "control")
    ra = np.concatenate([ra_h, ra_h[link]])
    dec = np.concatenate([dec_h, dec_h[link]])
    psf = rng.uniform(1.0, 1.6, n)
    depth = rng.normal(24.0, 0.3, n)
    theta = np.where(np.r_[np.zeros(nh, bool), kinds_t == "injection"],
                     rng.uniform(0.8, 2.5, n), np.nan)
    snr = np.where(np.isfinite(theta), rng.lognormal(1.5, 1.0, n), np.nan)
    out = pd.DataFrame({
        "store": np.r_[np.full(nh, "survey"), np.full(nt, "train")],
        "row": np.r_[np.arange(nh), np.arange(nt)],
        "sample": np.r_[host_id, (np.int64(1) << 58) + np.arange(nt, dtype=np.int64)],
        "ra": ra, "dec": dec,
        "host_sample": np.r_[np.full(nh, -1, np.int64), host_id[link]],
        "kind": np.r_[np.full(nh, "host"), kinds_t],
        "brickname": brickname_for(ra, dec),
        "psfsize_r": psf, "psfdepth_r": depth, "theta_e": theta, "arc_snr": snr,
    })
    with np.errstate(divide="ignore", invalid="ignore"):
        out["theta_e_over_psf"] = out["theta_e"] / out["psfsize_r"]
    return out


def _config():
    from gen5dask.config import load_config

    here = os.path.dirname(os.path.abspath(__file__))
    return load_config(os.path.join(here, "..", "configs", "demo.yaml"))


def run_split(n: int) -> dict:
    from gen5dask.stages.split import compute_split, split_summary

    cfg = _config()
    rows = synthetic_rows(n)
    rss0 = _status_mb("VmRSS")
    c0, w0 = time.process_time(), time.perf_counter()
    rows2, res = compute_split(rows, cfg, host_store="survey")
    summary, _ = split_summary(rows2, res, cfg)
    return {"seconds": time.process_time() - c0, "wall": time.perf_counter() - w0,
            "rss_before_mb": rss0, "n_regions": summary["n_regions"]}


def run_audit(n: int) -> dict:
    from gen5dask import gates as G
    from gen5dask.evaluate.stats import compare_populations
    from gen5dask.stages.audit import BIT_NAMES, class_balance, keyed_subsample, leakage_aucs
    from gen5dask.stages.split import compute_split

    cfg = _config()
    rows, _ = compute_split(synthetic_rows(n), cfg, host_store="survey")
    rng = np.random.default_rng(1)
    t = rows[["store", "sample", "kind", "split", "region", "host_sample", "ra", "dec",
              "psfsize_r", "psfdepth_r"]].copy()
    t["label"] = (t["kind"] == "injection").astype(np.int8)
    t["inject_mode"] = np.where(t["kind"] == "injection", "calibrated", "")
    for c in ("bad_pixel_frac", "wise_mask_frac", "core_brightness", "core_excess",
              *(f"bitfrac_{b}" for b in BIT_NAMES), "invvar_median_g", "invvar_median_r",
              "invvar_median_z"):
        t[c] = rng.random(len(t))
    rss0 = _status_mb("VmRSS")
    c0, w0 = time.process_time(), time.perf_counter()
    split_rows = t[["store", "sample", "ra", "dec", "host_sample", "region", "split"]]
    G.split_gates(split_rows, host_store="survey", dup_radius_arcsec=cfg.split.dup_radius_arcsec,
                  max_region_frac=cfg.split.max_region_frac,
                  min_test_regions=cfg.split.min_test_regions)
    train = t[t["store"] == "train"]
    class_balance(train, ("g", "r", "z"))
    leakage_aucs(train, cfg.audit.leakage_columns)
    t.groupby("kind")[[f"bitfrac_{b}" for b in BIT_NAMES]].mean()
    hosts = t.loc[t["kind"] == "host", "core_brightness"].to_numpy()
    compare_populations(hosts, hosts[:1000] * 0.5, n_boot=cfg.audit.n_boot, seed=0, name="b")
    for kind in ("control", "injection"):
        ids = train.loc[train["kind"] == kind, "sample"].to_numpy(np.int64)
        keyed_subsample(ids, cfg.audit.core_only_max_samples, cfg.seed, f"core/{kind}")
    return {"seconds": time.process_time() - c0, "wall": time.perf_counter() - w0,
            "rss_before_mb": rss0}


def run_inject_plan(n: int) -> dict:
    from gen5dask.stages.inject import build_plan

    cfg = _config()
    icfg = cfg.inject
    per_host = 1 + len(icfg.modes) * icfg.replicates  # paired controls
    if icfg.controls != "paired":
        per_host = max(1, (1 + len(icfg.modes) * icfg.replicates) // 2)
    nh = max(n // per_host, 1)
    hosts = pd.DataFrame({"row": np.arange(nh), "id": np.arange(nh, dtype=np.int64) * 7 + 3,
                          "host_mag_r": np.random.default_rng(2).uniform(17, 21, nh)})
    rss0 = _status_mb("VmRSS")
    c0, w0 = time.process_time(), time.perf_counter()
    plan = build_plan(icfg, cfg.seed, hosts)
    return {"seconds": time.process_time() - c0, "wall": time.perf_counter() - w0,
            "rss_before_mb": rss0, "plan_rows": int(plan.size), "hosts": nh}


def run_evaluate(n: int) -> dict:
    from gen5dask.evaluate.metrics import arm_metrics_kwargs, compute_arm_metrics

    cfg = _config()
    rng = np.random.default_rng(3)
    kind = rng.choice(np.array(["injection", "control", "hard_negative", "anchor", "stress",
                                "ring"]), n, p=[0.45, 0.45, 0.05, 0.02, 0.02, 0.01])
    label = np.isin(kind, ["injection", "anchor", "stress"]).astype(np.int8)
    score = np.clip(rng.beta(2, 5, n) + 0.4 * label, 0, 1)
    df = pd.DataFrame({
        "sample": np.arange(n, dtype=np.int64), "score": score, "label": label, "kind": kind,
        "split": rng.choice(np.array(["train", "val", "test"]), n, p=[0.7, 0.15, 0.15]),
        "tier": np.where(kind == "anchor", "A", ""),
        "inject_mode": np.where(kind == "injection", "calibrated", ""),
        "theta_e": rng.uniform(0.8, 2.5, n), "psfsize_r": rng.uniform(1.0, 1.6, n),
        "psfdepth_r": rng.normal(24, 0.3, n), "arc_snr": rng.lognormal(1.5, 1.0, n),
    })
    rss0 = _status_mb("VmRSS")
    c0, w0 = time.process_time(), time.perf_counter()
    compute_arm_metrics(df, **arm_metrics_kwargs(cfg.evaluate, seed=cfg.seed))
    return {"seconds": time.process_time() - c0, "wall": time.perf_counter() - w0,
            "rss_before_mb": rss0}


def _child(stage: str, n: int) -> None:
    fn = {"split": run_split, "audit": run_audit, "inject_plan": run_inject_plan,
          "evaluate": run_evaluate}[stage]
    out = fn(n)
    out["peak_rss_mb"] = _status_mb("VmHWM")
    print("RESULT " + json.dumps(out))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return {}
    res: dict = {"rows": {}}
    for n in args.rows:
        per: dict = {"driver_seconds": {}, "driver_wall_seconds": {}, "peak_rss_mb": {},
                     "input_tables_rss_mb": {}, "extra": {}}
        for stage in args.stages:
            p = subprocess.run([sys.executable, __file__, "--child", stage, str(n)],
                               capture_output=True, text=True, check=False)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            if p.returncode != 0 or not line:
                per["extra"][stage] = {"error": p.stderr.strip().splitlines()[-3:]}
                print(f"{n:>10} {stage:<12} FAILED: {p.stderr.strip()[-400:]}")
                continue
            r = json.loads(line[0][7:])
            per["driver_seconds"][stage] = r.pop("seconds")
            per["driver_wall_seconds"][stage] = r.pop("wall")
            per["peak_rss_mb"][stage] = r.pop("peak_rss_mb")
            per["input_tables_rss_mb"][stage] = r.pop("rss_before_mb")
            per["extra"][stage] = r
            print(f"{n:>10} {stage:<12} cpu {per['driver_seconds'][stage]:8.2f} s  "
                  f"wall {per['driver_wall_seconds'][stage]:8.2f} s  "
                  f"peak {per['peak_rss_mb'][stage]:8.0f} MB  "
                  f"(tables {per['input_tables_rss_mb'][stage]:6.0f} MB)", flush=True)
        per["driver_peak_rss_mb"] = max(per["peak_rss_mb"].values(), default=None)
        res["rows"][str(n)] = per
        if args.json:  # after each size, so a long run leaves partial results
            with open(args.json, "w") as fh:
                json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
