"""``gen5dask run``: the whole remediation plan as data — an ordered list of stages.

Each :class:`Step` names a stage, the config sections it depends on and its upstream steps. Its
fingerprint is the hash of those sections plus the upstream fingerprints, recorded in
``OUTPUT_DIR/.gen5dask/<stage>.json`` when the stage finishes; a step whose record matches is
skipped. ``--force STAGE`` reruns that stage and every stage after it. Stages are themselves
resumable, so an interrupted run continues where it stopped.
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

SHARED = ("seed", "stamp_size", "bands", "pixscale", "chunk_size", "data")


@dataclass(frozen=True)
class Step:
    """One stage of the plan."""

    stage: str
    sections: tuple[str, ...]
    after: tuple[str, ...] = field(default_factory=tuple)


PLAN: tuple[Step, ...] = (
    Step("simulate", ("simulate",)),
    Step("anchors", ("anchors",), ("simulate",)),
    Step("hardneg", ("hardneg",), ("simulate",)),
    Step("calibrate", ("calibrate",), ("simulate", "anchors")),
    Step("inject", ("inject",), ("simulate", "calibrate")),
    Step("split", ("split",), ("inject", "anchors", "hardneg")),
    Step("audit", ("audit", "gates"), ("split",)),
    Step("ablation", ("train", "score", "evaluate", "ablation", "gates"), ("audit",)),
    Step("report", ("report",), ("ablation",)),
)


def plan_for(cfg: Any) -> tuple[Step, ...]:
    """The plan for this config: without ``simulate`` when ``data: ingested``."""
    if cfg.data == "mock":
        return PLAN
    return tuple(
        Step(s.stage, s.sections, tuple(a for a in s.after if a != "simulate"))
        for s in PLAN
        if s.stage != "simulate"
    )


def step_fingerprints(cfg: Any, plan: tuple[Step, ...] = PLAN) -> dict[str, str]:
    """Fingerprint of every step: its sections, the shared keys and its upstream fingerprints."""
    dump = cfg.model_dump(mode="json")
    shared = {k: dump[k] for k in SHARED}
    out: dict[str, str] = {}
    for step in plan:
        payload = {
            "shared": shared,
            "sections": {s: dump[s] for s in step.sections},
            "after": [out[a] for a in step.after],
        }
        out[step.stage] = config_hash(payload)
    return out


def _record_path(cfg: Any, stage: str) -> Path:
    return cfg.layout.state_dir / f"{stage}.json"


def stage_done(cfg: Any, stage: str, fingerprint: str) -> bool:
    """True when ``stage`` finished with this fingerprint."""
    p = _record_path(cfg, stage)
    if not p.exists():
        return False
    try:
        rec = json.loads(p.read_text())
    except json.JSONDecodeError:
        return False
    return rec.get("fingerprint") == fingerprint and Path(rec.get("output", "")).exists()


def record_stage(cfg: Any, stage: str, fingerprint: str, output: Path, seconds: float) -> None:
    """Write the completion record of a stage."""
    p = _record_path(cfg, stage)
    p.parent.mkdir(parents=True, exist_ok=True)
    rec = {
        "stage": stage,
        "fingerprint": fingerprint,
        "output": str(output),
        "seconds": round(seconds, 2),
        "finished": utc_now(),
    }
    p.write_text(json.dumps(rec, indent=1))


def run_plan(
    cfg: Any, client: Any = None, *, force: list[str] | tuple[str, ...] = (), plan=None
) -> Path:
    """Run every step of the plan in order; return the report path (or the last output)."""
    plan = plan_for(cfg) if plan is None else plan
    names = [s.stage for s in plan]
    bad = [f for f in force if f != "all" and f not in names]
    if bad:
        msg = f"--force {bad}: not a stage of the plan; stages: {names}"
        raise ValueError(msg)
    first_forced = min((names.index(f) for f in force if f in names), default=len(names))
    if "all" in force:
        first_forced = 0
    prints = step_fingerprints(cfg, plan)
    timings: dict[str, float] = {}
    output: Path = Path(cfg.output_dir)
    t_all = time.perf_counter()
    for i, step in enumerate(plan):
        fp = prints[step.stage]
        redo = i >= first_forced
        if not redo and stage_done(cfg, step.stage, fp):
            print(f"[gen5dask run] {step.stage}: up to date, skipped", file=sys.stderr)
            output = Path(json.loads(_record_path(cfg, step.stage).read_text())["output"])
            continue
        print(f"[gen5dask run] {step.stage}: running", file=sys.stderr)
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
    "PLAN",
    "Step",
    "plan_for",
    "record_stage",
    "run_plan",
    "stage_done",
    "step_fingerprints",
]
