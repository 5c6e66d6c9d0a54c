"""Command-line interface: a thin shell over the Python API.

``gen5dask run CONFIG`` runs the whole remediation plan; ``gen5dask STAGE CONFIG`` runs one
stage; ``gen5dask info STORE`` summarises and validates a store. ``--set a.b=c`` overrides any
config key (typed by YAML). Errors print one clear line (``--debug`` for the traceback).
Messages go through the ``gen5dask`` logger to stderr: ``-v`` adds debug lines, ``-q`` keeps
warnings and errors only (and turns progress bars off).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence

from gen5dask import __version__
from gen5dask.stages import STAGES


class UsageError(Exception):
    """A user-facing error (bad input, bad config): printed without a traceback."""


def _add_verbosity_args(p: argparse.ArgumentParser, *, sub: bool) -> None:
    kw = {"default": argparse.SUPPRESS} if sub else {"default": 0}
    p.add_argument("-v", "--verbose", action="count",
                   help="more messages: debug lines with logger and worker names", **kw)
    p.add_argument("-q", "--quiet", action="count",
                   help="fewer messages: warnings and errors only, no progress bars (-qq: "
                   "errors only)", **kw)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    _add_verbosity_args(p, sub=True)
    p.add_argument(
        "config", nargs="?", default=None, help="YAML config (default: built-in defaults)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set inject.replicates=2 (repeatable, typed by YAML)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="gen5dask",
        description="Train, stress-test and calibrate a strong-lens finder on a survey, on Dask.",
    )
    parser.add_argument("--version", action="version", version=f"gen5dask {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    _add_verbosity_args(parser, sub=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run the whole remediation plan (skips stages already done)")
    _add_config_args(p)
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        help="rerun STAGE (and everything after it) even if done; 'all' reruns every stage",
    )

    p = sub.add_parser("info", help="counts, provenance and contract validation of a store")
    _add_verbosity_args(p, sub=True)
    p.add_argument("store", help="path to a .zarr store")
    p.add_argument("--no-pixels", action="store_true", help="skip the NaN/inf pixel scan")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser("config", help="print the effective config (YAML) or the config reference")
    _add_config_args(p)
    p.add_argument("--reference", action="store_true", help="print every key with its meaning")

    p = sub.add_parser("job-script", help="print the SLURM/PBS job script of a cluster config")
    _add_config_args(p)

    for name, (_, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_config_args(p)
        p.add_argument("--force", action="store_true", help="redo the stage from scratch")
    return parser


def _load(args):
    from gen5dask.config import load_config

    return load_config(args.config, args.overrides)


def _cmd_info(args) -> int:
    from gen5dask.store.info import store_info

    info = store_info(args.store, check_pixels=not args.no_pixels)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        from gen5dask.store.info import format_info

        print(format_info(info))
    return 0 if not info["violations"] else 1


def _cmd_job_script(args) -> int:
    from gen5dask.cluster import render_job_script

    cfg = _load(args)
    if cfg.cluster.kind not in ("slurm", "pbs"):
        msg = f"cluster.kind is {cfg.cluster.kind!r}; job scripts exist for slurm and pbs"
        raise UsageError(msg)
    print(render_job_script(cfg.cluster))
    return 0


def _cmd_config(args) -> int:
    if args.reference:
        from gen5dask.config.reference import reference_markdown

        print(reference_markdown(), end="")
        return 0
    from gen5dask.provenance import config_yaml

    print(config_yaml(_load(args)), end="")
    return 0


def _cmd_stage(args) -> int:
    from gen5dask.cluster import dask_client
    from gen5dask.stages import get_stage

    cfg = _load(args)
    func = get_stage(args.command)
    with dask_client(cfg.cluster) as client:
        out = func(cfg, client=client, force=args.force)
    print(f"{args.command}: wrote {out}")
    return 0


def _cmd_run(args) -> int:
    from gen5dask.cluster import dask_client
    from gen5dask.stages.run import run_plan

    cfg = _load(args)
    with dask_client(cfg.cluster) as client:
        report = run_plan(cfg, client=client, force=args.force)
    print(f"report: {report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 invalid store, 2 error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from gen5dask.log import setup_logging, verbosity_level

    setup_logging(verbosity_level(args.verbose, args.quiet))
    from gen5dask.config import ConfigError
    from gen5dask.store import StoreError, StoreLockedError

    handlers = {
        "info": _cmd_info,
        "run": _cmd_run,
        "job-script": _cmd_job_script,
        "config": _cmd_config,
    }
    handler = handlers.get(args.command, _cmd_stage)
    user_errors = (
        UsageError,
        ConfigError,
        StoreError,
        StoreLockedError,
        FileNotFoundError,
        PermissionError,
        ValueError,
        KeyError,
    )
    try:
        return handler(args)
    except user_errors as exc:
        if args.debug:
            traceback.print_exc()
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"gen5dask {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
