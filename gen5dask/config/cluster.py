"""Config section ``cluster``: where Dask runs (local, existing scheduler, SLURM, PBS)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gen5dask.config.base import Section


class ClusterConfig(Section):
    """Dask cluster settings (argument > user YAML > packaged defaults)."""

    kind: Literal["local", "address", "slurm", "pbs", "synchronous"] = "local"
    """``local`` LocalCluster; ``address`` existing scheduler; ``slurm``/``pbs`` via
    dask-jobqueue; ``synchronous`` runs tasks in-process (reference executor, debugging)."""
    n_workers: int | None = None
    """Local worker processes (default: the machine's cores)."""
    threads_per_worker: int = 1
    """Threads per worker process (kernels are single-threaded; 1 avoids oversubscription)."""
    memory_limit: str = "auto"
    """Per-worker memory limit for LocalCluster (e.g. ``4GiB``)."""
    dashboard_address: str | None = ":0"
    """LocalCluster dashboard address (``None`` disables it)."""
    address: str | None = None
    """Scheduler address for ``kind: address`` (e.g. ``tcp://10.0.0.1:8786``)."""
    queue: str | None = None
    """Batch queue / partition."""
    account: str | None = None
    """Batch account / project."""
    cores: int = 8
    """Cores per batch job."""
    processes: int | None = None
    """Worker processes per batch job (default: ``cores``, one thread each)."""
    memory: str = "32GiB"
    """Memory per batch job."""
    walltime: str = "02:00:00"
    """Walltime per batch job (HH:MM:SS)."""
    jobs: int = 1
    """Number of batch jobs to start (ignored when ``adaptive`` is set)."""
    adaptive: tuple[int, int] | None = None
    """``[minimum_jobs, maximum_jobs]`` for adaptive scaling."""
    job_extra_directives: list[str] = Field(default_factory=list)
    """Extra ``#SBATCH`` / ``#PBS`` directives, e.g. ``--constraint=cpu``."""
    local_directory: str | None = None
    """Worker scratch directory (node-local disk on HPC)."""
    python: str | None = None
    """Python executable on the compute nodes (default: this interpreter)."""
    job_script_prologue: list[str] = Field(default_factory=list)
    """Shell lines run before the worker starts (module loads, ``source venv/bin/activate``)."""
    worker_env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for workers (thread caps are always set to 1)."""
    dask_config: dict[str, str | bool | int | float] = Field(default_factory=dict)
    """Dask settings (dotted keys, e.g. ``distributed.worker.profile.enabled: true``) for the
    scheduler, nannies and workers that gen5dask starts (``local``, ``slurm``, ``pbs``). They
    override gen5dask's batch settings (``gen5dask.cluster.BATCH_DASK_CONFIG``: no statistical
    profiler, 1 s event-loop tick, 2 s system monitor, 1 s memory monitor), which cut the CPU
    an idle 2-worker cluster burns by ~85 %; set the profiler back on to see the dashboard's
    profile page. Not applied to an existing scheduler (``kind: address``)."""
    progress: bool = True
    """Show a progress bar for long stages."""
