"""``gen5dask train``: train every ablation arm -> ``OUTPUT_DIR/models/<arm>.pt``.

Gates (DESIGN §8): ``cfg.layout.gates_json`` (written by ``audit``) is a list of
``{name, passed, blocking, ...}``. Training refuses to start when a blocking gate failed and its
name is not in ``gates.override``; overrides actually used are recorded in every model file's
provenance. If gates.json is absent (audit not run) training warns and proceeds, and the model
provenance says ``gates_status: "absent"``.

Idempotent: an arm whose model file exists with the same fingerprint (train config, arm, seed,
input stores) is skipped; an interrupted arm resumes from its last epoch checkpoint;
``force=True`` retrains from scratch. Under torchrun (see :mod:`gen5dask.train.distributed`)
every rank calls this and only rank 0 writes.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

from gen5dask.store import StoreError, is_complete


def check_gates(cfg) -> dict:
    """Read gates.json and enforce blocking gates.

    Returns
    -------
    dict
        ``gates_status`` ("absent" / "passed" / "overridden"), ``gates_overridden`` (names of
        failed blocking gates allowed by ``gates.override``), ``gates_failed_nonblocking``.

    Raises
    ------
    RuntimeError
        Naming every failed blocking gate that is not overridden.
    ValueError
        If gates.json is not a list of gate records.
    """
    path = Path(cfg.layout.gates_json)
    if not path.exists():
        warnings.warn(f"{path} not found (audit not run?): training without gate checks",
                      stacklevel=2)
        print(f"[train] warning: {path} not found; gates not checked", file=sys.stderr)
        return {"gates_status": "absent", "gates_overridden": [], "gates_failed_nonblocking": []}
    try:
        gates = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{path}: not valid JSON ({exc})"
        raise ValueError(msg) from None
    if isinstance(gates, dict) and "gates" in gates:
        gates = gates["gates"]
    if not isinstance(gates, list) or not all(isinstance(g, dict) and "name" in g for g in gates):
        msg = f"{path}: expected a list of {{name, passed, blocking, ...}} records"
        raise ValueError(msg)
    failed_blocking = [g["name"] for g in gates
                       if g.get("passed") is False and g.get("blocking", True)]
    override = set(cfg.gates.override)
    blocked = [n for n in failed_blocking if n not in override]
    if blocked:
        msg = (
            f"training refused: blocking gate(s) failed: {', '.join(blocked)} (see {path}); "
            "fix the cause, or allow them explicitly with gates.override: [" + ", ".join(blocked)
            + "]"
        )
        raise RuntimeError(msg)
    used = [n for n in failed_blocking if n in override]
    nonblocking = [g["name"] for g in gates if g.get("passed") is False
                   and not g.get("blocking", True)]
    return {"gates_status": "overridden" if used else "passed", "gates_overridden": used,
            "gates_failed_nonblocking": nonblocking}


def selected_arms(cfg) -> list:
    """Arms of ``cfg.ablation.arms`` to train (``train.arms`` subset, in config order)."""
    arms = list(cfg.ablation.arms)
    if cfg.train.arms is not None:
        names = {a.name for a in arms}
        unknown = [n for n in cfg.train.arms if n not in names]
        if unknown:
            msg = f"train.arms: unknown arm(s) {unknown}; ablation.arms has {sorted(names)}"
            raise ValueError(msg)
        arms = [a for a in arms if a.name in set(cfg.train.arms)]
    return arms


def run_train(cfg, client=None, *, force: bool = False) -> Path:
    """Train every selected arm (see module docstring). Returns ``cfg.layout.models_dir``.

    ``client`` is unused (training runs in this process, or under torchrun).
    """
    import torch

    from gen5dask.train.trainer import _store_parents, arm_fingerprint, train_arm

    if not is_complete(cfg.layout.train):
        msg = f"{cfg.layout.train}: missing or incomplete; run inject and split first"
        raise StoreError(msg)
    gates = check_gates(cfg)
    rank = torch.distributed.get_rank() if (
        torch.distributed.is_available() and torch.distributed.is_initialized()) else 0
    layout = cfg.layout
    layout.models_dir.mkdir(parents=True, exist_ok=True)
    for arm in selected_arms(cfg):
        out = layout.model(arm.name)
        fp = arm_fingerprint(cfg, arm, _store_parents(cfg, arm))
        if force:
            if rank == 0:
                shutil.rmtree(layout.checkpoint_dir(arm.name), ignore_errors=True)
                out.unlink(missing_ok=True)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.barrier()
        elif out.exists():
            meta = torch.load(out, map_location="cpu", weights_only=True)
            if meta.get("fingerprint") == fp:
                if rank == 0:
                    print(f"[train] {arm.name}: up to date ({out})", file=sys.stderr)
                continue
        prov = {
            "gates_status": gates["gates_status"],
            "gates_overridden": list(gates["gates_overridden"]),
            "gates_failed_nonblocking": list(gates["gates_failed_nonblocking"]),
        }
        res = train_arm(cfg, arm, provenance=prov)
        if rank == 0:
            print(f"[train] {arm.name}: best {res['selection_metric']}="
                  f"{res['selection_value']:.4f} at epoch {res['best_epoch']} -> {out}",
                  file=sys.stderr)
    return layout.models_dir


__all__ = ["check_gates", "run_train", "selected_arms"]
