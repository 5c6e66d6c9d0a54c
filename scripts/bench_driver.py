"""Driver cost of the per-sample table work at catalogue scale (no pixels).

Usage::

    python scripts/bench_driver.py --json bench_driver.json [--rows 1000000 10000000]
        [--stages split audit inject_plan evaluate] [--workdir DIR] [--keep]

For each size N a setup subprocess writes synthetic contract stores to ``--workdir`` (N/4 survey
hosts over a DR10-like patch and 3N/4 training rows, injections and controls at their host's
position; 1x1-pixel stamps, since no stage measured here reads pixels) plus the audit's
per-sample diagnostic scratch columns (random values, as the audit's chunk tasks would write
them). Then each stage runs in a fresh subprocess (so peaks are per stage):

* ``split``: the stage itself, ``run_split(cfg)`` on the stores: reads the columns, host links,
  near-duplicate groups, HEALPix regions, region assignment, KS report, brick lists, writes
  ``region``/``split`` into both stores and the ``split/`` files (so the later stages see a
  split).
* ``audit``: the table part of ``audit`` on the stores and diagnostic columns, through the
  functions the stage calls: split gates, class balance (train by label and kind, survey by
  kind), metadata leakage AUCs, mask-bit fractions by kind, the brightness comparison and the
  keyed core-only subsample selection (the pixel tasks run on workers and are not driver work).
* ``inject_plan``: ``write_plan`` (what ``inject`` runs: the plan file written block by block)
  for the hosts that give N output rows (paired controls).
* ``evaluate``: what the stage does per arm on the driver, on a synthetic N-row scores table
  written by the scorer's ``write_scores`` (a setup subprocess): ``load_scores`` (string columns
  read block by block as ``Categorical`` codes) and ``evaluate_arms`` (``compute_arm_metrics``
  and the realism probe's check for embeddings). ``load_seconds``: the load alone, timed again
  after the stage call (its share of the stage's seconds).

Reported per stage: driver CPU seconds (``process_time``) and wall seconds of the stage call
alone, the subprocess's peak RSS (``VmHWM``: interpreter, imports, inputs and the stage) and its
RSS just before the stage call. Output JSON: ``{"rows": {"N": {"driver_peak_rss_mb": max over
stages, "driver_seconds": {stage: s}, ...}}}``. The machine is shared: absolute seconds vary by
+-30 % or more; peaks are stable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

STAGES = ("split", "audit", "inject_plan", "evaluate")
STORE_CHUNK = 65_536  # rows per store chunk of the synthetic stores


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _hosts(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    nh = max(n // 4, 1)
    # hosts over a DR10-like patch: ra in [0, 60) deg, dec in [-10, 30) deg
    ra = rng.uniform(0.0, 60.0, nh)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-10)), np.sin(np.radians(30)),
                                           nh)))
    return {"ra": ra, "dec": dec, "id": np.arange(nh, dtype=np.int64) * 7 + 3}


def synthetic_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """The table ``split.load_rows`` returns for N rows (N/4 survey hosts, 3N/4 train rows)."""
    from gen5dask.store.schema import brickname_for

    h = _hosts(n, seed)
    rng = np.random.default_rng(seed + 1)
    nh = h["id"].size
    nt = n - nh
    link = rng.integers(0, nh, nt)
    kinds_t = np.where(rng.random(nt) < 0.5, "injection", "control")
    ra = np.concatenate([h["ra"], h["ra"][link]])
    dec = np.concatenate([h["dec"], h["dec"][link]])
    psf = rng.uniform(1.0, 1.6, n)
    depth = rng.normal(24.0, 0.3, n)
    theta = np.where(np.r_[np.zeros(nh, bool), kinds_t == "injection"],
                     rng.uniform(0.8, 2.5, n), np.nan)
    snr = np.where(np.isfinite(theta), rng.lognormal(1.5, 1.0, n), np.nan)
    out = pd.DataFrame({
        "store": np.r_[np.full(nh, "survey"), np.full(nt, "train")],
        "row": np.r_[np.arange(nh), np.arange(nt)],
        "sample": np.r_[h["id"], (np.int64(1) << 58) + np.arange(nt, dtype=np.int64)],
        "ra": ra, "dec": dec,
        "host_sample": np.r_[np.full(nh, -1, np.int64), h["id"][link]],
        "kind": np.r_[np.full(nh, "host"), kinds_t],
        "brickname": brickname_for(ra, dec),
        "psfsize_r": psf, "psfdepth_r": depth, "theta_e": theta, "arc_snr": snr,
    })
    with np.errstate(divide="ignore", invalid="ignore"):
        out["theta_e_over_psf"] = out["theta_e"] / out["psfsize_r"]
    return out


def write_stores(n: int, workdir: Path) -> None:
    """Synthetic ``survey.zarr`` + ``train.zarr`` (N rows in all) and audit scratch columns."""
    from gen5dask.columns import create_scratch, write_scratch
    from gen5dask.stages.audit import diag_columns
    from gen5dask.store import chunk_bounds, create_store, finalize_store, write_chunk
    from gen5dask.store.schema import REQUIRED, brickname_for
    from gen5dask.store.testing import fake_chunk

    rows = synthetic_rows(n)
    rng = np.random.default_rng(5)
    for name in ("survey", "train"):
        t = rows[rows["store"] == name]
        m = len(t)
        path = workdir / f"{name}.zarr"
        variables = ["inject_mode"] if name == "train" else []
        create_store(path, n_samples=m, stage="bench", config={"bench": name}, seed=0,
                     stamp_size=1, chunk_size=STORE_CHUNK, variables=variables, overwrite=True)
        scratch = workdir / "audit_columns" / name
        cols = diag_columns(("g", "r", "z"))
        create_scratch(scratch, m, {c: ("f8", ()) for c in cols})
        for i, (a, b) in enumerate(chunk_bounds(m, STORE_CHUNK)):
            c = t.iloc[a:b]
            d = fake_chunk(c["sample"].to_numpy(), variables=[*REQUIRED, *variables],
                           stamp_size=1, seed=i)
            k = b - a
            d["ra"], d["dec"] = c["ra"].to_numpy(), c["dec"].to_numpy()
            d["brickname"] = brickname_for(d["ra"], d["dec"])
            d["host_sample"] = c["host_sample"].to_numpy()
            d["kind"] = c["kind"].to_numpy()
            d["label"] = (d["kind"] == "injection").astype("i1")
            d["psfsize"] = np.repeat(c["psfsize_r"].to_numpy()[:, None], 3, 1).astype("f4")
            d["psfdepth"] = np.repeat(c["psfdepth_r"].to_numpy()[:, None], 3, 1).astype("f4")
            d["theta_e"] = c["theta_e"].to_numpy().astype("f4")
            d["arc_snr"] = c["arc_snr"].to_numpy().astype("f4")
            if name == "train":
                d["inject_mode"] = np.where(d["kind"] == "injection", "calibrated", "")
            write_chunk(path, i, d)
            write_scratch(scratch, a, {col: rng.random(k) for col in cols})
        finalize_store(path)


def _config(workdir: Path | None = None):
    from gen5dask.config import load_config

    here = os.path.dirname(os.path.abspath(__file__))
    over = [f"output_dir={workdir}"] if workdir is not None else []
    return load_config(os.path.join(here, "..", "configs", "demo.yaml"), overrides=over)


def _timed(fn) -> dict:
    rss0 = _status_mb("VmRSS")
    c0, w0 = time.process_time(), time.perf_counter()
    extra = fn() or {}
    return {"seconds": time.process_time() - c0, "wall": time.perf_counter() - w0,
            "rss_before_mb": rss0, **extra}


def run_split(n: int, workdir: Path) -> dict:
    from gen5dask.stages.split import run_split as stage

    cfg = _config(workdir)

    def go():
        out = stage(cfg, force=True)
        s = json.loads((out / "summary.json").read_text())
        return {"n_regions": s["n_regions"], "n_groups": s["n_groups"]}

    return _timed(go)


def run_audit(n: int, workdir: Path) -> dict:
    from gen5dask.columns import StoreColumns
    from gen5dask.evaluate.stats import compare_populations
    from gen5dask.splitgates import split_gates_columns
    from gen5dask.stages.audit import (
        brightness_populations,
        class_balance,
        keyed_subsample,
        leakage_aucs,
        maskbit_fractions_by_kind,
        split_rows,
    )

    cfg = _config(workdir)

    def go():
        diag = {name: StoreColumns(workdir / f"{name}.zarr", workdir / "audit_columns" / name)
                for name in ("train", "survey")}
        gates = split_gates_columns(split_rows(diag, "survey"),
                                    dup_radius_arcsec=cfg.split.dup_radius_arcsec,
                                    max_region_frac=cfg.split.max_region_frac,
                                    min_test_regions=cfg.split.min_test_regions)
        class_balance(diag["train"])
        leakage_aucs(diag["train"], cfg.audit.leakage_columns)
        class_balance(diag["survey"])
        for c in diag.values():
            maskbit_fractions_by_kind(c)
        pops, _ = brightness_populations(diag, seed=cfg.seed)
        anchors = pops["hosts"][:1000] * 0.5  # no anchor store: a stand-in population
        compare_populations(pops["hosts"], anchors, n_boot=cfg.audit.n_boot, seed=0, name="b")
        kind, legend = diag["train"].codes("kind")
        samples = diag["train"].get("sample")
        for k in ("control", "injection"):
            keyed_subsample(samples[kind == legend.index(k)], cfg.audit.core_only_max_samples,
                            cfg.seed, f"core/{k}")
        return {"gates_passed": [g["passed"] for g in gates]}

    return _timed(go)


def run_inject_plan(n: int, workdir: Path) -> dict:
    from gen5dask.injection.plan import write_plan

    cfg = _config()
    icfg = cfg.inject
    per_host = 1 + len(icfg.modes) * icfg.replicates  # paired controls
    if icfg.controls != "paired":
        per_host = max(1, (1 + len(icfg.modes) * icfg.replicates) // 2)
    nh = max(n // per_host, 1)
    hosts = pd.DataFrame({"row": np.arange(nh), "id": np.arange(nh, dtype=np.int64) * 7 + 3,
                          "host_mag_r": np.random.default_rng(2).uniform(17, 21, nh)})
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "inject_plan.npy"
    out = _timed(lambda: {"plan_rows": write_plan(path, icfg, cfg.seed, hosts), "hosts": nh})
    path.unlink()
    return out


def write_scores_table(n: int, workdir: Path) -> Path:
    """A synthetic N-row scores table of the first configured arm, written by the scorer's own
    ``write_scores`` (Zarr v3, string columns as strings), where ``evaluate`` looks for it."""
    from gen5dask.train.scoring import write_scores

    cfg = _config(workdir)
    rng = np.random.default_rng(3)
    kinds = np.array(["injection", "control", "hard_negative", "anchor", "stress", "ring"])
    kc = rng.choice(len(kinds), n, p=[0.45, 0.45, 0.05, 0.02, 0.02, 0.01])
    label = np.isin(kc, [0, 3, 4]).astype(np.int8)
    score = np.clip(rng.beta(2, 5, n) + 0.4 * label, 0, 1).astype(np.float32)

    def cat(codes, names):  # a string column as a Categorical (no string object per row)
        return pd.Categorical.from_codes(np.asarray(codes, np.int8), categories=list(names))

    df = pd.DataFrame({
        "sample": np.arange(n, dtype=np.int64),
        "store": cat(np.where(kc == 3, 1, np.where(kc == 2, 2, 0)),
                     ["train", "anchors", "hardneg"]),
        "score": score, "label": label, "kind": cat(kc, kinds),
        "split": cat(rng.choice(3, n, p=[0.7, 0.15, 0.15]), ["train", "val", "test"]),
        "region": rng.integers(0, 200, n).astype(np.int32),
        "tier": cat(kc == 3, ["", "A"]), "subtype": cat(np.zeros(n), [""]),
        "inject_mode": cat(kc == 0, ["", "calibrated"]),
        "eval_only": (kc == 2).astype(np.int8),
        "theta_e": rng.uniform(0.8, 2.5, n).astype(np.float32),
        "psfsize_r": rng.uniform(1.0, 1.6, n).astype(np.float32),
        "psfdepth_r": rng.normal(24, 0.3, n).astype(np.float32),
        "arc_snr": rng.lognormal(1.5, 1.0, n).astype(np.float32),
        "host_sample": rng.integers(0, n, n),
        "snr_opt": rng.lognormal(2.0, 1.0, n).astype(np.float32),
    })
    path = cfg.layout.scores(cfg.ablation.arms[0].name)
    write_scores(path, df)
    return path


def run_evaluate(n: int, workdir: Path) -> dict:
    """What ``evaluate`` does per arm on the driver: load the scores table
    (``stages.evaluate.load_scores``) and ``compute_arm_metrics`` (``evaluate_arms``)."""
    from gen5dask.stages.evaluate import evaluate_arms, load_scores

    cfg = _config(workdir)
    arm = cfg.ablation.arms[0].name

    out = _timed(lambda: {"auc": evaluate_arms(cfg)[arm]["auc"]})
    c0 = time.process_time()  # after the stage call, so the peak above is the stage's
    out["rows"] = len(load_scores(cfg, arm))
    out["load_seconds"] = time.process_time() - c0
    return out


def _child(stage: str, n: int, workdir: Path) -> None:
    if stage in ("setup", "setup_scores"):
        (write_stores if stage == "setup" else write_scores_table)(n, workdir)
        print("RESULT {}")
        return
    fn = {"split": run_split, "audit": run_audit, "inject_plan": run_inject_plan,
          "evaluate": run_evaluate}[stage]
    out = fn(n, workdir)
    out["peak_rss_mb"] = _status_mb("VmHWM")
    print("RESULT " + json.dumps(out))


def _run_child(stage: str, n: int, workdir: Path) -> tuple[dict | None, str]:
    p = subprocess.run([sys.executable, __file__, "--child", stage, str(n), str(workdir)],
                       capture_output=True, text=True, check=False)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not line:
        return None, p.stderr.strip()
    return json.loads(line[0][7:]), ""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--workdir", default=None,
                    help="where the synthetic stores go (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic stores")
    ap.add_argument("--child", nargs=3, metavar=("STAGE", "N", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return {}
    res: dict = {"rows": {}}
    for n in args.rows:
        base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="benchdrv"))
        workdir = base / f"n{n}"
        per: dict = {"driver_seconds": {}, "driver_wall_seconds": {}, "peak_rss_mb": {},
                     "rss_before_stage_mb": {}, "extra": {}}
        needs_stores = {"split", "audit"} & set(args.stages)
        if needs_stores:
            t0 = time.perf_counter()
            workdir.mkdir(parents=True, exist_ok=True)
            ok, err = _run_child("setup", n, workdir)
            if ok is None:
                print(f"{n:>10} setup FAILED: {err[-600:]}")
                continue
            per["setup_wall_seconds"] = time.perf_counter() - t0
            print(f"{n:>10} setup (synthetic stores) {per['setup_wall_seconds']:.0f} s",
                  flush=True)
        if "evaluate" in args.stages:
            workdir.mkdir(parents=True, exist_ok=True)
            ok, err = _run_child("setup_scores", n, workdir)
            if ok is None:
                print(f"{n:>10} scores setup FAILED: {err[-600:]}")
        for stage in args.stages:
            if stage == "audit" and "split" not in args.stages:
                _run_child("split", n, workdir)  # the audit reads the split columns
            r, err = _run_child(stage, n, workdir)
            if r is None:
                per["extra"][stage] = {"error": err.splitlines()[-3:]}
                print(f"{n:>10} {stage:<12} FAILED: {err[-600:]}")
                continue
            per["driver_seconds"][stage] = r.pop("seconds")
            per["driver_wall_seconds"][stage] = r.pop("wall")
            per["peak_rss_mb"][stage] = r.pop("peak_rss_mb")
            per["rss_before_stage_mb"][stage] = r.pop("rss_before_mb")
            per["extra"][stage] = r
            print(f"{n:>10} {stage:<12} cpu {per['driver_seconds'][stage]:8.2f} s  "
                  f"wall {per['driver_wall_seconds'][stage]:8.2f} s  "
                  f"peak {per['peak_rss_mb'][stage]:8.0f} MB  "
                  f"(before the stage {per['rss_before_stage_mb'][stage]:6.0f} MB)", flush=True)
        per["driver_peak_rss_mb"] = max(per["peak_rss_mb"].values(), default=None)
        res["rows"][str(n)] = per
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            if not args.workdir:
                shutil.rmtree(base, ignore_errors=True)
        if args.json:  # after each size, so a long run leaves partial results
            with open(args.json, "w") as fh:
                json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
