"""The HPC path on a real scheduler: a local single-node SLURM (``slurm_local.py``).

* a tiny plan (simulate + inject) through ``cluster.kind: slurm`` -- dask-jobqueue submits the
  worker jobs, slurmctld runs them, the stages run on them, closing cancels them -- writes stores
  bit-identical to the same plan on a LocalCluster;
* a worker job cancelled with ``scancel`` in the middle of ``inject`` (how a walltime expiry
  looks to Dask): the stage completes with the identical store, a line on stderr names the job,
  and a replacement job is submitted and joins;
* ``gen5dask job-script`` prints exactly the batch script slurmctld received
  (``scontrol write batch_script``) up to the scheduler address and worker name, and that script
  runs a worker with the configured environment, scratch directory and limits.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gen5dask.cli import main
from gen5dask.cluster import SCHEDULER_PLACEHOLDER, WORKER_NAME_PLACEHOLDER, dask_client
from gen5dask.config import config_from_dict, load_config
from gen5dask.stages.run import Step, run_plan
from gen5dask.store import is_complete, store_geometry, validate
from tests.test_reproducibility import assert_stores_identical

pytestmark = pytest.mark.scheduler

SIM = {"n_hosts": 160, "n_anchors": 12, "n_stress": 4, "n_hard_negatives": 4, "n_rings": 4}
TINY_PLAN = (Step("simulate", ("simulate",)), Step("inject", ("inject",), ("simulate",)))
"""The plan's two Dask-heavy stages: the survey, then injections into its hosts."""


def _tree(out: Path, cluster: dict, *, chunk: int = 32, hosts: Path | None = None) -> dict:
    return {
        "output_dir": str(out),
        "seed": 11,
        "stamp_size": 32,
        "chunk_size": chunk,
        "cluster": {"progress": False, **cluster},
        "simulate": SIM,
        "inject": {"n_null": 4, **({"hosts": str(hosts)} if hosts else {})},
        "calibrate": {"plot": False},
    }


def _slurm_cluster(slurm, tmp: Path, **extra) -> dict:
    """``cluster:`` for the local SLURM: 1-core jobs, the test's python, node-local scratch."""
    return {
        "kind": "slurm",
        "queue": slurm.partition,
        "cores": 1,
        "processes": 1,
        "memory": "2GiB",
        "walltime": "00:15:00",
        "jobs": 2,
        "python": sys.executable,
        "local_directory": str(tmp / "scratch"),
        **extra,
    }


def _job_ids(client) -> dict[str, str]:
    """Worker address -> the SLURM job it runs in (each worker reads its own environment).

    A worker that is going away right now is left out (``on_error="return"``).
    """
    got = client.run(lambda: os.environ.get("SLURM_JOB_ID", ""), on_error="return")
    return {addr: job for addr, job in got.items() if isinstance(job, str)}


def _markers(store: Path) -> int:
    d = store / "_gen5dask" / "done" / "c"  # one Zarr chunk file per completed store chunk
    return sum(1 for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else 0


def _wait(pred, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _wait_queue_empty(slurm, timeout: float = 60.0) -> None:
    """Closing the cluster cancelled every job it submitted (the node is free again)."""
    _wait(lambda: not slurm.squeue(), timeout, "the worker jobs to leave the queue")


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The tiny plan on a 2-process LocalCluster: the reference stores."""
    out = tmp_path_factory.mktemp("local") / "out"
    cfg = config_from_dict(_tree(out, {"kind": "local", "n_workers": 2}))
    with dask_client(cfg.cluster, quiet=True) as client:
        run_plan(cfg, client, plan=TINY_PLAN)
    lay = cfg.layout
    assert validate(lay.survey) == [] and validate(lay.train) == []
    return lay.survey, lay.train


def test_tiny_plan_on_slurm_is_bit_identical_to_local(slurm, local_reference, tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)  # the jobs' slurm-<id>.out files land here
    survey_ref, train_ref = local_reference
    cfg = config_from_dict(_tree(tmp_path / "out", _slurm_cluster(slurm, tmp_path)))
    with dask_client(cfg.cluster) as client:
        client.wait_for_workers(2, timeout=120)
        ran_on = set(_job_ids(client).values())
        queued = {j["id"]: j["state"] for j in slurm.squeue()}
        run_plan(cfg, client, plan=TINY_PLAN)
        assert set(_job_ids(client).values()) == ran_on  # the same two jobs did all the work
    # both workers ran inside SLURM jobs of this cluster, allocated and running
    assert len(ran_on) == 2 and "" not in ran_on
    assert {queued.get(j) for j in ran_on} == {"RUNNING"}
    for job in ran_on:
        info = slurm.job(job)
        assert info["Partition"] == slurm.partition and info["NumCPUs"] == "1"
    _wait_queue_empty(slurm)
    assert {slurm.job(j)["JobState"] for j in ran_on} == {"CANCELLED"}  # closed at the end
    lay = cfg.layout
    assert validate(lay.survey) == [] and validate(lay.train) == []
    assert_stores_identical(lay.survey, survey_ref)
    assert_stores_identical(lay.train, train_ref)
    assert sorted(p.name for p in tmp_path.glob("slurm-*.out")) == sorted(
        f"slurm-{j}.out" for j in ran_on)


def test_scancelled_worker_job_is_replaced_and_stage_completes(slurm, local_reference, tmp_path,
                                                               monkeypatch, capsys):
    import dask

    from gen5dask.log import setup_logging

    setup_logging("INFO")  # what a CLI user sees on stderr (the message is a logger warning)

    from gen5dask.stages.inject import run_inject

    monkeypatch.chdir(tmp_path)
    survey_ref, train_ref = local_reference
    chunk = 16  # another chunking than the reference: more tasks, so a window to cancel in
    cfg = config_from_dict(
        _tree(tmp_path / "out", _slurm_cluster(slurm, tmp_path), chunk=chunk, hosts=survey_ref))
    store = cfg.layout.train
    n_chunks = -(-store_geometry(train_ref)["n_samples"] // chunk)
    result: dict = {}
    # dask-jobqueue forgets a lost job after lost-worker-timeout (15 s by default); shortened
    # so the replacement is submitted while the stage still runs
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}), \
            dask_client(cfg.cluster) as client:
        client.wait_for_workers(2, timeout=120)
        before = _job_ids(client)

        def target():
            try:
                result["path"] = run_inject(cfg, client=client)
            except BaseException as exc:  # noqa: BLE001 - reported below
                result["error"] = exc

        th = threading.Thread(target=target)
        th.start()
        _wait(lambda: _markers(store) >= 2 or not th.is_alive(), 120, "the first chunk markers")
        busy = [addr for addr, keys in client.processing().items() if keys and addr in before]
        done_at_cancel = _markers(store)
        assert th.is_alive() and done_at_cancel < n_chunks and busy, "stage ended before scancel"
        victim = before[busy[0]]
        slurm.scancel(victim)
        th.join(timeout=300)
        assert not th.is_alive(), "inject did not finish after the scancel"
        # the replacement job's worker joins (dask-jobqueue resubmitted it)
        _wait(lambda: len(_job_ids(client)) == 2, 120, "the replacement worker")
        after = set(_job_ids(client).values())
    assert "error" not in result, result.get("error")
    assert victim not in after and len(after - set(before.values())) == 1, (before, after)
    assert slurm.job(victim)["JobState"] == "CANCELLED"
    err = capsys.readouterr().err
    assert f"worker job {victim} " in err and "submitting a replacement job" in err, err
    assert "CANCELLED" in (tmp_path / f"slurm-{victim}.out").read_text()  # what the job log says
    _wait_queue_empty(slurm)
    assert is_complete(store) and validate(store) == []
    assert_stores_identical(store, train_ref)


def test_job_script_is_what_slurm_runs(slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cluster = _slurm_cluster(
        slurm, tmp_path, jobs=1, memory="1GiB", walltime="00:07:00",
        job_extra_directives=["--comment=gen5dask-scheduler-test"],
        job_script_prologue=["echo gen5dask prologue ran"],
        worker_env={"GEN5DASK_TEST_MARK": "on-node"},
    )
    cfg_file = tmp_path / "cluster.yaml"
    cfg_file.write_text(yaml.safe_dump({"cluster": cluster}))
    assert main(["job-script", str(cfg_file)]) == 0
    rendered = capsys.readouterr().out
    cfg = load_config(cfg_file)
    with dask_client(cfg.cluster) as client:
        client.wait_for_workers(1, timeout=120)
        (addr, job), = _job_ids(client).items()
        submitted = slurm.batch_script(job)
        info = slurm.job(job)
        name = client.scheduler_info()["workers"][addr]["name"]
        env = client.run(lambda: {k: os.environ.get(k) for k in (
            "GEN5DASK_TEST_MARK", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")})[addr]
        local_dir = client.run(lambda dask_worker: dask_worker.local_directory)[addr]
        scheduler = client.scheduler.address
    # the submitted script is the rendered one, byte for byte, once the two runtime values are
    # put back (scheduler address, worker name); print() adds the one trailing newline
    assert scheduler in submitted and f"--name {name} " in submitted
    normalised = submitted.replace(scheduler, SCHEDULER_PLACEHOLDER).replace(
        f"--name {name} ", f"--name {WORKER_NAME_PLACEHOLDER} ")
    assert normalised.rstrip("\n") == rendered.rstrip("\n")
    # and slurmctld read the directives as meant
    assert info["Partition"] == slurm.partition and info["JobName"] == "dask-worker"
    assert info["NumCPUs"] == "1" and info["TimeLimit"] == "00:07:00"
    assert info["MinMemoryNode"] == "1G" and info["Comment"] == "gen5dask-scheduler-test"
    assert env == {"GEN5DASK_TEST_MARK": "on-node", "OMP_NUM_THREADS": "1",
                   "NUMBA_NUM_THREADS": "1"}
    assert Path(local_dir).resolve().is_relative_to((tmp_path / "scratch").resolve())
    _wait_queue_empty(slurm)
    assert "gen5dask prologue ran" in (tmp_path / f"slurm-{job}.out").read_text()
