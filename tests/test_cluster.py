"""Cluster: job scripts render for SLURM and PBS (no scheduler needed); worker env caps threads."""

import pytest

from gen5dask.cli import main
from gen5dask.cluster import render_job_script, worker_env
from gen5dask.config.cluster import ClusterConfig

pytest.importorskip("dask_jobqueue")


def test_slurm_script_headers():
    cfg = ClusterConfig(
        kind="slurm",
        queue="regular",
        account="m1234",
        cores=16,
        memory="64GiB",
        walltime="01:30:00",
        job_extra_directives=["--constraint=cpu"],
        job_script_prologue=["module load python"],
    )
    text = render_job_script(cfg)
    assert text.startswith("#!/usr/bin/env bash")
    for needle in (
        "#SBATCH -p regular",
        "#SBATCH -A m1234",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH -t 01:30:00",
        "#SBATCH --constraint=cpu",
        "module load python",
        "export OMP_NUM_THREADS=1",
        "export NUMBA_NUM_THREADS=1",
    ):
        assert needle in text, needle
    assert "--nworkers 16" in text and "--nthreads 1" in text


def test_pbs_script_headers():
    cfg = ClusterConfig(
        kind="pbs", queue="workq", account="proj", cores=8, memory="32GiB", walltime="00:45:00"
    )
    text = render_job_script(cfg)
    assert "#PBS -q workq" in text and "#PBS -A proj" in text
    assert "#PBS -l walltime=00:45:00" in text and "ncpus=8" in text


def test_worker_env_caps_threads():
    env = worker_env(ClusterConfig(worker_env={"FOO": "1"}))
    assert env["OMP_NUM_THREADS"] == "1" and env["FOO"] == "1" and "NUMBA_CACHE_DIR" in env


def test_cli_job_script(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("cluster:\n  kind: slurm\n  queue: debug\n  cores: 4\n")
    assert main(["job-script", str(f)]) == 0
    assert "#SBATCH -p debug" in capsys.readouterr().out
    f.write_text("cluster:\n  kind: local\n")
    assert main(["job-script", str(f)]) == 2


def test_job_script_renders_without_a_scheduler(monkeypatch):
    """The rendered script marks the two submit-time values and starts no scheduler."""
    import distributed

    from gen5dask.cluster import SCHEDULER_PLACEHOLDER, WORKER_NAME_PLACEHOLDER

    def no_scheduler(*a, **k):
        raise AssertionError("render_job_script started a scheduler")

    monkeypatch.setattr(distributed.Scheduler, "__init__", no_scheduler)
    cfg = ClusterConfig(kind="slurm", queue="q", cores=2, python="/opt/py/bin/python")
    text = render_job_script(cfg)
    line = text.strip().splitlines()[-1]
    assert line.startswith(f"/opt/py/bin/python -m distributed.cli.dask_worker "
                           f"{SCHEDULER_PLACEHOLDER} --name {WORKER_NAME_PLACEHOLDER} ")
    with pytest.raises(ValueError, match="slurm and pbs"):
        render_job_script(ClusterConfig(kind="local"))


class _Status:
    def __init__(self, name):
        self.name = name


class _Job:
    def __init__(self, job_id):
        self.job_id = job_id


class _FakeCluster:
    """What JobKeeper reads of a dask-jobqueue cluster: spec, live jobs, scheduler workers."""

    def __init__(self):
        self.status = _Status("running")
        self.worker_spec = {"C-0": {}, "C-1": {}}
        self.workers = {"C-0": _Job("101"), "C-1": _Job("102")}
        self.scheduler_info = {"workers": {"tcp://a": {}, "tcp://b": {}}}
        self.scaled: list[int] = []

    def scale(self, jobs):
        self.scaled.append(jobs)


def test_job_keeper_resubmits_a_forgotten_job(capsys):
    from gen5dask.cluster import JobKeeper

    c = _FakeCluster()
    keeper = JobKeeper(c)
    assert keeper.check() == [] and c.scaled == []  # all jobs alive: nothing to do
    del c.workers["C-1"]  # dask-jobqueue forgot job 102 (its worker left the scheduler)
    assert keeper.check() == ["102"] and c.scaled == [2]
    assert "worker job 102 (C-1) has ended" in capsys.readouterr().err
    assert keeper.check() == [] and c.scaled == [2]  # reported and resubmitted once
    c.workers["C-1"] = _Job("103")  # the replacement job
    del c.worker_spec["C-0"], c.workers["C-0"]  # adaptive scaled down on purpose
    assert keeper.check() == [] and c.scaled == [2]
    c.status = _Status("closing")
    del c.workers["C-1"]
    assert keeper.check() == []  # never resubmits while closing


def test_job_keeper_says_where_to_look_when_no_worker_connects(capsys):
    from gen5dask.cluster import NO_WORKER_HINT_S, JobKeeper

    now = [0.0]
    c = _FakeCluster()
    c.scheduler_info = {"workers": {}}  # jobs submitted, none connected (e.g. a wrong python)
    keeper = JobKeeper(c, clock=lambda: now[0])
    keeper.check()
    assert capsys.readouterr().err == ""
    now[0] = NO_WORKER_HINT_S + 1
    keeper.check()
    keeper.check()
    err = capsys.readouterr().err
    assert err.count("no worker has connected") == 1 and "101, 102" in err and "slurm-" in err
    c.workers = {}  # the submit command failed: no job at all
    keeper = JobKeeper(c, clock=lambda: now[0])
    now[0] = 2 * NO_WORKER_HINT_S + 2
    keeper.check()
    assert "the submit command (sbatch/qsub) failed" in capsys.readouterr().err


def test_keeper_polls_within_the_lost_worker_timeout():
    """A job cancelled seconds after it started is still seen (and so replaced): the keeper
    polls at least twice per ``lost-worker-timeout``, the time dask-jobqueue keeps a job whose
    worker has gone."""
    import dask

    from gen5dask.cluster import keeper_interval_s

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "15s"}):
        assert keeper_interval_s(5.0) == 5.0
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}):
        assert keeper_interval_s(5.0) == 0.5
    with dask.config.set({"distributed.deploy.lost-worker-timeout": 4}):
        assert keeper_interval_s(1.0) == 1.0


def test_job_script_carries_the_dask_settings():
    text = render_job_script(ClusterConfig(kind="slurm", queue="q", cores=2))
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in text
    assert "export DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=1s" in text


def test_job_script_quotes_environment_values():
    cfg = ClusterConfig(kind="slurm", queue="q", cores=2,
                        worker_env={"SITE_NOTE": "two words; $HOME"})
    assert "export SITE_NOTE='two words; $HOME'" in render_job_script(cfg)
