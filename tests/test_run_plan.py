"""``run`` as data: steps are skipped when their fingerprint matches, --force reruns downstream."""

import json

import pytest

from gen5dask.config import config_from_dict
from gen5dask.stages import run as runmod


@pytest.fixture
def fake_plan(monkeypatch, tmp_path):
    calls = []

    def fake_stage(name):
        def _run(cfg, client=None, *, force=False):
            calls.append((name, force))
            out = tmp_path / "out" / f"{name}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(name)
            return out

        return _run

    monkeypatch.setattr(runmod, "get_stage", fake_stage)
    plan = (
        runmod.Step("simulate", ("simulate",)),
        runmod.Step("inject", ("inject",), ("simulate",)),
        runmod.Step("report", ("report",), ("inject",)),
    )
    return plan, calls


def test_skip_force_and_fingerprint_chain(fake_plan, tmp_path):
    plan, calls = fake_plan
    cfg = config_from_dict({"output_dir": str(tmp_path / "out")})
    runmod.run_plan(cfg, plan=plan)
    assert [c[0] for c in calls] == ["simulate", "inject", "report"]
    calls.clear()
    runmod.run_plan(cfg, plan=plan)
    assert calls == []  # all up to date
    runmod.run_plan(cfg, plan=plan, force=["inject"])
    assert calls == [("inject", True), ("report", True)]
    calls.clear()
    # a change upstream changes every downstream fingerprint
    cfg2 = config_from_dict({"output_dir": str(tmp_path / "out"), "seed": 99})
    runmod.run_plan(cfg2, plan=plan)
    assert [c[0] for c in calls] == ["simulate", "inject", "report"]
    timings = json.loads((cfg.layout.state_dir / "timings.json").read_text())
    assert set(timings["stages_s"]) == {"simulate", "inject", "report"}


def test_unknown_force_stage(fake_plan, tmp_path):
    plan, _ = fake_plan
    cfg = config_from_dict({"output_dir": str(tmp_path / "out")})
    with pytest.raises(ValueError, match="not a stage"):
        runmod.run_plan(cfg, plan=plan, force=["nope"])


def test_real_plan_covers_the_remediation_plan():
    names = [s.stage for s in runmod.PLAN]
    for stage in (
        "simulate",
        "anchors",
        "hardneg",
        "calibrate",
        "inject",
        "split",
        "audit",
        "ablation",
        "report",
    ):
        assert stage in names
    assert names.index("calibrate") < names.index("inject") < names.index("split")


def test_ingested_data_skips_simulate():
    cfg = config_from_dict({"data": "ingested"})
    plan = runmod.plan_for(cfg)
    assert "simulate" not in [s.stage for s in plan]
    assert all("simulate" not in s.after for s in plan)
    assert [s.stage for s in runmod.plan_for(config_from_dict({}))][0] == "simulate"


def _sum_rows(index, rows_by_chunk, offset):
    return int(rows_by_chunk.get(index, []).__len__()) + offset


def test_map_chunks_dask_equals_in_process_with_shared_dict_argument():
    from distributed import Client, LocalCluster

    from gen5dask.stages._chunks import map_chunks

    rows = {0: [1, 2], 2: [5], 3: [7, 8, 9]}
    ref = map_chunks(_sum_rows, range(5), rows, 10, progress=False)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        got = map_chunks(_sum_rows, range(5), rows, 10, client=client, progress=False)
    assert got == ref == [12, 10, 11, 13, 10]
