"""One ``gen5dask`` logger: -v/-q on the CLI, worker records forwarded to the client, and
progress bars that write plain lines (no carriage returns) where stderr is not a terminal."""

from __future__ import annotations

import io
import logging
import time

import pytest

from gen5dask import log
from gen5dask.cli import main


@pytest.fixture(autouse=True)
def _restore_logger():
    lg = logging.getLogger("gen5dask")
    state = (lg.level, lg.propagate, list(lg.handlers))
    yield
    lg.setLevel(state[0])
    lg.propagate = state[1]
    lg.handlers[:] = state[2]


def test_verbosity_levels():
    assert log.verbosity_level() == logging.INFO
    assert log.verbosity_level(verbose=1) == logging.DEBUG
    assert log.verbosity_level(quiet=1) == logging.WARNING
    assert log.verbosity_level(quiet=2) == logging.ERROR


def test_cli_v_and_q_set_the_gen5dask_logger(capsys):
    assert main(["-q", "config"]) == 0
    assert logging.getLogger("gen5dask").level == logging.WARNING
    assert main(["config", "-v"]) == 0  # after the command, too
    assert logging.getLogger("gen5dask").level == logging.DEBUG
    capsys.readouterr()
    log.get_logger("stages.x").debug("a debug line")
    err = capsys.readouterr().err
    assert "debug gen5dask.stages.x: a debug line" in err
    assert main(["config"]) == 0
    log.get_logger("x").debug("hidden")
    log.get_logger("x").info("shown")
    log.get_logger("x").warning("careful")
    err = capsys.readouterr().err
    assert "hidden" not in err and "shown\n" in err and "warning: careful" in err


def test_progress_off_a_terminal_is_plain_lines(monkeypatch):
    log.setup_logging(logging.INFO)
    buf = io.StringIO()  # not a terminal, like `> run.log`
    monkeypatch.setattr("sys.stderr", buf)
    monkeypatch.setattr(log, "PLAIN_INTERVAL_S", 0.05)
    with log.progress_bar(total=200, desc="work", unit="chunk") as bar:
        for i in range(200):
            bar.update(1)
            bar.set_postfix(loss=1.0 / (i + 1))  # forces a redraw, as the trainer does
            time.sleep(0.001)
    text = buf.getvalue()
    assert "\r" not in text
    lines = [ln for ln in text.splitlines() if ln]
    assert 1 <= len(lines) < 20  # occasional lines, not one per update
    assert "work" in lines[-1] and "200/200" in lines[-1]


def test_progress_is_off_with_q(monkeypatch):
    log.setup_logging(logging.WARNING)
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    with log.progress_bar(total=5, desc="quiet") as bar:
        bar.update(5)
    assert buf.getvalue() == ""


def _task_that_logs(x):
    from gen5dask.log import get_logger

    get_logger("stages.worker_task").warning("from a worker: chunk %d", x)
    return x


def test_worker_records_reach_the_client(capsys):
    from distributed import Client, LocalCluster

    log.setup_logging(logging.INFO)
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                     silence_logs=logging.ERROR) as lc,
        Client(lc) as client,
    ):
        log.forward_worker_logs(client)
        assert client.submit(_task_that_logs, 7, pure=False).result() == 7
        deadline = time.monotonic() + 10
        while "from a worker: chunk 7" not in capsys.readouterr().err:
            assert time.monotonic() < deadline, "worker record not forwarded"
            time.sleep(0.1)
