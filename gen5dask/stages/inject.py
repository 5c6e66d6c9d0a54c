"""``gen5dask inject``: lensed arcs injected into real host cutouts -> ``train.zarr``.

Output rows (one plan, fixed before any task runs):

* per host and brightness mode (``inject.brightness``) and replicate: an injection (label 1,
  kind ``injection``, ``inject_mode`` ``uncalibrated`` / ``calibrated``);
* controls (label 0, kind ``control``): every host once (``controls: paired``), or exactly
  ``floor(n/2)`` hosts chosen at random (``unpaired``; those hosts then get no injection);
* null injections (label 0, kind ``null_injection``, ``inject_mode`` ``null``) for
  ``inject.n_null`` random hosts: a zero-flux source sent through the full code path (render,
  amplitude, noise with its own keys), which must reproduce the host bit for bit.

Sample ids: ``id = host_id * 64 + code`` with ``code`` 0 for the control, 1 for the null
injection and ``2 + 2 * replicate + (mode == calibrated)`` for injections (replicates <= 31,
host ids in ``[0, 2**57)``). Rows are ordered by id, so the output does not depend on task
order, worker count or chunking.

Brightness. ``uncalibrated``: source r mag = host r mag + ``src_dmag`` with ``src_dmag`` drawn
from ``inject.uncalibrated_dmag_range``. ``calibrated``: a target ``arc_snr`` is drawn from the
calibration target (``calibration.json``, else ``calibrate.bins/fractions``) and the source
amplitude solved exactly on the host's r-band invvar
(:func:`gen5dask.kernels.photometry.solve_amplitude_for_arc_snr`), then clipped to
``inject.calibrated_dmag_bounds`` (quality ``bound_hit_bright`` / ``bound_hit_faint``).
``arc_snr`` / ``arc_snr_peak`` are always measured on the noise-free r-band arc actually
injected (the stored float32 arc) with the host's r-band invvar. Targets that fall inside a
jump of arc_snr(amplitude) (common below arc_snr ~ 2) get the nearest attainable value.

Sources (``inject.source_mode``). ``sersic``: an elliptical Sersic. ``real_galaxy``: a
galaxy image from a GalSim RealGalaxy catalogue (``inject.real_galaxy_catalog``), row drawn
keyed per injection (stored as ``src_index``, -1 for Sersic sources and controls),
background-subtracted, thresholded, cropped and unit-normalised
(:func:`gen5dask.injection.sources.prepare_real_galaxy`), rotated by ``src_pa``, ray traced
with :func:`gen5dask.kernels.render.render_lensed_image` (bilinear source, surface brightness
conserved) and convolved with the host PSF like a Sersic (the HST PSF is negligible at DR10
resolution and is not deconvolved). Both modes share the colours (``g = r + src_gr``,
``z = r - src_rz``), the brightness modes and the amplitude solver (a render is linear in the
source flux). ``src_n``, ``src_reff`` and ``src_q`` are NaN for real galaxies. The store config
hash covers the catalogue's content (sha256), so a changed catalogue never resumes a store.

Hosts that cannot be injected (non-positive/NaN ``psfsize``, non-finite image or invvar pixels,
no good r-band pixel, no finite host r magnitude) are never silently dropped: they are listed in
``OUTPUT_DIR/train.quarantine.csv`` (``id, source, reason``) and left out of the plan.

Noise: the host cutout already carries sky noise, so only the photon noise of the injected
light is added (``inject.poisson``, Poisson counts of ``arc * inject.gain`` electrons, keyed by
``(seed, "inject.noise", host id, replicate, mode)``); ``image = host + noisy arc`` where the
noisy arc is non-zero, so zero light leaves the host untouched bit for bit. ``invvar`` is the
host's.

The physics lives in the injection library :mod:`gen5dask.injection` (laws, ids, plan,
rendering, sources, amplitude policy, matched-filter S/N); this stage is its driver. Tasks: one
per output chunk; each reads only its host rows (``read_samples`` with an index array), calls
:func:`gen5dask.injection.batch.inject_rows` with the run's :class:`~gen5dask.injection.spec.
InjectSpec` (built once, here) and writes its chunk. A rerun resumes pending chunks; a store
made with another config is replaced (``force`` always rebuilds).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from gen5dask.executor import map_chunks
from gen5dask.injection.batch import inject_rows
from gen5dask.injection.calibration import read_target, record_achieved
from gen5dask.injection.ids import ID_FORMULA
from gen5dask.injection.laws import Laws, TargetDistribution
from gen5dask.injection.plan import HOST_VARS, host_table, plan_size, write_plan
from gen5dask.injection.spec import InjectSpec
from gen5dask.log import get_logger
from gen5dask.provenance import config_hash
from gen5dask.stages.declare import stage
from gen5dask.store import (
    StoreError,
    chunk_bounds,
    create_store,
    finalize_store,
    fingerprint,
    is_complete,
    pending_chunks,
    read_attrs,
    read_samples,
    store_geometry,
    store_lock,
    store_workdir,
    write_chunk,
)

log = get_logger(__name__)

STAGE = "inject"


def resolve_hosts(cfg) -> Path:
    """Host store of a run: ``inject.hosts``, else ``hosts.zarr`` if present, else the survey."""
    if cfg.inject.hosts:
        path = Path(cfg.inject.hosts)
    elif cfg.layout.hosts.exists():
        path = cfg.layout.hosts
    else:
        path = cfg.layout.survey
    if not path.exists():
        msg = (
            f"inject: host store {path} does not exist; run `gen5dask simulate` (mock survey) or "
            "`gen5dask ingest`, or set inject.hosts"
        )
        raise StoreError(msg)
    return path


def target_distribution(cfg) -> tuple[TargetDistribution, str]:
    """Calibration target: ``calibration.json`` if present, else the config's plan table.

    Returns the distribution and its source (``"plan"``, ``"anchors"``, ``"config"``).
    """
    path = cfg.layout.calibration_json
    if path.exists():
        return read_target(path)
    if cfg.calibrate.target == "anchors":
        msg = (
            f"inject: calibrate.target is 'anchors' but {path} does not exist; "
            "run `gen5dask calibrate` first"
        )
        raise FileNotFoundError(msg)
    return TargetDistribution(cfg.calibrate.bins, cfg.calibrate.fractions), "config"


def _plan_path(out: Path) -> Path:
    return store_workdir(out) / "inject_plan.npy"


def read_host_rows(
    host_path: str, host_rows: np.ndarray, *, dense_slack: int = 256
) -> dict[str, np.ndarray]:
    """Host variables for each entry of ``host_rows`` (rows may repeat; same values as
    ``read_samples`` of those rows).

    The rows of one output chunk are (almost) contiguous in the host store -- the plan is
    ordered by sample id, i.e. by host id -- so a dense range is read as one slice and gathered
    here in one indexing step (zarr's orthogonal selection with an index array costs ~2x the
    slice); a sparse set of rows (span above ``4 * unique rows + dense_slack``) is read by
    index.
    """
    rows, inv = np.unique(host_rows, return_inverse=True)
    if rows.size and rows[-1] - rows[0] + 1 <= 4 * rows.size + dense_slack:
        hv = read_samples(host_path, slice(int(rows[0]), int(rows[-1]) + 1), HOST_VARS)
        take = rows[inv] - rows[0]
    else:
        hv = read_samples(host_path, rows, HOST_VARS)
        take = inv
    return {k: v[take] for k, v in hv.items()}


def inject_chunk(i: int, out_path: str, host_path: str, spec: InjectSpec) -> dict:
    """Dask task: render and write output chunk ``i``."""
    geom = store_geometry(out_path)
    a, b = chunk_bounds(geom["n_samples"], geom["chunk_size"])[i]
    plan = np.array(np.load(_plan_path(Path(out_path)), mmap_mode="r")[a:b])
    host = read_host_rows(host_path, plan["host_row"])
    data, summary = inject_rows(host, plan, spec)
    write_chunk(out_path, i, data)
    summary.pop("target_arc_snr")
    return summary


def quarantine_csv(cfg) -> Path:
    """``OUTPUT_DIR/train.quarantine.csv``."""
    return Path(cfg.output_dir) / "train.quarantine.csv"


def _record_achieved(cfg, out: Path, target, source) -> None:
    """Achieved arc_snr fractions of the finished store into ``calibration.json``."""
    if target is None:
        return
    record_achieved(
        cfg.layout.calibration_json,
        train_path=out,
        laws=Laws.from_config(cfg.inject),
        seed=cfg.seed,
        target=target,
        source=source,
        plot_path=(cfg.layout.calibration_dir / "target_vs_achieved.png"
                   if cfg.calibrate.plot else None),
    )


@stage(
    "inject",
    reads=(
        "inject", "seed", "pixscale", "chunk_size", "calibrate.target", "calibrate.bins",
        "calibrate.fractions", "calibrate.plot",
    ),
    after=("simulate", "calibrate"),
)
def run_inject(cfg, client=None, *, force: bool = False) -> Path:
    """Inject arcs into every host of the host store; write ``train.zarr``.

    Parameters
    ----------
    cfg : gen5dask.config.Config
        Run config (``inject`` section; ``calibrate`` for the fallback target).
    client : distributed.Client, optional
        Dask client; ``None`` runs the same tasks in-process.
    force : bool
        Rebuild the output store from scratch.

    Returns
    -------
    Path
        ``cfg.layout.train``. Also writes ``train.quarantine.csv`` and updates
        ``calibration.json`` with the achieved arc_snr fractions and bound hits.
    """
    icfg = cfg.inject
    out = cfg.layout.train
    progress = bool(cfg.cluster.progress)
    host_path = resolve_hosts(cfg)
    geom = store_geometry(host_path)
    bands, stamp = list(geom["bands"]), int(geom["stamp_size"])
    target, target_source = (None, None)
    if "calibrated" in icfg.modes:
        target, target_source = target_distribution(cfg)
    spec = InjectSpec.from_config(
        icfg, seed=cfg.seed, pixscale=cfg.pixscale, bands=bands, stamp_size=stamp, target=target
    )
    source = spec.model.source
    rg_print = source.fingerprint() if source is not None else None  # fails before any work
    store_cfg = {
        "inject": icfg.model_dump(mode="json"),
        **({"real_galaxy": rg_print} if rg_print else {}),
        "seed": spec.seed,
        "pixscale": spec.pixscale,
        "target": (
            {"bins": list(target.bins), "fractions": list(target.fractions)} if target else None
        ),
        "hosts": {k: v for k, v in fingerprint(host_path).items() if k != "path"},
    }
    if (
        not force
        and is_complete(out)
        and read_attrs(out).get("config_hash") == config_hash(store_cfg)
        and store_geometry(out)["chunk_size"] == cfg.chunk_size
    ):
        _record_achieved(cfg, out, target, target_source)  # calibrate may have rewritten it
        return out  # done, same configuration

    hosts, quarantine = host_table(
        host_path, aperture_pix=icfg.host_mag_aperture_pix, client=client, progress=progress
    )
    n_rows = plan_size(icfg, cfg.seed, hosts)
    variables = ["inject_mode", "quality", "host_mag_r", "src_index", "snr_opt"]
    variables += ["arc"] if icfg.store_arc else []
    if out.exists():
        with store_lock(out):
            pass  # refuse to delete or replace a store another process is writing
        if force:
            shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    create_store(
        out,
        n_samples=n_rows,
        stage=STAGE,
        config=store_cfg,
        seed=cfg.seed,
        bands=bands,
        stamp_size=stamp,
        chunk_size=cfg.chunk_size,
        variables=variables,
        parents=[fingerprint(host_path)],
        attrs={"id_formula": ID_FORMULA},
        overwrite=True,  # a store made with another config is replaced, never an error
    )
    with store_lock(out):
        pp = _plan_path(out)
        tmp = pp.with_name(f".{pp.name}.{os.getpid()}.tmp.npy")
        write_plan(tmp, icfg, cfg.seed, hosts)  # block by block: never the whole plan in memory
        os.replace(tmp, pp)
        pending = pending_chunks(out)
        results = map_chunks(
            inject_chunk,
            pending,
            str(out),
            str(host_path),
            spec,
            client=client,
            desc="inject",
            progress=progress,
        )
        qpath = quarantine_csv(cfg)
        quarantine.to_csv(qpath, index=False)
        counts = {
            k: int(sum(r[k] for r in results))
            for k in ("n_control", "n_null", "n_injection", "bound_hit_bright",
                      "bound_hit_faint", "unattainable")
        }
        finalize_store(
            out,
            attrs={
                "n_hosts": int(len(hosts)),
                "n_quarantined": int(len(quarantine)),
                "calibration_source": target_source or "",
                "inject_modes": list(icfg.modes),
                "counts_this_run": counts,
            },
        )
    if len(quarantine):
        log.info(f"inject: {len(quarantine)} host(s) quarantined, see {quarantine_csv(cfg)}")
    _record_achieved(cfg, out, target, target_source)
    return out


__all__ = [
    "inject_chunk",
    "read_host_rows",
    "quarantine_csv",
    "resolve_hosts",
    "run_inject",
    "target_distribution",
]
