"""``gen5dask run``: the whole remediation plan, derived from what each stage declares it reads.

The plan is the list :data:`PLAN_STAGES`; everything else comes from the stages' own
:func:`gen5dask.stages.declare.stage` declarations (config keys read, upstream stages whose
artifacts they read): the order (a topological order of ``after``), and each step's fingerprint
-- the hash of the declared config values plus the upstream fingerprints -- recorded in
``OUTPUT_DIR/.gen5dask/<stage>.json`` when the stage finishes.

A rerun therefore does exactly what a change requires:

* a step whose finished record matches its fingerprint is skipped (upstream of a change);
* a step whose fingerprint changed is rebuilt from scratch (``force=True``): its outputs then
  equal those of a fresh run with the new config, and nobody is asked to delete anything;
* a step that was started with the same fingerprint but never finished (an interrupted run)
  resumes (``force=False``: stores keep their finished chunks).

``--force STAGE`` rebuilds that stage and every stage downstream of it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen5dask.provenance import config_hash, utc_now
from gen5dask.stages import get_stage
from gen5dask.stages.declare import StageDecl, config_value

#: the stages ``gen5dask run`` runs (their order and dependencies come from their declarations).
PLAN_STAGES: tuple[str, ...] = (
    "simulate",
    "anchors",
    "hardneg",
    "calibrate",
    "inject",
    "split",
    "audit",
    "ablation",
    "report",
)
#: names ``--force`` also accepts: the stages ``ablation`` runs (train + score + evaluate, in two
#: phases when an arm waits for the centre-mask decision). Inside it train and score are
#: fingerprint-idempotent per arm, so an evaluation setting never retrains a model.
FORCE_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("ablation",), "score": ("ablation",), "evaluate": ("ablation",)}


@dataclass(frozen=True)
class Step:
    """One stage of the plan: the config keys it reads and its upstream steps."""

    stage: str
    reads: tuple[str, ...]
    after: tuple[str, ...] = field(default_factory=tuple)


def declaration(name: str) -> StageDecl:
    """The declaration of stage ``name`` (imports the stage module)."""
    func = get_stage(name)
    decl = getattr(func, "declaration", None)
    if not isinstance(decl, StageDecl):
        msg = f"stage {name!r} ({func.__module__}.{func.__name__}) has no @stage declaration"
        raise TypeError(msg)
    return decl


def derive_plan(names: tuple[str, ...] | list[str], cfg: Any = None) -> tuple[Step, ...]:
    """Steps of the stages ``names`` in a topological order of their declared ``after``.

    Upstream stages outside ``names`` are dropped (e.g. ``simulate`` for ingested data: its
    store is then an input made outside the plan). Ties keep the order of ``names``. With a
    ``cfg``, conditional reads (``reads_when``) that hold for it are included.
    """
    decls = {n: declaration(n) for n in names}
    if cfg is not None:
        decls = {n: d.for_config(cfg) for n, d in decls.items()}
    after = {n: tuple(a for a in d.after if a in decls) for n, d in decls.items()}
    done: list[str] = []
    todo = list(names)
    while todo:
        ready = [n for n in todo if all(a in done for a in after[n])]
        if not ready:
            msg = f"stage declarations have a dependency cycle among {todo}: {after}"
            raise ValueError(msg)
        done.append(ready[0])
        todo.remove(ready[0])
    return tuple(Step(n, decls[n].reads, after[n]) for n in done)


def plan_for(cfg: Any) -> tuple[Step, ...]:
    """The plan for this config: without ``simulate`` when ``data: ingested``."""
    names = [n for n in PLAN_STAGES if cfg.data == "mock" or n != "simulate"]
    return derive_plan(names, cfg)


def step_fingerprints(cfg: Any, plan: tuple[Step, ...] | None = None) -> dict[str, str]:
    """Fingerprint of every step: its declared config values and its upstream fingerprints."""
    plan = plan_for(cfg) if plan is None else plan
    out: dict[str, str] = {}
    for step in plan:
        payload = {
            "reads": {k: config_value(cfg, k) for k in sorted(step.reads)},
            "after": {a: out[a] for a in step.after},
        }
        out[step.stage] = config_hash(payload)
    return out


def dependents(plan: tuple[Step, ...], stages: set[str] | list[str]) -> list[str]:
    """``stages`` and every step downstream of them, in plan order."""
    hit = set(stages)
    for step in plan:
        if any(a in hit for a in step.after):
            hit.add(step.stage)
    return [s.stage for s in plan if s.stage in hit]


def readers(plan: tuple[Step, ...], key: str) -> list[str]:
    """Steps whose declaration reads config ``key`` (dotted), directly or via its section."""
    parts = key.split(".")
    prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
    return [s.stage for s in plan if any(r in prefixes or r.startswith(key + ".") for r in s.reads)]


def _record_path(cfg: Any, stage: str) -> Path:
    return cfg.layout.state_dir / f"{stage}.json"


def _read_record(cfg: Any, stage: str) -> dict:
    p = _record_path(cfg, stage)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def stage_done(cfg: Any, stage: str, fingerprint: str) -> bool:
    """True when ``stage`` finished with this fingerprint (and its output still exists)."""
    rec = _read_record(cfg, stage)
    return (
        rec.get("status", "done") == "done"
        and rec.get("fingerprint") == fingerprint
        and Path(rec.get("output", "")).exists()
    )


def _write_record(cfg: Any, stage: str, rec: dict) -> None:
    p = _record_path(cfg, stage)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    tmp.replace(p)


def record_stage(cfg: Any, stage: str, fingerprint: str, output: Path, seconds: float) -> None:
    """Write the completion record of a stage."""
    rec = {
        "stage": stage,
        "status": "done",
        "fingerprint": fingerprint,
        "output": str(output),
        "seconds": round(seconds, 2),
        "finished": utc_now(),
    }
    _write_record(cfg, stage, rec)


def _record_start(cfg: Any, stage: str, fingerprint: str) -> None:
    _write_record(
        cfg, stage, {"stage": stage, "status": "started", "fingerprint": fingerprint,
                     "started": utc_now()}
    )


def run_plan(
    cfg: Any, client: Any = None, *, force: list[str] | tuple[str, ...] = (), plan=None
) -> Path:
    """Run every step of the plan in order; return the report path (or the last output)."""
    plan = plan_for(cfg) if plan is None else plan
    names = [s.stage for s in plan]
    force = [g for f in force for g in FORCE_ALIASES.get(f, (f,))]
    bad = [f for f in force if f != "all" and f not in names]
    if bad:
        msg = f"--force {bad}: not a stage of the plan; stages: {names}"
        raise ValueError(msg)
    forced = set(names) if "all" in force else set(dependents(plan, list(force)))
    prints = step_fingerprints(cfg, plan)
    timings: dict[str, float] = {}
    output: Path = Path(cfg.output_dir)
    t_all = time.perf_counter()
    for step in plan:
        fp = prints[step.stage]
        if step.stage not in forced and stage_done(cfg, step.stage, fp):
            print(f"[gen5dask run] {step.stage}: up to date, skipped", file=sys.stderr)
            output = Path(_read_record(cfg, step.stage)["output"])
            continue
        rec = _read_record(cfg, step.stage)
        # rebuild when forced or when inputs changed since the last record; resume an
        # interrupted step with the same inputs, or one never recorded (stages resume or
        # replace their own outputs by their stored config)
        redo = step.stage in forced or (bool(rec) and rec.get("fingerprint") != fp)
        why = "forced" if step.stage in forced else ("inputs changed" if redo else "")
        print(f"[gen5dask run] {step.stage}: running" + (f" ({why})" if why else ""),
              file=sys.stderr)
        _record_start(cfg, step.stage, fp)
        t0 = time.perf_counter()
        output = Path(get_stage(step.stage)(cfg, client=client, force=redo))
        dt = time.perf_counter() - t0
        timings[step.stage] = dt
        record_stage(cfg, step.stage, fp, output, dt)
        print(f"[gen5dask run] {step.stage}: done in {dt:.1f} s -> {output}", file=sys.stderr)
    total = time.perf_counter() - t_all
    timing_file = cfg.layout.state_dir / "timings.json"
    timing_file.parent.mkdir(parents=True, exist_ok=True)
    timing_file.write_text(json.dumps({"stages_s": timings, "total_s": round(total, 2)}, indent=1))
    print(f"[gen5dask run] finished in {total:.1f} s", file=sys.stderr)
    return output


__all__ = [
    "FORCE_ALIASES",
    "PLAN_STAGES",
    "Step",
    "declaration",
    "dependents",
    "derive_plan",
    "plan_for",
    "readers",
    "record_stage",
    "run_plan",
    "stage_done",
    "step_fingerprints",
]
