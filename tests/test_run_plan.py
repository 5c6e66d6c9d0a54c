"""``run`` derived from the stages' declarations: skip when the fingerprint matches, rebuild
exactly the dependent stages after a change, --force reruns downstream."""

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
        runmod.Step("simulate", ("simulate", "seed")),
        runmod.Step("inject", ("inject", "seed"), ("simulate",)),
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
    assert calls == [("simulate", True), ("inject", True), ("report", True)]  # rebuilt
    calls.clear()
    # a key only inject reads: simulate skipped, inject and report rebuilt (never refused)
    cfg3 = config_from_dict({"output_dir": str(tmp_path / "out"), "seed": 99,
                             "inject": {"n_null": 20}})
    runmod.run_plan(cfg3, plan=plan)
    assert calls == [("inject", True), ("report", True)]
    timings = json.loads((cfg.layout.state_dir / "timings.json").read_text())
    assert set(timings["stages_s"]) == {"inject", "report"}


def test_interrupted_step_resumes_with_the_same_fingerprint(fake_plan, tmp_path):
    plan, calls = fake_plan
    cfg = config_from_dict({"output_dir": str(tmp_path / "out")})
    runmod.run_plan(cfg, plan=plan)
    calls.clear()
    fp = runmod.step_fingerprints(cfg, plan)["inject"]
    runmod._record_start(cfg, "inject", fp)  # as if killed mid-stage
    runmod.run_plan(cfg, plan=plan)
    assert calls == [("inject", False)]  # resumed, not rebuilt; report's inputs unchanged


def test_force_train_reruns_the_ablation_step():
    plan = runmod.derive_plan(["audit", "ablation", "report"])
    assert [s.stage for s in plan] == ["audit", "ablation", "report"]
    for alias in ("train", "score", "evaluate"):
        assert runmod.dependents(plan, runmod.FORCE_ALIASES[alias]) == ["ablation", "report"]


def test_unknown_force_stage(fake_plan, tmp_path):
    plan, _ = fake_plan
    cfg = config_from_dict({"output_dir": str(tmp_path / "out")})
    with pytest.raises(ValueError, match="not a stage"):
        runmod.run_plan(cfg, plan=plan, force=["nope"])


def test_real_plan_covers_the_remediation_plan():
    names = [s.stage for s in runmod.plan_for(config_from_dict({}))]
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
    assert names.index("anchors") < names.index("hardneg")  # hardneg reads anchors.csv


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


#: one key per config section, and the plan stages that must rerun when it changes (a hand-written
#: table: the declarations must produce exactly this, so a stage reading a key it does not
#: declare, or a declaration wider than the code, shows up here).
ALL = ["simulate", "anchors", "hardneg", "calibrate", "inject", "split", "audit", "ablation",
       "report"]
MODELS = ["ablation", "report"]
SECTION_CHANGES = {
    "seed": (1, ALL),
    "chunk_size": (128, ALL),
    "stamp_size": (48, ALL),
    "bands": (["g", "r", "i", "z"], ALL),
    "pixscale": (0.27, ALL),
    "simulate.n_hosts": (999, ALL),
    "anchors.centre_snr_min": (4.0, ALL[1:]),
    "hardneg.eval_fraction": (0.5, ["hardneg", "split", "audit", *MODELS]),
    "calibrate.dry_run_n": (64, ["calibrate", "inject", "split", "audit", *MODELS]),
    "inject.theta_e_range": ([0.6, 2.0], ["calibrate", "inject", "split", "audit", *MODELS]),
    "inject.n_null": (20, ["inject", "split", "audit", *MODELS]),
    "split.max_region_frac": (0.3, ["split", "audit", *MODELS]),
    "audit.n_boot": (99, ["audit", *MODELS]),
    "gates.override": (["null_injection"], ["audit", *MODELS]),
    "train.epochs": (2, MODELS),
    "train.selection_metric": ("val_loss", ["audit", *MODELS]),
    "score.arms": (["baseline"], MODELS),
    "evaluate.n_bootstrap": (77, MODELS),
    "evaluate.primary_metric": ("auc", ["audit", *MODELS]),
    "ablation.decision.recall_working": (0.6, MODELS),
    "report.gallery_size": (5, ["report"]),
    "cluster.n_workers": (7, []),
    "output_dir": ("elsewhere", []),
}


@pytest.mark.parametrize("key", sorted(SECTION_CHANGES))
def test_derived_dependents_per_config_section(key):
    value, expected = SECTION_CHANGES[key]
    base = config_from_dict({})
    changed = config_from_dict({}, overrides=[(key, value)])
    a = runmod.step_fingerprints(base)
    b = runmod.step_fingerprints(changed)
    assert [s for s in a if a[s] != b[s]] == expected


def test_every_config_section_is_covered_by_the_table():
    from gen5dask.config import Config

    sections = {k.split(".")[0] for k in SECTION_CHANGES}
    skip = {"ingest", "fetch", "inspect", "data"}  # not read by the mock plan's stages
    assert set(Config.model_fields) - skip <= sections


def test_a_stage_cannot_read_what_it_does_not_declare(tmp_path):
    from gen5dask.stages.declare import UndeclaredConfigError, stage

    @stage("probe", reads=("inject.n_null", "seed"))
    def run_probe(cfg, client=None, *, force=False):
        return cfg.inject.n_null, cfg.seed, cfg.layout.root

    cfg = config_from_dict({"output_dir": str(tmp_path)})
    assert run_probe(cfg)[:2] == (16, cfg.seed)

    @stage("probe2", reads=("inject.n_null",))
    def run_probe2(cfg, client=None, *, force=False):
        return cfg.inject.replicates

    with pytest.raises(UndeclaredConfigError, match="inject.replicates"):
        run_probe2(cfg)
