"""scripts/scaling_reference.py: the in-memory chunk and the 1 -> 2 process timing plumbing."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "scaling_reference.py"
_SPEC = importlib.util.spec_from_file_location("scaling_reference", _PATH)
sr = importlib.util.module_from_spec(_SPEC)
sys.modules["scaling_reference"] = sr  # spawned processes import the module by this name
_SPEC.loader.exec_module(sr)


def test_chunk_batch_is_a_stage_chunk_a_third_controls():
    from gen5dask.injection.batch import inject_rows
    from gen5dask.store.schema import KINDS

    host, plan, spec = sr.chunk_batch(9, stamp_size=32)
    data, summary = inject_rows(host, plan, spec)
    assert summary["n_control"] == 3 and summary["n_injection"] == 6
    kinds = data["kind"]
    control = kinds == KINDS.index("control")
    # controls are the hosts unchanged; injections carry light
    np.testing.assert_array_equal(data["image"][control], host["image"][control])
    added = data["image"][~control] - host["image"][~control]
    assert np.all(added.sum(axis=(1, 2, 3)) > 0)
    # both brightness modes are exercised
    assert len(set(data["inject_mode"][~control].tolist())) == 2


def test_timed_runs_each_process_and_reports_the_slowest(monkeypatch):
    monkeypatch.syspath_prepend(str(_PATH.parent))
    one = sr.timed_processes("compute", 1, 200_000, 1)
    two = sr.timed_processes("compute", 2, 200_000, 1)
    assert one > 0 and two > 0


def test_a_failing_process_is_reported_not_waited_for(monkeypatch):
    monkeypatch.syspath_prepend(str(_PATH.parent))
    with pytest.raises(RuntimeError, match="exited with code"):
        sr.timed_processes("no-such-kind", 2, 1, 1)
