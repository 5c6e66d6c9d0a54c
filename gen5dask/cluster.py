"""A Dask client from config: LocalCluster, an existing scheduler, or SLURM/PBS (dask-jobqueue).

Workers run single-threaded numerical libraries (OMP/MKL/OpenBLAS/NUMBA threads = 1) so that
the worker count, not hidden thread pools, decides parallelism; numba caches compiled kernels in
a per-user directory.

On SLURM/PBS a batch job whose worker dies (walltime, ``scancel``, node failure) is resubmitted
(:class:`JobKeeper`): Dask reruns the lost tasks on the remaining workers meanwhile, and the
replacement job joins when the queue starts it. :func:`render_job_script` prints the very script
dask-jobqueue submits, with the two values known only at submission shown as
:data:`SCHEDULER_PLACEHOLDER` and :data:`WORKER_NAME_PLACEHOLDER`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from typing import Any

from gen5dask.config.cluster import ClusterConfig
from gen5dask.log import forward_worker_logs, get_logger

log = get_logger(__name__)

SCHEDULER_PLACEHOLDER = "tcp://<scheduler-address>"
"""Stands for the scheduler address in :func:`render_job_script` (known once it listens)."""
WORKER_NAME_PLACEHOLDER = "<worker-name>"
"""Stands for the per-job worker name in :func:`render_job_script` (``SLURMCluster-0`` ...)."""
NO_WORKER_HINT_S = 120.0
"""Seconds without any connected worker after which :class:`JobKeeper` says where to look."""

THREAD_CAPS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}

BATCH_DASK_CONFIG: dict[str, Any] = {
    # the workers' statistical profiler samples every task thread 100 times a second; it only
    # feeds the dashboard's profile page
    "distributed.worker.profile.enabled": False,
    # event-loop health check of the scheduler, the nannies and the workers (default 20 ms)
    "distributed.admin.tick.interval": "1s",
    # CPU, memory and network samples for the dashboard (default 500 ms)
    "distributed.admin.system-monitor.interval": "2s",
    # worker memory against its limit (default 100 ms)
    "distributed.worker.memory.monitor-interval": "1s",
}
"""Dask settings for long batch stages: an idle 2-worker LocalCluster then burns 0.3 CPU-s per
15 s instead of 1.9-2.1 (measured, docs/scale.md); ``cluster.dask_config`` overrides them."""


def dask_settings(cfg: ClusterConfig) -> dict[str, Any]:
    """Dask settings of the clusters gen5dask starts: :data:`BATCH_DASK_CONFIG`, then
    ``cluster.dask_config``."""
    return {**BATCH_DASK_CONFIG, **cfg.dask_config}


def dask_env(settings: dict[str, Any]) -> dict[str, str]:
    """The same settings as ``DASK_*`` environment variables (batch-job workers read their
    config from the environment): ``distributed.worker.profile.enabled`` ->
    ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED``; values as Dask parses them back."""
    env = {}
    for key, value in settings.items():
        name = "DASK_" + "__".join(part.upper().replace("-", "_") for part in key.split("."))
        env[name] = str(value)
    return env


def worker_env(cfg: ClusterConfig) -> dict[str, str]:
    """Environment of every worker: thread caps, numba cache dir, Dask settings
    (:func:`dask_settings`), user extras."""
    env = dict(THREAD_CAPS)
    env["NUMBA_CACHE_DIR"] = os.environ.get(
        "NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "gen5dask", "numba")
    )
    env.update(dask_env(dask_settings(cfg)))
    env.update(cfg.worker_env)
    return env


def _jobqueue_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    env = worker_env(cfg)
    prologue = list(cfg.job_script_prologue) + [
        f"export {k}={shlex.quote(v)}" for k, v in env.items()
    ]
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


def _cluster_class(cfg: ClusterConfig):
    try:
        import dask_jobqueue
    except ImportError as exc:  # pragma: no cover - depends on the install
        msg = "cluster.kind slurm/pbs needs dask-jobqueue: pip install 'gen5dask[hpc]'"
        raise ImportError(msg) from exc
    if cfg.kind not in ("slurm", "pbs"):
        msg = f"cluster.kind is {cfg.kind!r}; batch jobs exist for slurm and pbs"
        raise ValueError(msg)
    return dask_jobqueue.SLURMCluster if cfg.kind == "slurm" else dask_jobqueue.PBSCluster


def make_jobqueue_cluster(cfg: ClusterConfig):
    """A dask-jobqueue SLURMCluster / PBSCluster (needs the ``hpc`` extra)."""
    return _cluster_class(cfg)(**_jobqueue_kwargs(cfg))


def render_job_script(cfg: ClusterConfig) -> str:
    """The batch job script dask-jobqueue submits for ``cfg``, without starting a scheduler.

    It is byte for byte the submitted script except for the scheduler address and the worker
    name, which read :data:`SCHEDULER_PLACEHOLDER` and :data:`WORKER_NAME_PLACEHOLDER`.
    """
    job_cls = _cluster_class(cfg).job_cls
    job = job_cls(SCHEDULER_PLACEHOLDER, name=WORKER_NAME_PLACEHOLDER, **_jobqueue_kwargs(cfg))
    return job.job_script()


class JobKeeper:
    """Resubmits the batch jobs of a dask-jobqueue ``cluster`` whose worker has gone away.

    dask-jobqueue forgets a job once its worker has left the scheduler for
    ``distributed.deploy.lost-worker-timeout`` (15 s by default) but submits a replacement only
    when the cluster is rescaled. Each :meth:`check` re-asserts the current job count (fixed
    ``jobs``, or what ``adaptive`` asked for) when a job was forgotten, which submits one job per
    forgotten one, and prints a line naming it to stderr. It also prints, once, where to look
    when no worker has connected ``NO_WORKER_HINT_S`` seconds after the start (a job that ends
    at once, e.g. a wrong ``cluster.python``, never connects and is not replaced).
    """

    def __init__(self, cluster: Any, *, quiet: bool = False, clock=None):
        import time

        self.cluster = cluster
        self.quiet = quiet
        self.clock = clock or time.monotonic
        self.t0 = self.clock()
        self.job_ids: dict[str, str] = {}
        self.hinted = False

    def say(self, msg: str) -> None:
        if not self.quiet:
            log.warning(f"gen5dask cluster: {msg}")

    def check(self) -> list[str]:
        """One pass (on the cluster's event loop); returns the job ids found lost."""
        c = self.cluster
        if getattr(c.status, "name", "") != "running":
            return []
        for name in [n for n in self.job_ids if n not in c.worker_spec]:
            del self.job_ids[name]  # scaled down on purpose (adaptive)
        for name, job in c.workers.items():
            if getattr(job, "job_id", None):
                self.job_ids[name] = job.job_id
        lost = [n for n in c.worker_spec if n in self.job_ids and n not in c.workers]
        ids = [self.job_ids.pop(n) for n in lost]
        for name, job_id in zip(lost, ids, strict=True):
            self.say(
                f"worker job {job_id} ({name}) has ended (walltime, scancel or node failure); "
                "its tasks rerun on the other workers; submitting a replacement job"
            )
        if lost:
            c.scale(jobs=len(c.worker_spec))
        if not self.hinted and self.clock() - self.t0 > NO_WORKER_HINT_S:
            self.hinted = True
            if not c.scheduler_info.get("workers") and self.job_ids:
                self.say(
                    f"no worker has connected {NO_WORKER_HINT_S:.0f} s after the start (jobs "
                    f"{', '.join(sorted(self.job_ids.values()))}); see the queue (squeue --me / "
                    "qstat -u $USER) and each job's output (SLURM: slurm-<jobid>.out in the "
                    "submit directory; PBS: dask-worker.o<jobid>) for why a job ended"
                )
            elif not c.scheduler_info.get("workers"):
                self.say(
                    f"no batch job submitted {NO_WORKER_HINT_S:.0f} s after the start: the "
                    "submit command (sbatch/qsub) failed; its error is printed above"
                )
        return ids


def keeper_interval_s(interval_s: float = 5.0) -> float:
    """Seconds between :class:`JobKeeper` checks: ``interval_s``, at most half of
    ``distributed.deploy.lost-worker-timeout``.

    dask-jobqueue keeps a job whose worker has left for that timeout, and the keeper learns a
    job's id only while the job is listed; polling at most every half timeout sees every job
    that was ever listed, even one cancelled within seconds of its start.
    """
    import dask
    from dask.utils import parse_timedelta

    timeout = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
    return min(float(interval_s), 0.5 * float(timeout))


def keep_jobs(cluster: Any, *, interval_s: float = 5.0, quiet: bool = False) -> Any:
    """Run :class:`JobKeeper` every ``interval_s`` (:func:`keeper_interval_s`) on the
    cluster's event loop.

    Returns the tornado ``PeriodicCallback``; stop it with
    ``cluster.loop.add_callback(callback.stop)`` before closing the cluster.
    """
    from tornado.ioloop import PeriodicCallback

    keeper = JobKeeper(cluster, quiet=quiet)
    callback = PeriodicCallback(keeper.check, keeper_interval_s(interval_s) * 1000.0)
    cluster.loop.add_callback(callback.start)
    return callback


@contextlib.contextmanager
def dask_client(cfg: ClusterConfig, *, quiet: bool = False) -> Iterator[Any]:
    """Yield a ``distributed.Client`` (or ``None`` for ``kind: synchronous``) and close it."""
    if cfg.kind == "synchronous":
        yield None
        return
    if cfg.kind == "address":
        with _client(cfg, quiet=quiet) as client:
            yield client
        return
    import dask

    # read by the scheduler, the nannies and (through them, or the job script's environment)
    # the workers when they start; kept for the client's lifetime
    with dask.config.set(dask_settings(cfg)), _client(cfg, quiet=quiet) as client:
        yield client


@contextlib.contextmanager
def _client(cfg: ClusterConfig, *, quiet: bool) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    for k, v in THREAD_CAPS.items():
        os.environ.setdefault(k, v)
    cluster = keeper = None
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
        keeper = keep_jobs(cluster, quiet=quiet)
        client = Client(cluster)
    if not quiet:
        link = getattr(client, "dashboard_link", None)
        log.info(f"Dask: {cfg.kind} cluster; dashboard: {link}")
    forward_worker_logs(client)  # worker-side gen5dask records show in this process
    try:
        yield client
    finally:
        if keeper is not None:
            cluster.loop.add_callback(keeper.stop)
        client.close()
        if cluster is not None:
            cluster.close()


__all__ = [
    "BATCH_DASK_CONFIG",
    "NO_WORKER_HINT_S",
    "SCHEDULER_PLACEHOLDER",
    "THREAD_CAPS",
    "WORKER_NAME_PLACEHOLDER",
    "JobKeeper",
    "dask_client",
    "dask_env",
    "dask_settings",
    "keep_jobs",
    "keeper_interval_s",
    "make_jobqueue_cluster",
    "render_job_script",
    "worker_env",
]
