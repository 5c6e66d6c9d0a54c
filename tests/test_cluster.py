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
