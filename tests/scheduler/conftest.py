"""Fixture: one local single-node SLURM for the session, or a skip that says why not."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from .slurm_local import LocalSlurm, unavailable_reason


@pytest.fixture(scope="package")
def slurm():
    """A running single-node SLURM for this folder's tests; ``SLURM_CONF`` points at it."""
    pytest.importorskip("dask_jobqueue")
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    # not under pytest's 0700 tmp dirs: munged wants its socket's path searchable by everyone
    root = Path(tempfile.mkdtemp(prefix="gen5dask-slurm-"))
    root.chmod(0o755)
    cluster = LocalSlurm(root / "cluster")
    t0 = time.monotonic()
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    print(f"\nlocal SLURM up in {time.monotonic() - t0:.1f} s")
    saved = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        shutil.rmtree(root, ignore_errors=True)

