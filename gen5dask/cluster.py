"""A Dask client from config: LocalCluster, an existing scheduler, or SLURM/PBS (dask-jobqueue).

Workers run single-threaded numerical libraries (OMP/MKL/OpenBLAS/NUMBA threads = 1) so that
the worker count, not hidden thread pools, decides parallelism; numba caches compiled kernels in
a per-user directory.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from gen5dask.config.cluster import ClusterConfig

THREAD_CAPS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def worker_env(cfg: ClusterConfig) -> dict[str, str]:
    """Environment of every worker: thread caps, numba cache dir, user extras."""
    env = dict(THREAD_CAPS)
    env["NUMBA_CACHE_DIR"] = os.environ.get(
        "NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "gen5dask", "numba")
    )
    env.update(cfg.worker_env)
    return env


def _jobqueue_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    env = worker_env(cfg)
    prologue = list(cfg.job_script_prologue) + [f"export {k}={v}" for k, v in env.items()]
    kw: dict[str, Any] = {
        "cores": cfg.cores,
        "processes": cfg.processes or cfg.cores,
        "memory": cfg.memory,
        "walltime": cfg.walltime,
        "job_extra_directives": list(cfg.job_extra_directives),
        "job_script_prologue": prologue,
        "python": cfg.python or sys.executable,
    }
    if cfg.queue:
        kw["queue"] = cfg.queue
    if cfg.account:
        kw["account"] = cfg.account
    if cfg.local_directory:
        kw["local_directory"] = cfg.local_directory
    return kw


def make_jobqueue_cluster(cfg: ClusterConfig):
    """A dask-jobqueue SLURMCluster / PBSCluster (needs the ``hpc`` extra)."""
    try:
        import dask_jobqueue
    except ImportError as exc:  # pragma: no cover - depends on the install
        msg = "cluster.kind slurm/pbs needs dask-jobqueue: pip install 'gen5dask[hpc]'"
        raise ImportError(msg) from exc
    cls = dask_jobqueue.SLURMCluster if cfg.kind == "slurm" else dask_jobqueue.PBSCluster
    return cls(**_jobqueue_kwargs(cfg))


def render_job_script(cfg: ClusterConfig) -> str:
    """The batch job script dask-jobqueue would submit (no scheduler needed)."""
    cluster = make_jobqueue_cluster(cfg)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


@contextlib.contextmanager
def dask_client(cfg: ClusterConfig, *, quiet: bool = False) -> Iterator[Any]:
    """Yield a ``distributed.Client`` (or ``None`` for ``kind: synchronous``) and close it."""
    if cfg.kind == "synchronous":
        yield None
        return
    from distributed import Client, LocalCluster

    for k, v in THREAD_CAPS.items():
        os.environ.setdefault(k, v)
    cluster = None
    if cfg.kind == "local":
        n = cfg.n_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=cfg.threads_per_worker,
            processes=True,
            memory_limit=cfg.memory_limit,
            dashboard_address=cfg.dashboard_address,
            env=worker_env(cfg),
            silence_logs=40,
        )
        client = Client(cluster)
    elif cfg.kind == "address":
        if not cfg.address:
            msg = "cluster.kind is 'address' but cluster.address is not set"
            raise ValueError(msg)
        client = Client(cfg.address)
    else:
        cluster = make_jobqueue_cluster(cfg)
        if cfg.adaptive:
            cluster.adapt(minimum_jobs=cfg.adaptive[0], maximum_jobs=cfg.adaptive[1])
        else:
            cluster.scale(jobs=cfg.jobs)
        client = Client(cluster)
    if not quiet:
        link = getattr(client, "dashboard_link", None)
        print(f"Dask: {cfg.kind} cluster; dashboard: {link}", file=sys.stderr)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


__all__ = ["THREAD_CAPS", "dask_client", "make_jobqueue_cluster", "render_job_script", "worker_env"]
