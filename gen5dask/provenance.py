"""Provenance: config hashing, code version and git sha, recorded with every output."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from gen5dask import __version__


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text (sorted keys) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of a config (or any section of it)."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def config_yaml(obj: Any) -> str:
    """The effective config as YAML text."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return yaml.safe_dump(obj, sort_keys=False)


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """Git commit of the installed source tree, or '' when not in a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def utc_now() -> str:
    """ISO-8601 UTC timestamp."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def provenance_attrs(
    *, stage: str, config: Any, seed: int, parents: list[dict] | None = None
) -> dict[str, Any]:
    """Attributes recorded on every output (DESIGN §3)."""
    return {
        "gen5dask_version": __version__,
        "git_sha": git_sha(),
        "config": config_yaml(config),
        "config_hash": config_hash(config),
        "seed": int(seed),
        "created": utc_now(),
        "stage": stage,
        "parents": json.dumps(parents or []),
    }


__all__ = ["canonical_json", "config_hash", "config_yaml", "git_sha", "provenance_attrs", "utc_now"]
