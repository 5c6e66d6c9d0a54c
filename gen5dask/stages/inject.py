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
(:func:`gen5dask.sim.injection_params.prepare_real_galaxy`), rotated by ``src_pa``, ray traced
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

Tasks: one per output chunk; each reads only its host rows (``read_samples`` with an index
array), renders its injections (one renderer call per group of equal PSF-kernel side, see
:func:`_render`), solves all calibrated amplitudes and adds all noise in one call each, and
writes its chunk. A rerun resumes pending chunks; a finished store with a different config is
an error unless ``force``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gen5dask.kernels import photometry
from gen5dask.kernels.rng import keys_for, stage_id
from gen5dask.provenance import config_hash
from gen5dask.sim.injection_params import (
    MODE_CODES,
    TargetDistribution,
    draw_injection_params,
    noise_keys,
    prepare_real_galaxy,
)
from gen5dask.stages._chunks import map_chunks
from gen5dask.store import (
    StoreError,
    chunk_bounds,
    create_store,
    finalize_store,
    fingerprint,
    is_complete,
    pending_chunks,
    read_attrs,
    read_chunk,
    read_samples,
    store_geometry,
    store_lock,
    store_workdir,
    write_chunk,
)
from gen5dask.store.schema import KINDS, TRUTH_VARS

STAGE = "inject"
#: ids per host: ``id = host_id * ID_STRIDE + code``.
ID_STRIDE = 64
CODE_CONTROL = 0
CODE_NULL = 1
ROLE_CONTROL, ROLE_NULL, ROLE_INJECTION = 0, 1, 2
#: host variables copied to every output row.
HOST_VARS = (
    "image",
    "invvar",
    "maskbits",
    "ra",
    "dec",
    "brickname",
    "region",
    "split",
    "psfsize",
    "psfdepth",
)
PLAN_DTYPE = np.dtype(
    [
        ("sample", "i8"),
        ("host_row", "i8"),
        ("host_id", "i8"),
        ("role", "i1"),
        ("mode", "i1"),
        ("replicate", "i2"),
        ("host_mag_r", "f8"),
    ]
)
_TRUTH = tuple(name for name, _, _ in TRUTH_VARS)


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def sample_id(host_id, role, *, mode: int = 0, replicate=0) -> np.ndarray:
    """Output sample id(s): ``host_id * 64 + code`` (see module docstring)."""
    host_id = np.asarray(host_id, dtype=np.int64)
    role = np.asarray(role)
    code = np.where(
        role == ROLE_CONTROL,
        CODE_CONTROL,
        np.where(
            role == ROLE_NULL,
            CODE_NULL,
            2 + 2 * np.asarray(replicate, dtype=np.int64)
            + (np.asarray(mode) == MODE_CODES["calibrated"]),
        ),
    )
    return host_id * ID_STRIDE + code


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
        data = json.loads(path.read_text())
        try:
            return TargetDistribution(data["bins"], data["target_fractions"]), data["source"]
        except (KeyError, ValueError) as exc:
            msg = f"{path}: invalid calibration target ({exc}); rerun `gen5dask calibrate`"
            raise ValueError(msg) from None
    if cfg.calibrate.target == "anchors":
        msg = (
            f"inject: calibrate.target is 'anchors' but {path} does not exist; "
            "run `gen5dask calibrate` first"
        )
        raise FileNotFoundError(msg)
    return TargetDistribution(cfg.calibrate.bins, cfg.calibrate.fractions), "config"


def colour_factors(bands, src_gr: np.ndarray, src_rz: np.ndarray) -> np.ndarray:
    """Flux per band relative to r, ``(n, nband)``: ``g = r + src_gr``, ``z = r - src_rz``."""
    out = np.empty((np.shape(src_gr)[0], len(bands)), dtype=np.float64)
    for j, b in enumerate(bands):
        if b == "r":
            out[:, j] = 1.0
        elif b == "g":
            out[:, j] = 10.0 ** (-0.4 * np.asarray(src_gr))
        elif b == "z":
            out[:, j] = 10.0 ** (0.4 * np.asarray(src_rz))
        else:
            msg = f"inject: no source colour law for band {b!r} (supported: g, r, z)"
            raise ValueError(msg)
    return out


def mag_to_flux(mag) -> np.ndarray:
    """AB magnitude -> nanomaggies (zero point 22.5)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - 22.5))


def flux_to_mag(flux) -> np.ndarray:
    """Nanomaggies -> AB magnitude (``inf`` for 0, ``-inf`` for ``inf``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 22.5 - 2.5 * np.log10(np.asarray(flux, dtype=np.float64))


# ---------------------------------------------------------------------------------------------
# rendering and amplitude solving
# ---------------------------------------------------------------------------------------------


def _render(icfg, spec, par, unit, psf, bands):
    """``render_lensed_sersic`` on groups of equal PSF-kernel side.

    The renderer sizes its PSF kernels and margins by the largest kernel of the batch, which
    changes results at the float-rounding level with the batch's composition; rendering each
    group of equal kernel side separately makes every arc a function of its own inputs only
    (bit-identical for any chunking).
    """
    from gen5dask.kernels.psf import moffat_size
    from gen5dask.kernels.render import render_lensed_sersic

    n = unit.shape[0]
    stamp = int(spec["stamp_size"])
    pixscale = float(spec["pixscale"])
    kside = np.asarray(moffat_size(psf / pixscale, icfg.psf_beta)).reshape(n, -1).max(axis=1)
    arc = np.empty((n, len(bands), stamp, stamp), dtype=np.float32)
    mag = np.empty(n, dtype=np.float64)
    names = ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y",
             "src_reff", "src_n", "src_q", "src_pa")
    for k in np.unique(kside):
        g = np.flatnonzero(kside == k)
        arc[g], mag[g] = render_lensed_sersic(
            stamp_size=stamp,
            pixscale=pixscale,
            **{name: par[name][g] for name in names},
            src_flux_bands=unit[g],
            psf_fwhm_arcsec=psf[g],
            psf_beta=icfg.psf_beta,
            supersample=icfg.supersample,
            bands=bands,
        )
    return arc, mag


def _file_stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return int(st.st_mtime_ns), int(st.st_size)


@functools.lru_cache(maxsize=4)
def _catalog_cached(path: str, image_dir: str | None, stamp: tuple[int, int]):
    from gen5dask.sim.realgalaxy import load_real_galaxy_catalog

    del stamp  # part of the cache key only: a rewritten catalogue is reloaded
    return load_real_galaxy_catalog(path, image_dir)


def real_galaxy_catalog(rg: dict):
    """The RealGalaxy catalogue of a spec's ``real_galaxy`` entry (cached per process).

    Raises
    ------
    ValueError
        If the catalogue is missing, invalid or empty; the message names
        ``inject.real_galaxy_catalog`` and the file.
    """
    path = Path(rg["catalog"])
    if not path.exists():
        msg = f"inject.real_galaxy_catalog: {path} does not exist"
        raise ValueError(msg)
    try:
        cat = _catalog_cached(str(path), rg.get("image_dir"), _file_stamp(path))
    except ValueError as exc:
        msg = f"inject.real_galaxy_catalog: {exc}"
        raise ValueError(msg) from None
    if len(cat) == 0:
        msg = f"inject.real_galaxy_catalog: {path} has no galaxies"
        raise ValueError(msg)
    return cat


@functools.lru_cache(maxsize=64)
def _galaxy_cached(path, image_dir, stamp, index, max_size, threshold):
    cat = _catalog_cached(path, image_dir, stamp)
    try:
        raw, pix = cat.image(index)
    except (ValueError, IndexError) as exc:
        msg = f"inject: real galaxy row {index} of {path}: {exc}"
        raise ValueError(msg) from None
    name = f"{path} row {index} (IDENT {cat.ident[index]}, {cat.gal_filename[index]})"
    img = prepare_real_galaxy(raw, max_size=max_size, threshold_sigma=threshold, name=name)
    img.setflags(write=False)
    return img, float(pix)


def real_galaxy_source(rg: dict, icfg, index: int) -> tuple[np.ndarray, float]:
    """Preprocessed (unit-flux, read-only) image and pixel scale of catalogue row ``index``.

    Cached per process (64 galaxies), keyed by the catalogue file's mtime and size too.
    """
    real_galaxy_catalog(rg)  # existence and validity, with a clear message
    path = Path(rg["catalog"])
    return _galaxy_cached(
        str(path), rg.get("image_dir"), _file_stamp(path), int(index),
        icfg.real_galaxy_max_size, float(icfg.real_galaxy_threshold_sigma),
    )


def _render_real(icfg, spec, par, unit, psf, bands):
    """``render_lensed_image`` on groups of equal PSF-kernel side and source-image shape.

    Besides the kernel side (see :func:`_render`), the renderer's magnification grid depends
    on the shape of the source stack, so each group also shares one image shape; every arc is
    then a function of its own inputs only (bit-identical for any chunking).
    """
    from gen5dask.kernels.psf import moffat_size
    from gen5dask.kernels.render import render_lensed_image

    rg = spec["real_galaxy"]
    n = unit.shape[0]
    stamp = int(spec["stamp_size"])
    pixscale = float(spec["pixscale"])
    kside = np.asarray(moffat_size(psf / pixscale, icfg.psf_beta)).reshape(n, -1).max(axis=1)
    srcs = [real_galaxy_source(rg, icfg, int(k)) for k in par["src_index"]]
    shape = np.array([s[0].shape for s in srcs], dtype=np.int64).reshape(n, 2)
    spix = np.array([s[1] for s in srcs], dtype=np.float64)
    keys = np.column_stack([kside, shape])
    arc = np.empty((n, len(bands), stamp, stamp), dtype=np.float32)
    mag = np.empty(n, dtype=np.float64)
    names = ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y", "src_pa")
    for key in np.unique(keys, axis=0):
        g = np.flatnonzero(np.all(keys == key, axis=1))
        arc[g], mag[g] = render_lensed_image(
            stamp_size=stamp,
            pixscale=pixscale,
            **{name: par[name][g] for name in names},
            src_image=np.stack([srcs[i][0] for i in g]),
            src_pixscale=spix[g],
            src_flux_bands=unit[g],
            psf_fwhm_arcsec=psf[g],
            psf_beta=icfg.psf_beta,
            supersample=icfg.supersample,
            bands=bands,
        )
    return arc, mag


def _solve_nearest(arc_unit_r, invvar_r, target):
    """Amplitude whose arc_snr is the target, or the nearest attainable value.

    ``arc_snr(s)`` jumps where pixels enter ``A = {a >= sigma}`` (see
    :mod:`gen5dask.kernels.photometry`), so some targets -- common below arc_snr ~ 2 -- are
    attained by no amplitude. The exact solver returns the smallest ``s`` with
    ``arc_snr >= target`` (the top of the jump); here the value just below the jump is used
    instead when it is closer to the target and positive.

    Returns
    -------
    s : numpy.ndarray
        float64 amplitudes (``inf`` where unreachable: no good pixel under the arc).
    gap : numpy.ndarray
        bool, True where the target is not attainable.
    """
    s = photometry.solve_amplitude_for_arc_snr(arc_unit_r, invvar_r, target)
    u = np.asarray(arc_unit_r, dtype=np.float64)
    fin = np.isfinite(s) & (s > 0)
    f_hi = np.zeros(s.shape)
    f_hi[fin] = photometry.arc_snr(u[fin] * s[fin, None, None], invvar_r[fin]).arc_snr
    gap = fin & (f_hi > target * (1.0 + 1e-9))
    if gap.any():
        s_lo = s[gap] * (1.0 - 1e-6)  # margin >> float32 rounding of the arc
        f_lo = photometry.arc_snr(u[gap] * s_lo[:, None, None], invvar_r[gap]).arc_snr
        use = (f_lo > 0) & (target[gap] - f_lo < f_hi[gap] - target[gap])
        rows = np.flatnonzero(gap)
        s[rows[use]] = s_lo[use]
        # top of the jump: pixels sit exactly at a >= sigma; a 1e-6 margin keeps them there
        # after the arc is rounded to float32
        s[rows[~use]] *= 1.0 + 1e-6
    return s, gap


# ---------------------------------------------------------------------------------------------
# the injection of one batch (pure: arrays in, arrays out)
# ---------------------------------------------------------------------------------------------


def inject_rows(
    host: dict[str, np.ndarray],
    plan: np.ndarray,
    spec: dict[str, Any],
    *,
    target_override: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Build output rows for a batch: controls, null injections and injections.

    Parameters
    ----------
    host : dict of str to numpy.ndarray
        Host variables (:data:`HOST_VARS`), one row per plan row (already gathered).
    plan : numpy.ndarray
        Structured rows of :data:`PLAN_DTYPE`.
    spec : dict
        ``inject`` (InjectConfig dump), ``seed``, ``pixscale``, ``bands``, ``stamp_size``,
        ``target`` (``{"bins", "fractions"}`` or None).
    target_override : numpy.ndarray, optional
        Target arc_snr per row (used for calibrated rows instead of the drawn ones; dry runs).

    Returns
    -------
    data : dict
        Every output variable (``sample`` included), ready for ``write_chunk``.
    summary : dict
        Counts: ``n``, per kind, ``bound_hit_bright``, ``bound_hit_faint``, ``unattainable``
        (calibrated targets inside a jump of arc_snr(amplitude), given the nearest attainable
        arc_snr, see :func:`_solve_nearest`); also ``target_arc_snr`` (float64 per row, NaN if
        not calibrated).
    """
    from gen5dask.config.inject import InjectConfig
    from gen5dask.kernels.noise import add_noise

    icfg = InjectConfig.model_validate(spec["inject"])
    bands = list(spec["bands"])
    ir = bands.index("r")
    n = plan.shape[0]
    role = plan["role"].astype(np.int64)
    mode = plan["mode"].astype(np.int64)
    host_mag = plan["host_mag_r"].astype(np.float64)

    image = np.array(host["image"], dtype=np.float32, copy=True)
    invvar = np.asarray(host["invvar"], dtype=np.float32)
    truth = {name: np.full(n, np.nan, dtype=np.float64) for name in _TRUTH}
    quality = np.zeros(n, dtype=np.int64)  # "ok"
    kinds = np.where(
        role == ROLE_CONTROL,
        KINDS.index("control"),
        np.where(role == ROLE_NULL, KINDS.index("null_injection"), KINDS.index("injection")),
    )
    arc_out = np.zeros(image.shape, dtype=np.float32) if icfg.store_arc else None
    summary: dict[str, Any] = {
        "n": int(n),
        "n_control": int((role == ROLE_CONTROL).sum()),
        "n_null": int((role == ROLE_NULL).sum()),
        "n_injection": int((role == ROLE_INJECTION).sum()),
        "bound_hit_bright": 0,
        "bound_hit_faint": 0,
        "unattainable": 0,
    }
    target_all = np.full(n, np.nan)
    src_index = np.full(n, -1, dtype=np.int64)

    lensed = np.flatnonzero(role != ROLE_CONTROL)
    if lensed.size:
        target = spec.get("target")
        tdist = TargetDistribution(target["bins"], target["fractions"]) if target else None
        m = mode[lensed]
        reps = plan["replicate"][lensed].astype(np.int64)
        hid = plan["host_id"][lensed]
        real = icfg.source_mode == "real_galaxy"
        if real and not spec.get("real_galaxy"):
            msg = "inject_rows: source_mode real_galaxy needs spec['real_galaxy'] (see _spec)"
            raise ValueError(msg)
        par = draw_injection_params(
            icfg, seed=spec["seed"], host_ids=hid, replicates=reps, modes=m, target=tdist,
            n_galaxies=len(real_galaxy_catalog(spec["real_galaxy"])) if real else None,
        )
        if target_override is not None:
            tov = np.asarray(target_override, dtype=np.float64)[lensed]
            cal = m == MODE_CODES["calibrated"]
            par["target_arc_snr"] = np.where(cal, tov, np.nan)
        unit = colour_factors(bands, par["src_gr"], par["src_rz"])  # r flux = 1 nmgy
        psf = np.asarray(host["psfsize"], dtype=np.float64)[lensed]
        render = _render_real if real else _render
        arc_unit, magnification = render(icfg, spec, par, unit, psf, bands)
        iv_r = invvar[lensed, ir]
        hm = host_mag[lensed]
        amp = np.zeros(lensed.size)  # r-band source flux, nanomaggies
        dmag = np.full(lensed.size, np.nan)
        qual = np.zeros(lensed.size, dtype=np.int64)
        unc = m == MODE_CODES["uncalibrated"]
        dmag[unc] = par["src_dmag"][unc]
        amp[unc] = mag_to_flux(hm[unc] + dmag[unc])
        cal = np.flatnonzero(m == MODE_CODES["calibrated"])
        if cal.size:
            tgt = par["target_arc_snr"][cal]
            s, gap = _solve_nearest(arc_unit[cal, ir], iv_r[cal], tgt)
            summary["unattainable"] = int(gap.sum())
            d = flux_to_mag(s) - hm[cal]
            lo, hi = icfg.calibrated_dmag_bounds
            bright = ~(d >= lo)  # includes -inf (unreachable target)
            faint = d > hi
            d = np.where(bright, lo, np.where(faint, hi, d))
            s = np.where(bright | faint, mag_to_flux(hm[cal] + d), s)
            amp[cal], dmag[cal] = s, d
            qual[cal[bright]] = 2  # bound_hit_bright
            qual[cal[faint]] = 1  # bound_hit_faint
            summary["bound_hit_bright"] = int(bright.sum())
            summary["bound_hit_faint"] = int(faint.sum())
        # the noise-free arc actually injected (float32) and its measured arc_snr
        arc = (arc_unit * amp[:, None, None, None]).astype(np.float32)
        snr = photometry.arc_snr(arc[:, ir], iv_r)
        if icfg.poisson:
            # shot noise only (the host already carries the sky noise); pixels without data
            # (invvar 0) get the arc noise-free
            keys = noise_keys(spec["seed"], hid, reps, m)
            noisy = add_noise(arc, invvar[lensed], keys, poisson=True, gain=icfg.gain, sky=False)
        else:
            noisy = arc
        sub = image[lensed]
        np.add(sub, noisy, out=sub, where=noisy != 0)  # zero light leaves the host untouched
        image[lensed] = sub
        if arc_out is not None:
            arc_out[lensed] = arc
        for name in (
            "theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y",
            "src_reff", "src_n", "src_q", "src_pa", "src_gr", "src_rz",
        ):
            truth[name][lensed] = par[name]
        truth["src_dmag"][lensed] = dmag
        with np.errstate(invalid="ignore"):
            truth["src_mag_r"][lensed] = np.where(amp > 0, hm + dmag, np.nan)
        truth["magnification"][lensed] = magnification
        truth["arc_snr"][lensed] = snr.arc_snr
        truth["arc_snr_peak"][lensed] = snr.arc_snr_peak
        quality[lensed] = qual
        target_all[lensed] = par["target_arc_snr"]
        src_index[lensed] = par["src_index"]

    data: dict[str, np.ndarray] = {
        "sample": plan["sample"].astype(np.int64),
        "image": image,
        "invvar": invvar,
        "label": (role == ROLE_INJECTION).astype(np.int8),
        "kind": kinds.astype(np.int8),
        "host_sample": plan["host_id"].astype(np.int64),
        "inject_mode": np.where(role == ROLE_NULL, MODE_CODES["null"], mode).astype(np.int8),
        "quality": quality.astype(np.int8),
        "host_mag_r": host_mag.astype(np.float32),
        "src_index": src_index,
    }
    for name in ("maskbits", "ra", "dec", "brickname", "region", "split", "psfsize", "psfdepth"):
        data[name] = np.asarray(host[name])
    for name in _TRUTH:
        data[name] = truth[name].astype(np.float32)
    if arc_out is not None:
        data["arc"] = arc_out
    summary["target_arc_snr"] = target_all
    return data, summary


# ---------------------------------------------------------------------------------------------
# host scan and plan
# ---------------------------------------------------------------------------------------------


def _scan_host_chunk(i: int, host_path: str, r_index: int, aperture: float) -> dict:
    """Per host row of chunk ``i``: finite image/invvar, any good r pixel, measured r mag."""
    d = read_chunk(host_path, i, ["image", "invvar"])
    img, iv = d["image"], d["invvar"]
    n = img.shape[0]
    finite = np.isfinite(img).reshape(n, -1).all(1)
    iv_ok = (np.isfinite(iv) & (iv >= 0)).reshape(n, -1).all(1)
    good_r = (iv[:, r_index] > 0).reshape(n, -1).any(1)
    rimg = np.where(np.isfinite(img[:, r_index]), img[:, r_index], np.nan)
    cb = photometry.core_brightness(rimg, radius_pix=aperture, annulus=(aperture, aperture + 8))
    return {"finite": finite, "invvar_ok": iv_ok, "good_r": good_r, "flux": cb.excess_sum}


def _rank_select(seed: int, stage: str, ids: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` ids with the smallest keyed hash (deterministic subset)."""
    if k <= 0 or ids.size == 0:
        return np.zeros(ids.size, dtype=bool)
    h = keys_for(int(seed), stage_id(stage), np.ascontiguousarray(ids, dtype=np.int64), 0, 0)
    order = np.lexsort((ids, h))
    out = np.zeros(ids.size, dtype=bool)
    out[order[: min(k, ids.size)]] = True
    return out


def host_table(
    cfg,
    host_path: Path,
    *,
    client=None,
    progress: bool = False,
    max_hosts: int | None = None,
):
    """Hosts of a store with their r magnitude and the quarantine list.

    ``max_hosts`` limits the scan to the first that many host rows (dry runs).

    Returns
    -------
    hosts : pandas.DataFrame
        ``row`` (index in the host store), ``id``, ``host_mag_r`` (AB) of injectable hosts.
    quarantine : pandas.DataFrame
        ``id, source, reason`` of hosts that cannot be injected.
    """
    geom = store_geometry(host_path)
    bands = list(geom["bands"])
    if "r" not in bands:
        msg = f"inject: host store {host_path} has bands {bands}; arc_snr needs the r band"
        raise StoreError(msg)
    colour_factors(bands, np.zeros(1), np.zeros(1))  # unsupported bands fail early
    ir = bands.index("r")
    n = geom["n_samples"]
    names = ["sample", "kind", "psfsize"]
    has_mag = "host_mag_r" in geom["variables"]
    if has_mag:
        names.append("host_mag_r")
    tab = read_samples(host_path, slice(0, n), names)
    rows = np.flatnonzero(tab["kind"] == KINDS.index("host"))
    if max_hosts is not None:
        rows = rows[:max_hosts]
    ids = tab["sample"][rows]
    if ids.size and (ids.min() < 0 or ids.max() >= 2**57):
        msg = f"inject: host ids must lie in [0, 2**57) for the id formula; got {ids.min()}.."
        raise StoreError(msg)
    cs = geom["chunk_size"]
    chunks = sorted({int(r // cs) for r in rows})
    scans = map_chunks(
        _scan_host_chunk,
        chunks,
        str(host_path),
        ir,
        float(cfg.inject.host_mag_aperture_pix),
        client=client,
        desc="inject: scan hosts",
        progress=progress,
    )
    full = {
        "finite": np.zeros(n, bool),
        "invvar_ok": np.zeros(n, bool),
        "good_r": np.zeros(n, bool),
        "flux": np.full(n, np.nan),
    }
    for c, res in zip(chunks, scans, strict=True):
        a, b = c * cs, min((c + 1) * cs, n)
        for k, arr in full.items():
            arr[a:b] = res[k]
    psf = tab["psfsize"][rows].astype(np.float64)
    if has_mag:
        mag = tab["host_mag_r"][rows].astype(np.float64)
        measured = ~np.isfinite(mag)
        mag = np.where(measured, flux_to_mag(full["flux"][rows]), mag)
    else:
        mag = flux_to_mag(full["flux"][rows])
    reasons = np.full(rows.size, "", dtype=object)
    for j in range(len(bands) - 1, -1, -1):
        bad = ~(np.isfinite(psf[:, j]) & (psf[:, j] > 0))
        reasons[bad] = f"invalid psfsize_{bands[j]} (non-positive or NaN)"
    checks = (
        (~np.isfinite(mag), "no finite host r magnitude (catalogue NaN and aperture flux <= 0)"),
        (~full["good_r"][rows], "no good r-band pixel"),
        (~full["invvar_ok"][rows], "non-finite or negative invvar"),
        (~full["finite"][rows], "non-finite image pixels"),
    )
    for bad, why in checks:
        reasons[(reasons == "") & bad] = why
    ok = reasons == ""
    hosts = pd.DataFrame({"row": rows[ok], "id": ids[ok], "host_mag_r": mag[ok]})
    quarantine = pd.DataFrame(
        {"id": ids[~ok], "source": str(host_path), "reason": reasons[~ok].astype(str)}
    )
    return hosts, quarantine


def build_plan(icfg, seed: int, hosts: pd.DataFrame) -> np.ndarray:
    """Every output row (:data:`PLAN_DTYPE`), sorted by sample id."""
    ids = hosts["id"].to_numpy(np.int64)
    nh = ids.size
    if icfg.controls == "paired":
        is_control = np.ones(nh, dtype=bool)
        gets_inj = np.ones(nh, dtype=bool)
    else:
        is_control = _rank_select(seed, "inject.controls", ids, nh // 2)
        gets_inj = ~is_control
    is_null = _rank_select(seed, "inject.null", ids, icfg.n_null)
    parts = []

    def add(mask, role, mode, rep):
        sel = np.flatnonzero(mask)
        p = np.zeros(sel.size, dtype=PLAN_DTYPE)
        p["host_row"] = hosts["row"].to_numpy()[sel]
        p["host_id"] = ids[sel]
        p["role"] = role
        p["mode"] = mode
        p["replicate"] = rep
        p["host_mag_r"] = hosts["host_mag_r"].to_numpy()[sel]
        p["sample"] = sample_id(ids[sel], role, mode=mode, replicate=rep)
        parts.append(p)

    add(is_control, ROLE_CONTROL, 0, 0)
    add(is_null, ROLE_NULL, MODE_CODES["null"], 0)
    for mname in icfg.modes:
        for r in range(icfg.replicates):
            add(gets_inj, ROLE_INJECTION, MODE_CODES[mname], r)
    plan = np.concatenate(parts) if parts else np.zeros(0, dtype=PLAN_DTYPE)
    plan = plan[np.argsort(plan["sample"], kind="stable")]
    if np.unique(plan["sample"]).size != plan.size:
        msg = "inject: duplicate output sample ids (duplicate host ids in the host store?)"
        raise StoreError(msg)
    return plan


# ---------------------------------------------------------------------------------------------
# tasks and the stage
# ---------------------------------------------------------------------------------------------


def _plan_path(out: Path) -> Path:
    return store_workdir(out) / "inject_plan.npy"


def _inject_chunk(i: int, out_path: str, host_path: str, spec: dict) -> dict:
    """Dask task: render and write output chunk ``i``."""
    geom = store_geometry(out_path)
    a, b = chunk_bounds(geom["n_samples"], geom["chunk_size"])[i]
    plan = np.array(np.load(_plan_path(Path(out_path)), mmap_mode="r")[a:b])
    rows, inv = np.unique(plan["host_row"], return_inverse=True)
    hv = read_samples(host_path, rows, HOST_VARS)
    host = {k: v[inv] for k, v in hv.items()}
    data, summary = inject_rows(host, plan, spec)
    if "arc" not in geom["variables"]:
        data.pop("arc", None)
    write_chunk(out_path, i, data)
    summary.pop("target_arc_snr")
    return summary


def _spec(cfg, bands, stamp_size, target: TargetDistribution | None) -> dict:
    rg = None
    if cfg.inject.source_mode == "real_galaxy":
        # resolved here so that worker processes find the files whatever their cwd
        idir = cfg.inject.real_galaxy_image_dir
        rg = {
            "catalog": str(Path(cfg.inject.real_galaxy_catalog).resolve()),
            "image_dir": None if idir is None else str(Path(idir).resolve()),
        }
    return {
        "real_galaxy": rg,
        "inject": cfg.inject.model_dump(mode="json"),
        "seed": int(cfg.seed),
        "pixscale": float(cfg.pixscale),
        "bands": list(bands),
        "stamp_size": int(stamp_size),
        "target": (
            {"bins": list(target.bins), "fractions": list(target.fractions)} if target else None
        ),
    }


def quarantine_csv(cfg) -> Path:
    """``OUTPUT_DIR/train.quarantine.csv``."""
    return Path(cfg.output_dir) / "train.quarantine.csv"


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
    spec = _spec(cfg, bands, stamp, target)
    rg_print = None
    if spec["real_galaxy"] is not None:
        cat = real_galaxy_catalog(spec["real_galaxy"])  # fail before any work
        rg_print = {
            "n_galaxies": len(cat),
            "catalog_sha256": hashlib.sha256(Path(cat.path).read_bytes()).hexdigest(),
        }
    store_cfg = {
        "inject": spec["inject"],
        **({"real_galaxy": rg_print} if rg_print else {}),
        "seed": spec["seed"],
        "pixscale": spec["pixscale"],
        "target": spec["target"],
        "hosts": {k: v for k, v in fingerprint(host_path).items() if k != "path"},
    }
    if (
        not force
        and is_complete(out)
        and read_attrs(out).get("config_hash") == config_hash(store_cfg)
        and store_geometry(out)["chunk_size"] == cfg.chunk_size
    ):
        return out  # done, same configuration

    hosts, quarantine = host_table(cfg, host_path, client=client, progress=progress)
    plan = build_plan(icfg, cfg.seed, hosts)
    variables = ["inject_mode", "quality", "host_mag_r", "src_index"]
    variables += ["arc"] if icfg.store_arc else []
    if force and out.exists():
        with store_lock(out):
            shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    create_store(
        out,
        n_samples=plan.size,
        stage=STAGE,
        config=store_cfg,
        seed=cfg.seed,
        bands=bands,
        stamp_size=stamp,
        chunk_size=cfg.chunk_size,
        variables=variables,
        parents=[fingerprint(host_path)],
        attrs={"id_formula": "host_id * 64 + code (0 control, 1 null, 2 + 2 rep + calibrated)"},
    )
    with store_lock(out):
        pp = _plan_path(out)
        tmp = pp.with_name(f".{pp.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, plan)
        os.replace(tmp, pp)
        pending = pending_chunks(out)
        results = map_chunks(
            _inject_chunk,
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
        print(
            f"inject: {len(quarantine)} host(s) quarantined, see {quarantine_csv(cfg)}",
            file=sys.stderr,
        )
    if target is not None:
        from gen5dask.stages.calibrate import record_achieved

        record_achieved(cfg, target=target, source=target_source)
    return out


__all__ = [
    "HOST_VARS",
    "ID_STRIDE",
    "PLAN_DTYPE",
    "build_plan",
    "host_table",
    "inject_rows",
    "quarantine_csv",
    "real_galaxy_catalog",
    "real_galaxy_source",
    "resolve_hosts",
    "run_inject",
    "sample_id",
    "target_distribution",
]
