"""Multi-GPU (or multi-process CPU) data-parallel training with torch.distributed DDP.

Launch with torchrun, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``::

    torchrun --nproc_per_node 4 -m gen5dask.train.distributed CONFIG [--set k=v ...]

Every rank builds the same selections; :class:`gen5dask.train.dataset.StampStream` deals store
chunks to ranks (and to each rank's loader workers) so every training sample is seen exactly
once per epoch across ranks, with the same number of batches on every rank. Only rank 0 writes
checkpoints, logs and the model file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from gen5dask.log import get_logger

log = get_logger(__name__)


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` if unset)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


@contextmanager
def process_group(backend: str | None = None) -> Iterator[tuple[int, int]]:
    """Initialise the default process group from the environment; destroy it on exit.

    ``backend`` defaults to ``nccl`` with CUDA and ``gloo`` otherwise. With ``WORLD_SIZE``
    unset or 1 nothing is initialised. Yields ``(rank, world_size)``.
    """
    rank, world, local = env_world()
    if world <= 1 or (torch.distributed.is_initialized()):
        yield (torch.distributed.get_rank(), torch.distributed.get_world_size()) if (
            torch.distributed.is_initialized()) else (0, 1)
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        yield rank, world
    finally:
        torch.distributed.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """torchrun entry point: train the configured arms with DDP (gates checked as in train)."""
    import argparse

    from gen5dask.config import load_config
    from gen5dask.stages.train import run_train

    p = argparse.ArgumentParser(prog="python -m gen5dask.train.distributed")
    p.add_argument("config", nargs="?", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    with process_group() as (rank, world):
        out = run_train(cfg, force=args.force)
        if rank == 0:
            log.info(f"train ({world} ranks): wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["env_world", "main", "process_group"]
