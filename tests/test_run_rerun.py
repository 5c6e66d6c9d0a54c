"""Change a setting and rerun (issue #14): exactly the dependent stages run, nobody is asked to
delete anything, and the outputs equal a fresh run with the new config."""

import copy
import io
import shutil
from contextlib import redirect_stderr

import numpy as np
import pytest
import yaml
import zarr

from gen5dask.config import config_from_dict
from gen5dask.stages import run as runmod

TINY = {
    "seed": 7,
    "chunk_size": 64,
    "stamp_size": 32,
    "cluster": {"kind": "synchronous", "progress": False},
    "simulate": {"n_hosts": 64, "n_anchors": 12, "n_stress": 4, "n_hard_negatives": 8,
                 "n_rings": 4, "anchor_positions": "footprint"},
    "anchors": {"reference": "{output_dir}/mock/lens_catalog.csv", "min_anchors": 3},
    "calibrate": {"dry_run_n": 16, "plot": False},
    "inject": {"n_null": 4},
    "split": {"n_candidates": 100},
    "audit": {"core_only_max_samples": 100, "n_boot": 20, "figures": False},
    "train": {"epochs": 1, "batch_size": 64, "progress": False},
    "score": {"backend": "local"},
    "evaluate": {"n_bootstrap": 20},
    "report": {"gallery_size": 4},
}
#: the data-making part of the plan (fast); the slow variant runs the whole plan.
DATA_STAGES = ("simulate", "anchors", "hardneg", "calibrate", "inject")
STORES = ("survey.zarr", "anchors.zarr", "hardneg.zarr", "train.zarr")


def _cfg(root, overrides=()):
    return config_from_dict({**copy.deepcopy(TINY), "output_dir": str(root)},
                            overrides=list(overrides))


def _run(cfg, plan):
    err = io.StringIO()
    with redirect_stderr(err):
        runmod.run_plan(cfg, plan=plan)
    return [line.split(":")[0].split("] ")[1] for line in err.getvalue().splitlines()
            if line.startswith("[gen5dask run]") and ": running" in line]


def _assert_same_stores(a, b, names=STORES):
    for name in names:
        ga, gb = zarr.open_group(str(a / name), mode="r"), zarr.open_group(str(b / name), mode="r")
        assert sorted(ga.array_keys()) == sorted(gb.array_keys()), name
        for k in ga.array_keys():
            x, y = ga[k][...], gb[k][...]
            assert x.dtype == y.dtype and x.shape == y.shape, (name, k)
            if x.dtype.kind == "f":
                x, y = x.view(f"i{x.dtype.itemsize}"), y.view(f"i{y.dtype.itemsize}")
            np.testing.assert_array_equal(x, y, err_msg=f"{name}:{k}")


def test_rerun_after_inject_change_runs_only_inject_and_equals_fresh(tmp_path):
    plan = runmod.derive_plan(DATA_STAGES)
    base = _cfg(tmp_path / "run")
    assert _run(base, plan) == list(DATA_STAGES)
    assert _run(base, plan) == []  # everything up to date
    changed = _cfg(tmp_path / "run", ["inject.n_null=9"])
    assert _run(changed, plan) == ["inject"]  # rebuilt; the old store is replaced, not refused
    fresh = _cfg(tmp_path / "fresh", ["inject.n_null=9"])
    _run(fresh, plan)
    _assert_same_stores(tmp_path / "run", tmp_path / "fresh")
    # an interrupted stage resumes (same fingerprint); nothing else reruns
    fp = runmod.step_fingerprints(changed, plan)["inject"]
    runmod._record_start(changed, "inject", fp)
    assert _run(changed, plan) == ["inject"]
    _assert_same_stores(tmp_path / "run", tmp_path / "fresh")


#: (key, value) per config section read by the plan; expected stages from test_run_plan.
from tests.test_run_plan import SECTION_CHANGES  # noqa: E402

SLOW_CASES = {
    "simulate.n_hosts": 72,
    "anchors.centre_snr_min": 4.0,
    "hardneg.eval_fraction": 0.5,
    "calibrate.dry_run_n": 24,
    "inject.theta_e_range": [0.6, 2.0],
    "inject.n_null": 9,
    "split.max_region_frac": 0.3,
    "audit.n_boot": 21,
    "gates.override": ["null_injection"],
    "train.epochs": 2,
    "score.arms": ["baseline", "masked", "remediated"],
    "evaluate.n_bootstrap": 21,
    "ablation.decision.recall_working": 0.6,
    "train.selection_metric": "val_loss",
    "report.gallery_size": 5,
    "seed": 8,
}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun") / "base"
    cfg = _cfg(root)
    _run(cfg, runmod.plan_for(cfg))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(SLOW_CASES))
def test_rerun_per_config_section_equals_fresh_run(key, base_run, tmp_path):
    value = SLOW_CASES[key]
    work = tmp_path / "run"
    shutil.copytree(base_run, work)
    # the run records hold absolute paths: a copied run has to be rerun where it was made
    for rec in (work / ".gen5dask").glob("*.json"):
        rec.write_text(rec.read_text().replace(str(base_run), str(work)))
    override = f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
    changed = _cfg(work, [override])
    plan = runmod.plan_for(changed)
    expected = SECTION_CHANGES[key][1]
    assert _run(changed, plan) == expected
    fresh = _cfg(tmp_path / "fresh", [override])
    _run(fresh, runmod.plan_for(fresh))
    _assert_same_stores(work, tmp_path / "fresh")
    for arm in ("baseline", "masked", "remediated"):
        _assert_same_stores(work, tmp_path / "fresh", names=(f"scores/{arm}.zarr",))
