"""One ``gen5dask`` logger, its command-line set-up, worker forwarding and progress bars.

Every module logs through ``logging.getLogger("gen5dask...")`` (:func:`get_logger`); as a
library, gen5dask installs no handler of its own until asked: the CLI calls
:func:`setup_logging` (``-v`` debug, ``-q`` warnings only), and a Python user either calls it
too or configures the ``gen5dask`` logger like any other.

Messages logged inside Dask tasks are forwarded to the client (:func:`forward_worker_logs`,
distributed's ``Client.forward_logging``), so a worker's warning shows in the driver's log.

:func:`progress_bar` is a tqdm bar where stderr is a terminal; elsewhere (a SLURM log,
``> run.log``) the same bar writes an occasional plain log line instead of carriage-return
redraws.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

NAME = "gen5dask"
logger = logging.getLogger(NAME)

#: seconds between plain progress lines when stderr is not a terminal
PLAIN_INTERVAL_S = 30.0


def get_logger(name: str = "") -> logging.Logger:
    """The ``gen5dask`` logger, or its child ``gen5dask.<name>`` (``name`` may be a module's
    ``__name__``)."""
    if not name or name == NAME:
        return logger
    return logging.getLogger(name if name.startswith(f"{NAME}.") else f"{NAME}.{name}")


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to the *current* ``sys.stderr`` (redirections and pytest's
    capture included), not to the stream that was current when it was made."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _Formatter(logging.Formatter):
    """``message`` at INFO; ``LEVEL: message`` above; at debug verbosity also the logger name
    and, for records forwarded from a Dask worker, the worker's address."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and self.verbose:
            msg = f"{msg}\n{self.formatException(record.exc_info)}"
        worker = getattr(record, "worker", None)
        if self.verbose:
            where = f"{record.name}" + (f" [worker {worker}]" if worker else "")
            return f"{record.levelname.lower()} {where}: {msg}"
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        return msg


def verbosity_level(verbose: int = 0, quiet: int = 0) -> int:
    """Logging level of ``-v`` / ``-q`` counts: INFO by default, DEBUG with ``-v``, WARNING with
    ``-q`` and ERROR with ``-qq``."""
    step = int(verbose) - int(quiet)
    if step >= 1:
        return logging.DEBUG
    return {0: logging.INFO, -1: logging.WARNING}.get(step, logging.ERROR)


def setup_logging(level: int | str = logging.INFO) -> logging.Logger:
    """Send ``gen5dask`` messages at ``level`` and above to stderr (idempotent).

    Returns the ``gen5dask`` logger. Records then stop propagating to the root logger, so nothing
    is printed twice; without this call they propagate to whatever handler the user set up.
    """
    level = logging.getLevelName(level) if isinstance(level, str) else int(level)
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        logger.addHandler(handler)
    handler.setFormatter(_Formatter(verbose=level <= logging.DEBUG))
    handler.setLevel(level)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def current_level() -> int:
    """The effective level of the ``gen5dask`` logger."""
    return logger.getEffectiveLevel()


def _set_worker_level(level: int) -> None:
    logging.getLogger(NAME).setLevel(level)


def forward_worker_logs(client: Any, level: int | None = None) -> None:
    """Forward ``gen5dask`` records logged in Dask tasks to this (client) process.

    Sets the worker-side ``gen5dask`` logger to ``level`` (default: this process's level) on
    every worker, now and on workers started later, and calls distributed's
    ``Client.forward_logging``; the client's ``gen5dask`` handlers then show the records.
    """
    if client is None:
        return
    level = current_level() if level is None else int(level)
    from distributed.diagnostics.plugin import WorkerPlugin

    class _LogLevel(WorkerPlugin):
        name = "gen5dask-log-level"

        def __init__(self, lvl: int) -> None:
            self.lvl = lvl

        def setup(self, worker: Any) -> None:
            _set_worker_level(self.lvl)

    client.register_plugin(_LogLevel(level), name="gen5dask-log-level")
    client.forward_logging(NAME, level=level)


class _LogLines:
    """A file-like sink for tqdm off a terminal: each non-empty redraw becomes one log line."""

    def __init__(self, log: logging.Logger) -> None:
        import time

        self.log = log
        self.last = ""
        self.clock = time.monotonic
        self.last_t = -float("inf")

    def write(self, text: str) -> int:
        # tqdm redraws on every set_postfix too: keep one line per interval, plus the end
        for piece in text.replace("\r", "\n").split("\n"):
            line = piece.strip()
            if not line or line == self.last:
                continue
            now = self.clock()
            if "100%" in line or now - self.last_t >= PLAIN_INTERVAL_S:
                self.log.info(line)
                self.last, self.last_t = line, now
        return len(text)

    def flush(self) -> None:
        pass


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(
    total: int | None = None,
    desc: str = "",
    *,
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    **kwargs: Any,
):
    """A tqdm progress bar that fits where it is shown.

    On a terminal: a normal tqdm bar on stderr. Elsewhere (file, pipe, SLURM log): a plain
    ``gen5dask`` INFO line at most every :data:`PLAIN_INTERVAL_S` seconds and one at the end,
    without carriage returns. Disabled with ``disable`` or when the ``gen5dask`` logger is
    quieter than INFO (``-q``).
    """
    from tqdm.auto import tqdm

    # -q (an explicit level above INFO) turns bars off; an unconfigured logger does not
    disable = bool(disable) or logging.INFO < logger.level
    if _is_terminal(sys.stderr) or disable:
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=leave,
                    file=sys.stderr, **kwargs)
    from tqdm import tqdm as plain_tqdm

    kwargs.pop("dynamic_ncols", None)
    return plain_tqdm(
        total=total, desc=desc, unit=unit, file=_LogLines(get_logger("progress")),
        mininterval=PLAIN_INTERVAL_S, maxinterval=PLAIN_INTERVAL_S, ascii=True, ncols=80,
        leave=True, **kwargs,
    )


__all__ = [
    "NAME",
    "PLAIN_INTERVAL_S",
    "current_level",
    "forward_worker_logs",
    "get_logger",
    "logger",
    "progress_bar",
    "setup_logging",
    "verbosity_level",
]
