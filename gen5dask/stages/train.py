"""``gen5dask train``: train every ablation arm -> ``OUTPUT_DIR/models/<arm>.pt``.

Gates (DESIGN §8): ``cfg.layout.gates_json`` (written by ``audit``) is a list of
``{name, passed, blocking, ...}``. Training refuses to start when a blocking gate failed and its
name is not in ``gates.override``; overrides actually used are recorded in every model file's
provenance. If gates.json is absent (audit never ran) training refuses to start, naming the
file and the command that writes it (``gen5dask audit CONFIG``); there is no opt-out — to train
past a failed gate, run audit and list the gate in ``gates.override``.

Idempotent: an arm whose model file exists with the same fingerprint (train config, arm, seed,
input stores) is skipped; an interrupted arm resumes from its last epoch checkpoint;
``force=True`` retrains from scratch. Under torchrun (see :mod:`gen5dask.train.distributed`)
every rank calls this and only rank 0 writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gen5dask import gates as gates_mod
from gen5dask.log import get_logger
from gen5dask.stages.declare import stage
from gen5dask.store import StoreError, is_complete

log = get_logger(__name__)


def check_gates(cfg) -> dict:
    """Enforce the blocking gates of ``gates.json`` (via :mod:`gen5dask.gates`) before training.

    Returns
    -------
    dict
        ``gates_status`` ("passed" / "overridden"), ``gates_overridden`` (names of failed
        blocking gates allowed by ``gates.override``), ``gates_failed_nonblocking``.

    Raises
    ------
    FileNotFoundError
        If ``gates.json`` is absent (audit never ran).
    RuntimeError
        Naming every failed blocking gate that is not overridden.
    """
    path = Path(cfg.layout.gates_json)
    if not path.exists():
        msg = (f"training refused: {path} not found — the audit gates were never evaluated; "
               "run `gen5dask audit CONFIG` (or `gen5dask run CONFIG`, which audits before "
               "training) first")
        raise FileNotFoundError(msg)
    refused = gates_mod.check_gates(cfg)
    if refused:
        raise RuntimeError("training refused: " + gates_mod.failure_message(refused, path))
    records = gates_mod.load_gates(path)
    used = gates_mod.blocking_failures(records)
    nonblocking = [g["name"] for g in records if g.get("passed") is False
                   and not g.get("blocking")]
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
    waiting = [a.name for a in arms if a.center_mask == "decision"]
    if waiting:
        msg = (f"train: arm(s) {waiting} have center_mask: decision, which the centre-masked "
               "ablation resolves; run `gen5dask ablation` (or set center_mask true/false)")
        raise ValueError(msg)
    return arms


@stage(
    "train",
    reads=("train", "ablation.arms", "gates", "seed", "bands", "stamp_size", "pixscale"),
    after=("audit",),
)
def run_train(cfg, client=None, *, force: bool = False) -> Path:
    """Train every selected arm (see module docstring). Returns ``cfg.layout.models_dir``.

    ``client`` is unused (training runs in this process, or under torchrun).
    """
    import torch

    from gen5dask.train.trainer import arm_fingerprint, store_parents, train_arm

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
        fp = arm_fingerprint(cfg, arm, store_parents(cfg, arm))
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
                    log.info(f"[train] {arm.name}: up to date ({out})")
                continue
        prov = {
            "gates_status": gates["gates_status"],
            "gates_overridden": list(gates["gates_overridden"]),
            "gates_failed_nonblocking": list(gates["gates_failed_nonblocking"]),
        }
        res = train_arm(cfg, arm, provenance=prov)
        if rank == 0:
            log.info(f"[train] {arm.name}: best {res['selection_metric']}="
                  f"{res['selection_value']:.4f} at epoch {res['best_epoch']} -> {out}")
    return layout.models_dir


__all__ = ["check_gates", "run_train", "selected_arms"]
