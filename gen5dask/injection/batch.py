"""The injection of one batch: host rows and plan rows in, every output variable out (pure).

Brightness. ``uncalibrated``: source r mag = host r mag + ``src_dmag`` (drawn from the laws).
``calibrated``: a target arc S/N (``arc_snr``, or ``arc_snr_peak`` when the target's
``quantity`` says so) is drawn from the spec's target and the amplitude solved
on the host's r-band invvar by the one amplitude policy
(:func:`gen5dask.injection.amplitude.solve_nearest`), then clipped to
``calibrated_dmag_bounds`` (quality ``bound_hit_bright`` / ``bound_hit_faint``). ``arc_snr`` /
``arc_snr_peak`` are measured on the stored float32 arc with the host's r-band invvar, and
``snr_opt`` (:mod:`gen5dask.injection.matched_filter`) on all bands.

Noise: only the photon noise of the injected light is added (the host carries the sky noise),
Poisson counts of ``arc * gain`` electrons keyed by ``(seed, "inject.noise", host, replicate,
mode)``; zero light leaves the host untouched bit for bit (null injections).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gen5dask.injection.amplitude import solve_nearest
from gen5dask.injection.colour import colour_factors, flux_to_mag, mag_to_flux
from gen5dask.injection.ids import ROLE_CONTROL, ROLE_INJECTION, ROLE_NULL
from gen5dask.injection.laws import MODE_CODES, draw_injection_params, noise_keys
from gen5dask.injection.matched_filter import snr_opt
from gen5dask.injection.render import render_unit_arcs
from gen5dask.injection.spec import InjectSpec
from gen5dask.kernels import photometry
from gen5dask.kernels.noise import add_light_into
from gen5dask.store.schema import KINDS, TRUTH_VARS

TRUTH = tuple(name for name, _, _ in TRUTH_VARS)
#: parameters copied from the draws to the truth columns.
COPIED = ("theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y",
          "src_reff", "src_n", "src_q", "src_pa", "src_gr", "src_rz")
#: host variables copied unchanged to every output row.
COPIED_HOST = ("maskbits", "ra", "dec", "brickname", "region", "split", "psfsize", "psfdepth")


def inject_rows(
    host: dict[str, np.ndarray],
    plan: np.ndarray,
    spec: InjectSpec,
    *,
    target_override: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Build output rows for a batch: controls, null injections and injections.

    Parameters
    ----------
    host : dict of str to numpy.ndarray
        Host variables (:data:`gen5dask.injection.plan.HOST_VARS`), one row per plan row.
    plan : numpy.ndarray
        Structured rows of :data:`gen5dask.injection.plan.PLAN_DTYPE`.
    spec : InjectSpec
        The run's typed specification (built once per stage).
    target_override : numpy.ndarray, optional
        Target arc_snr per row (used for calibrated rows instead of the drawn ones; dry runs).

    Returns
    -------
    data : dict
        Every output variable (``sample`` and ``snr_opt`` included; ``arc`` when
        ``spec.store_arc``), ready for ``write_chunk``.
    summary : dict
        Counts: ``n``, per kind, ``bound_hit_bright``, ``bound_hit_faint``, ``unattainable``;
        also ``target_arc_snr`` (float64 per row, NaN if not calibrated).
    """
    bands = list(spec.bands)
    ir = bands.index("r")
    n = plan.shape[0]
    role = plan["role"].astype(np.int64)
    mode = plan["mode"].astype(np.int64)
    host_mag = plan["host_mag_r"].astype(np.float64)

    image = np.array(host["image"], dtype=np.float32, copy=True)
    invvar = np.ascontiguousarray(host["invvar"], dtype=np.float32)
    truth = {name: np.full(n, np.nan, dtype=np.float64) for name in TRUTH}
    quality = np.zeros(n, dtype=np.int64)  # "ok"
    kinds = np.where(
        role == ROLE_CONTROL,
        KINDS.index("control"),
        np.where(role == ROLE_NULL, KINDS.index("null_injection"), KINDS.index("injection")),
    )
    arc_out = np.zeros(image.shape, dtype=np.float32) if spec.store_arc else None
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
    snr_opt_all = np.full(n, np.nan)

    lensed = np.flatnonzero(role != ROLE_CONTROL)
    if lensed.size:
        model = spec.model
        m = mode[lensed]
        reps = plan["replicate"][lensed].astype(np.int64)
        hid = plan["host_id"][lensed]
        par = draw_injection_params(
            model.laws, seed=spec.seed, host_ids=hid, replicates=reps, modes=m,
            target=spec.target,
            n_galaxies=len(model.source) if model.source is not None else None,
        )
        if target_override is not None:
            tov = np.asarray(target_override, dtype=np.float64)[lensed]
            cal = m == MODE_CODES["calibrated"]
            par["target_arc_snr"] = np.where(cal, tov, np.nan)
        unit = colour_factors(bands, par["src_gr"], par["src_rz"])  # r flux = 1 nmgy
        psf = np.asarray(host["psfsize"], dtype=np.float64)[lensed]
        arc_unit, magnification = render_unit_arcs(
            model, par, unit, psf, stamp_size=spec.stamp_size, pixscale=spec.pixscale,
            bands=bands,
        )
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
            # drawn targets keep to their table bin at a jump; overridden ones (dry runs) have
            # no bin
            bounds = spec.target.bin_of(tgt) if target_override is None else None
            s, gap = solve_nearest(arc_unit[cal, ir], iv_r[cal], tgt, bounds,
                                   quantity=spec.target.quantity)
            summary["unattainable"] = int(gap.sum())
            d = flux_to_mag(s) - hm[cal]
            lo, hi = spec.calibrated_dmag_bounds
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
        lit = amp > 0  # null injections render no arc: snr_opt stays NaN
        snr_opt_all[lensed[lit]] = snr_opt(arc[lit], invvar[lensed[lit]])
        # shot noise only (the host already carries the sky noise); pixels without data
        # (invvar 0) get the arc noise-free; zero light leaves the host untouched
        keys = noise_keys(spec.seed, hid, reps, m)
        add_light_into(image, lensed, arc, invvar, keys, poisson=spec.poisson, gain=spec.gain)
        if arc_out is not None:
            arc_out[lensed] = arc
        for name in COPIED:
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
        "snr_opt": snr_opt_all.astype(np.float32),
    }
    for name in COPIED_HOST:
        data[name] = np.asarray(host[name])
    for name in TRUTH:
        data[name] = truth[name].astype(np.float32)
    if arc_out is not None:
        data["arc"] = arc_out
    summary["target_arc_snr"] = target_all
    return data, summary


__all__ = ["COPIED", "COPIED_HOST", "TRUTH", "inject_rows"]
