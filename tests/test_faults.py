"""Fault tolerance of the stages (loopback only, tiny sizes).

* two writers of one store: a subprocess holds the store lock through the ``inject`` stage; a
  second ``run_inject`` fails with :class:`StoreLockedError` and the CLI prints that as one line
  and exits 2, and the first writer's store comes out complete and correct (default suite);
* a Dask worker process killed (SIGKILL) in the middle of ``inject``: the stage completes and
  the store is bit-identical to a clean run;
* the whole ``python -m gen5dask inject`` process killed (SIGKILL) after >= 1 chunk marker: a
  rerun resumes (finished chunks are not rewritten) to the identical store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from gen5dask.store import (
    StoreLockedError,
    is_complete,
    pending_chunks,
    read_samples,
    store_geometry,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
STAMP = 32
SIM = {"n_hosts": 300, "n_anchors": 4, "n_stress": 2, "n_hard_negatives": 1, "n_rings": 2}


def _tree(out: Path, hosts: Path | None, chunk: int) -> dict:
    return {
        "output_dir": str(out),
        "seed": 5,
        "stamp_size": STAMP,
        "chunk_size": chunk,
        "cluster": {"kind": "synchronous", "progress": False},
        "simulate": SIM,
        "inject": {"n_null": 4, **({"hosts": str(hosts)} if hosts else {})},
        "calibrate": {"plot": False},
    }


def _cfg(out: Path, hosts: Path | None, chunk: int = 16):
    from gen5dask.config import config_from_dict

    return config_from_dict(_tree(out, hosts, chunk))


def _yaml(out: Path, hosts: Path, chunk: int = 16) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cfg.yaml"
    path.write_text(yaml.safe_dump(_tree(out, hosts, chunk)))
    return path


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def assert_identical(got: Path, ref: Path) -> None:
    a = read_samples(got, slice(None), None)
    b = read_samples(ref, slice(None), None)
    assert sorted(a) == sorted(b)
    for name in b:
        assert np.ascontiguousarray(a[name]).tobytes() == np.ascontiguousarray(
            b[name]).tobytes(), f"variable {name!r} differs from the clean run"


def _markers(store: Path) -> dict[str, int]:
    d = store / "_gen5dask" / "done" / "c"  # one Zarr chunk file per completed store chunk
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        if not p.name.startswith("."):
            try:
                out[p.name] = p.stat().st_mtime_ns
            except FileNotFoundError:  # replaced atomically right now
                continue
    return out


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    while not pred():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"subprocess exited ({proc.returncode}) before {what}:\n{out}")
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The host survey and a clean in-process inject run (the reference)."""
    from gen5dask.stages.inject import run_inject
    from gen5dask.stages.simulate import run_simulate

    root = tmp_path_factory.mktemp("faults")
    hosts = run_simulate(_cfg(root / "sim", None))
    ref = run_inject(_cfg(root / "clean", hosts))
    assert validate(ref) == []
    assert len(pending_chunks(ref)) == 0 and store_geometry(ref)["n_samples"] > 600
    return hosts, ref


HOLDER = textwrap.dedent("""
    import sys, time, pathlib
    from gen5dask.config import load_config
    import gen5dask.stages.inject as inj

    ready, go = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    real = inj.map_chunks

    def held(func, indices, *args, **kw):
        if kw.get("desc") == "inject":  # the write phase: the stage holds the store lock
            ready.write_text("holding")
            t0 = time.monotonic()
            while not go.exists() and time.monotonic() - t0 < 120:
                time.sleep(0.01)
        return real(func, indices, *args, **kw)

    inj.map_chunks = held
    inj.run_inject(load_config(sys.argv[1]))
    print("first writer done")
""")


def test_second_writer_refused_stage_and_cli(clean, tmp_path, capsys):
    from gen5dask.cli import main
    from gen5dask.stages.inject import run_inject

    hosts, ref = clean
    cfg_path = _yaml(tmp_path / "out", hosts)
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(cfg_path), str(ready), str(go)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait(ready.exists, 120, "the first writer to take the lock", proc)
        cfg = _cfg(tmp_path / "out", hosts)
        with pytest.raises(StoreLockedError, match="refusing a second writer") as err:
            run_inject(cfg)
        assert f"pid {proc.pid}" in str(err.value)  # names the holder
        capsys.readouterr()
        assert main(["inject", str(cfg_path)]) == 2
        cap = capsys.readouterr()
        lines = [ln for ln in cap.err.splitlines() if ln.strip()]
        assert len(lines) == 1, cap.err
        assert lines[0].startswith("gen5dask inject: error: ")
        assert "refusing a second writer" in lines[0] and "Traceback" not in cap.err
        assert not is_complete(cfg.layout.train)  # nothing finalized behind the holder's back
    finally:
        go.write_text("go")
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "first writer done" in out
    # the first writer's store is complete and exactly the clean run
    assert validate(cfg.layout.train) == []
    assert_identical(cfg.layout.train, ref)


@pytest.mark.slow
def test_worker_killed_mid_inject(clean, tmp_path):
    from distributed import Client, LocalCluster

    from gen5dask.stages.inject import run_inject

    hosts, ref = clean
    cfg = _cfg(tmp_path / "out", hosts, chunk=8)
    store = cfg.layout.train
    n_chunks = -(-store_geometry(ref)["n_samples"] // 8)
    result: dict = {}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address=None, silence_logs=50) as lc,
        Client(lc) as client,
    ):
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2

        def target():
            try:
                result["path"] = run_inject(cfg, client=client)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                result["error"] = exc

        th = threading.Thread(target=target)
        th.start()
        _wait(lambda: len(_markers(store)) >= 2 or not th.is_alive(), 120,
              "the first chunk markers")
        n_done = len(_markers(store))
        assert th.is_alive() and n_done < n_chunks, "stage finished before the kill"
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        th.join(timeout=300)
        assert not th.is_alive()
        # the nanny restarted the killed worker; the cluster is whole again
        _wait(lambda: len(client.scheduler_info()["workers"]) == 2, 60, "the worker restart")
        assert victim not in client.run(os.getpid).values()
    assert "error" not in result, result.get("error")
    assert is_complete(store) and validate(store) == []
    assert_identical(store, ref)


@pytest.mark.slow
def test_process_killed_mid_inject_resumes(clean, tmp_path):
    from gen5dask.stages.inject import run_inject

    hosts, ref = clean
    cfg_path = _yaml(tmp_path / "out", hosts, chunk=8)
    cfg = _cfg(tmp_path / "out", hosts, chunk=8)
    store = cfg.layout.train
    n_chunks = -(-store_geometry(ref)["n_samples"] // 8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gen5dask", "inject", str(cfg_path)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait(lambda: len(_markers(store)) >= 1, 120, "the first chunk marker", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = _markers(store)
    assert 1 <= len(before) < n_chunks, "process finished before the kill"
    assert not is_complete(store)
    assert len(pending_chunks(store)) == n_chunks - len(before)
    # the rerun takes the (released) lock, resumes the pending chunks only
    run_inject(cfg)
    after = _markers(store)
    assert len(after) == n_chunks
    assert {k: after[k] for k in before} == before  # finished chunks were not rewritten
    assert is_complete(store) and validate(store) == []
    assert_identical(store, ref)
