"""``gen5dask simulate``: the mock DR10 survey -> ``OUTPUT_DIR/survey.zarr`` (+ ``mock/*.csv``).

One contract store holds every population (kinds host, anchor, stress, hard_negative, ring;
see :mod:`gen5dask.sim.survey` for sample ids, randomness and the off-target anchors) with the
optional variables ``tier``, ``subtype``, ``host_mag_r`` (and ``arc`` when
``simulate.store_arc``). Chunks are simulated as Dask tasks (:func:`map_chunks`); each task
opens the store itself and writes its chunk, so a killed run resumes where it stopped and the
output is bit-identical for any worker count and chunk size.

Side products in ``OUTPUT_DIR/mock/``:

* ``anchor_list.csv`` -- the "hand-typed" anchor list (id = sample id in survey.zarr, name, ra,
  dec, grade, theta_e, z_lens, z_source, source); ``off_target_fraction`` of its rows carry
  the earlier pipeline's ~3 arcmin coordinate error, and their cutouts show empty sky;
* ``lens_catalog.csv`` -- the same anchors at their true positions (a reference catalogue for
  the coordinate cross-match; use ``anchors.reference: {output_dir}/mock/lens_catalog.csv``
  when ``simulate.anchor_positions`` is ``footprint``);
* ``stress_list.csv`` -- the SLACS/BELLS-like stress lenses, same columns.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from gen5dask.config import Config
from gen5dask.injection.laws import LAW_KEYS
from gen5dask.injection.spec import InjectionModel
from gen5dask.sim import survey
from gen5dask.sim.populations import anchor_mag_offset
from gen5dask.stages._chunks import map_chunks
from gen5dask.stages.declare import stage
from gen5dask.store import (
    create_store,
    finalize_store,
    is_complete,
    pending_chunks,
    store_geometry,
    store_lock,
    write_chunk,
)
from gen5dask.store.zarrstore import chunk_bounds

STAGE = "simulate"
#: anchors per task of the physical-anchor precompute
ANCHOR_BLOCK = 8
LIST_COLUMNS = ["id", "name", "ra", "dec", "grade", "theta_e", "z_lens", "z_source", "source"]


def effective_config(cfg: Config) -> dict:
    """The settings the survey depends on (its config hash decides resumption)."""
    return {
        "simulate": cfg.simulate.model_dump(mode="json"),
        "seed": int(cfg.seed),
        "stamp_size": int(cfg.stamp_size),
        "bands": list(cfg.bands),
        "pixscale": float(cfg.pixscale),
        **({"inject": cfg.inject.model_dump(mode="json")}
           if cfg.simulate.anchor_model == "injection" else {}),
    }


def make_context(cfg: Config) -> survey.Context:
    """Run-wide deterministic inputs: anchor magnitude offset and (optional) lenscat rows."""
    sim = cfg.simulate
    if "r" not in cfg.bands:
        msg = f"simulate needs the r band (arc S/N and core brightness), bands are {cfg.bands}"
        raise ValueError(msg)
    dm = anchor_mag_offset(sim, seed=cfg.seed, stamp_size=cfg.stamp_size, pixscale=cfg.pixscale)
    lenscat = None
    if sim.anchor_positions == "lenscat" and sim.n_anchors:
        lenscat = survey.lenscat_anchor_table(sim, cfg.seed)
    return survey.Context(
        sim=sim, seed=int(cfg.seed), bands=tuple(cfg.bands), stamp_size=int(cfg.stamp_size),
        pixscale=float(cfg.pixscale), anchor_dm=dm, lenscat=lenscat,
        anchor_injection=(InjectionModel.from_config(cfg.inject)
                          if sim.anchor_model == "injection" else None),
    )


def simulate_chunk(index: int, path: str, ctx: survey.Context) -> dict:
    """Dask task: simulate and write chunk ``index`` of the survey store at ``path``."""
    geo = store_geometry(path)
    a, b = chunk_bounds(geo["n_samples"], geo["chunk_size"])[index]
    ids = survey.SurveyPlan.from_config(ctx.sim).ids(a, b)
    data = survey.simulate_samples(ids, ctx)
    keep = {"sample", *geo["variables"]}
    write_chunk(path, index, {k: v for k, v in data.items() if k in keep})
    return {"chunk": index, "n": int(b - a)}


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, index=False, float_format="%.7f")
    os.replace(tmp, path)


def write_lists(cfg: Config, ctx: survey.Context) -> dict[str, Path]:
    """Write ``mock/anchor_list.csv``, ``mock/lens_catalog.csv`` and ``mock/stress_list.csv``."""
    plan = survey.SurveyPlan.from_config(cfg.simulate)
    mock = Path(cfg.output_dir) / "mock"
    mock.mkdir(parents=True, exist_ok=True)
    out = {}
    anchors = pd.DataFrame(survey.catalogue_rows("anchor", ctx, plan))
    stress = pd.DataFrame(survey.catalogue_rows("stress", ctx, plan))
    empty = pd.DataFrame(columns=[*LIST_COLUMNS, "true_ra", "true_dec"])
    anchors = anchors if len(anchors) else empty
    stress = stress if len(stress) else empty
    out["anchor_list"] = mock / "anchor_list.csv"
    _write_csv(anchors[LIST_COLUMNS], out["anchor_list"])
    truth = anchors[LIST_COLUMNS].copy()
    truth["ra"], truth["dec"] = anchors["true_ra"], anchors["true_dec"]
    out["lens_catalog"] = mock / "lens_catalog.csv"
    _write_csv(truth, out["lens_catalog"])
    out["stress_list"] = mock / "stress_list.csv"
    _write_csv(stress[LIST_COLUMNS], out["stress_list"])
    return out


#: what ``anchor_model: injection`` reads of ``inject``: the laws, source and renderer.
INJECTION_MODEL_KEYS = (
    *LAW_KEYS, "real_galaxy_catalog", "real_galaxy_image_dir", "real_galaxy_max_size",
    "real_galaxy_threshold_sigma", "psf_beta", "supersample",
)


@stage(
    "simulate",
    reads=("simulate", "seed", "stamp_size", "bands", "pixscale", "chunk_size"),
    reads_when=(("simulate.anchor_model", "injection",
                 tuple(f"inject.{k}" for k in INJECTION_MODEL_KEYS)),),
)
def run_simulate(cfg: Config, client=None, *, force: bool = False) -> Path:
    """Simulate the mock survey into ``cfg.layout.survey``; resumable and idempotent.

    Parameters
    ----------
    cfg : Config
        Uses ``cfg.simulate``, ``seed``, ``stamp_size``, ``bands``, ``pixscale``,
        ``chunk_size`` and ``output_dir``.
    client : distributed.Client, optional
        Dask client; ``None`` runs the chunks in this process (the reference executor).
    force : bool
        Delete an existing store and simulate from scratch.

    Returns
    -------
    Path
        The survey store. A complete store with the same effective config is returned as is; a
        partial one resumes its pending chunks; one with another config is replaced (as is any
        with ``force``).
    """
    sim = cfg.simulate
    path = Path(cfg.layout.survey)
    plan = survey.SurveyPlan.from_config(sim)
    eff = effective_config(cfg)
    if path.exists():
        with store_lock(path):
            pass  # refuse to delete or replace a store another process is writing
        if force:
            shutil.rmtree(path)
    variables = ["tier", "subtype", "host_mag_r", "snr_opt"] + (["arc"] if sim.store_arc else [])
    create_store(
        path, n_samples=plan.n_samples, stage=STAGE, config=eff, seed=cfg.seed,
        bands=tuple(cfg.bands), stamp_size=cfg.stamp_size, chunk_size=cfg.chunk_size,
        variables=variables, overwrite=True,  # another config: replaced, never an error
    )
    ctx = make_context(cfg)
    if sim.anchor_model == "physical" and sim.n_anchors:
        # the visual selection of each anchor, once, in parallel (the list and chunks reuse it)
        nblk = -(-sim.n_anchors // ANCHOR_BLOCK)
        blocks = map_chunks(survey.anchor_lens_block, range(nblk), ctx, ANCHOR_BLOCK,
                            client=client, desc="simulate anchors", progress=cfg.cluster.progress)
        ctx = survey.with_anchor_lenses(ctx, {k: v for b in blocks for k, v in b.items()})
    lists = write_lists(cfg, ctx)
    if is_complete(path):
        return path
    with store_lock(path):
        pending = pending_chunks(path)
        map_chunks(
            simulate_chunk, pending, str(path), ctx, client=client, desc=STAGE,
            progress=cfg.cluster.progress,
        )
        used = "lenscat" if ctx.lenscat is not None else "footprint"
        finalize_store(
            path,
            attrs={
                "simulate_populations": json.dumps(
                    {p: {"count": n, "kind": survey.POPULATIONS[p][0],
                         "id_offset": survey.POPULATIONS[p][2]} for p, n in plan.counts}
                ),
                "simulate_anchor_mag_offset": ctx.anchor_dm,
                "simulate_anchor_positions_used": used,
                "simulate_psf_kernel_size": survey.kernel_size(sim, cfg.pixscale),
                "simulate_lists": json.dumps({k: str(v) for k, v in lists.items()}),
                "stamp_orientation": "north up (row index increasing to the north), east left",
                "simulate_ring_truth": (
                    "kind ring: arc holds the unlensed ring, arc_snr/arc_snr_peak/src_mag_r/"
                    "src_gr/src_rz describe the ring; lens truth is NaN"
                ),
            },
        )
    return path


__all__ = [
    "effective_config",
    "make_context",
    "run_simulate",
    "simulate_chunk",
    "write_lists",
]
