"""Benchmark the injection kernels on one core against numpy and lenstronomy references.

Usage::

    python scripts/bench_kernels.py --json bench.json [--n 128] [--n-lenstronomy 6]

Times (warm, after JIT) per 64x64 grz stamp of SIE + shear + Sersic + Moffat systems:
``render_lensed_sersic``; the numpy reference (uniform 3x3 supersampling); lenstronomy
``ImageModel`` with the same Moffat pixel kernel (``PSF('PIXEL')``), built per band as a
pipeline must (the PSF differs per sample and band), swept over its supersampling factor
(``--lenstronomy-supersampling``, default 3 5 7 9 11 15 21), with its ``image()`` call alone
timed separately. Flux errors (``flux_error_max``: the largest ``|sum(image)/sum(ref) - 1|``
over the checked stamps and the three bands) of ours and of every lenstronomy setting are
measured on the same stamps against one 60x60-supersampled numpy reference
(``--reference-supersampling``; uniform midpoint sampling converges irregularly on the Sersic
cusps, the 21x21 one of earlier rounds is off by up to 0.2 %), whose own convergence is
reported against a 44x44 one (``reference_self_flux_diff_max``): flux errors below it are not
resolved.

Headline ``speedup_vs_lenstronomy`` is at equal accuracy: lenstronomy's time at the cheapest
swept supersampling whose flux error is <= ours, over our time; if no swept setting reaches
our accuracy, it is the ratio against the most accurate setting and ``speedup_is_lower_bound``
is true. ``speedup_vs_lenstronomy_ss3`` keeps the fixed supersampling-3 ratio of earlier
rounds (not at equal accuracy); ``ours_at_lenstronomy_ss3_accuracy`` is the reverse
comparison (our cheapest ``tol_scale`` from ``--tol-scales`` at least as accurate as
lenstronomy's supersampling 3; the renderer's default stays ``tol_scale`` 1). The centre-mask
throughput uses ``gen5dask.kernels.masking.center_mask`` when importable. CPU time
(``process_time``) is the headline number because the machine may be shared; wall time is
reported too."""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from gen5dask.kernels.render import (  # noqa: E402
    WORK_COUNTERS,
    reference_render_lensed_sersic,
    render_lensed_sersic,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the helper next to us
from equal_accuracy import cheapest_at_accuracy, equal_accuracy_speedup  # noqa: E402

PIX = 0.262


def random_systems(n: int, seed: int, stamp: int = 64) -> dict:
    """Random SIE + shear + Sersic + Moffat grz systems (DR10-like)."""
    rng = np.random.default_rng(seed)
    r_mag = rng.uniform(20.0, 23.0, n)
    flux_r = 10 ** (-0.4 * (r_mag - 22.5))
    gr, rz = rng.uniform(0.2, 1.0, n), rng.uniform(0.1, 0.6, n)
    flux = np.column_stack([flux_r * 10 ** (-0.4 * gr), flux_r, flux_r * 10 ** (0.4 * rz)])
    return dict(
        stamp_size=stamp, pixscale=PIX,
        theta_e=rng.uniform(0.8, 2.5, n), lens_q=rng.uniform(0.3, 1.0, n),
        lens_pa=rng.uniform(0, np.pi, n), shear_g1=rng.normal(0, 0.05, n),
        shear_g2=rng.normal(0, 0.05, n), src_x=rng.uniform(-0.5, 0.5, n),
        src_y=rng.uniform(-0.5, 0.5, n), src_reff=rng.uniform(0.05, 0.6, n),
        src_n=rng.uniform(0.5, 4.0, n), src_q=rng.uniform(0.4, 1.0, n),
        src_pa=rng.uniform(0, np.pi, n), src_flux_bands=flux,
        psf_fwhm_arcsec=rng.uniform(1.0, 1.6, (n, 3)),
    )


def subset(d: dict, idx) -> dict:
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def timed(fn, *args, repeat=1, **kwargs):
    best_cpu, best_wall, out = np.inf, np.inf, None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn(*args, **kwargs)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return out, best_cpu, best_wall


def lenstronomy_render(d: dict, i: int, supersampling: int = 3):
    """One grz stamp with lenstronomy; returns (image, seconds for image() calls only)."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    from gen5dask.kernels.profiles import sersic_amplitude_for_flux
    from gen5dask.kernels.psf import moffat_kernel

    h = d["stamp_size"]
    c = h // 2
    data = ImageData(image_data=np.zeros((h, h)), transform_pix2angle=np.eye(2) * PIX,
                     ra_at_xy_0=-c * PIX, dec_at_xy_0=-c * PIX)
    e1, e2 = phi_q2_ellipticity(d["lens_pa"][i], d["lens_q"][i])
    s1, s2 = phi_q2_ellipticity(d["src_pa"][i], d["src_q"][i])
    kw_lens = [dict(theta_E=d["theta_e"][i], e1=e1, e2=e2, center_x=0.0, center_y=0.0),
               dict(gamma1=d["shear_g1"][i], gamma2=d["shear_g2"][i])]
    out, t_img = [], 0.0
    for b in range(3):
        amp = sersic_amplitude_for_flux(d["src_flux_bands"][i, b], d["src_reff"][i],
                                        d["src_n"][i])
        model = ImageModel(
            data, PSF(psf_type="PIXEL",
                      kernel_point_source=moffat_kernel(d["psf_fwhm_arcsec"][i, b] / PIX)),
            lens_model_class=LensModel(["SIE", "SHEAR"]),
            source_model_class=LightModel(["SERSIC_ELLIPSE"]),
            kwargs_numerics={"supersampling_factor": supersampling},
        )
        kw_src = [dict(amp=amp, R_sersic=d["src_reff"][i], n_sersic=d["src_n"][i], e1=s1,
                       e2=s2, center_x=d["src_x"][i], center_y=d["src_y"][i])]
        c0 = time.process_time()
        out.append(model.image(kwargs_lens=kw_lens, kwargs_source=kw_src))
        t_img += time.process_time() - c0
    return np.array(out), t_img


def profile_render(d: dict, repeat: int = 3) -> dict:
    """CPU ms per stamp of the renderer's phases, rebuilt from the public kernel functions.

    ``setup``: validation, lens constants, Sersic parameters, Moffat kernels (per chunk);
    ``cubature``: the numba ray tracing + source integration (:func:`cubature.render_chunk`);
    ``psf``: the FFT convolution of the three bands (:func:`psfstack.convolve_to_stamps`).
    """
    from gen5dask.kernels.cubature import (
        CUSP_FLUX_FLOOR,
        GL_NODES,
        GL_WEIGHTS,
        SERSIC_TOLS,
        render_chunk,
    )
    from gen5dask.kernels.psfstack import convolve_to_stamps, psf_kernel_stack
    from gen5dask.kernels.raytrace import lens_tuples
    from gen5dask.kernels.render import SERSIC_LOST_FRACTION, grid_half_size
    from gen5dask.kernels.sources import KIND_SERSIC, P_RTRUNC, sersic_params

    n, h = d["theta_e"].size, d["stamp_size"]

    def setup():
        lens, amax, gamma = lens_tuples(d["theta_e"], d["lens_q"], d["lens_pa"],
                                        d["shear_g1"], d["shear_g2"])
        sp, funit = sersic_params(d["src_x"], d["src_y"], d["src_reff"], d["src_n"],
                                  d["src_q"], d["src_pa"], lost_fraction=SERSIC_LOST_FRACTION)
        ker = psf_kernel_stack(d["psf_fwhm_arcsec"], n, 3, PIX, 3.5, None, None)
        m = ker.shape[-1] // 2
        ext = (np.hypot(d["src_x"], d["src_y"]) + sp[:, P_RTRUNC] / np.sqrt(d["src_q"])
               + amax) / (1 - gamma)
        return lens, sp, funit, ker, m, grid_half_size(ext, h, PIX, m, 3.0, 8.0)

    (lens, sp, funit, ker, m, half), t_setup, _ = timed(setup, repeat=repeat)
    region = np.zeros((n, h + 2 * m, h + 2 * m))

    def cub():
        region[:] = 0.0
        render_chunk(lens, KIND_SERSIC, sp, np.zeros((1, 1, 1)), np.zeros(n, np.int64), PIX,
                     half, -(h // 2) - m, region, GL_NODES, GL_WEIGHTS, SERSIC_TOLS, 3, 12,
                     CUSP_FLUX_FLOOR, np.zeros(n), np.zeros(6, np.int64))

    _, t_cub, _ = timed(cub, repeat=repeat)
    amps = d["src_flux_bands"] / funit[:, None]
    _, t_psf, _ = timed(convolve_to_stamps, region, ker, amps, h, repeat=repeat)
    out = {"setup_ms": t_setup / n * 1e3, "cubature_ms": t_cub / n * 1e3,
           "psf_ms": t_psf / n * 1e3, "psf_kernel_side": int(ker.shape[-1]),
           "region_side": int(region.shape[-1])}

    # cubature variants: what the magnification-only blocks and the cusp refinement cost
    def cub_variant(grid_half, floor):
        def go():
            region[:] = 0.0
            render_chunk(lens, KIND_SERSIC, sp, np.zeros((1, 1, 1)), np.zeros(n, np.int64),
                         PIX, grid_half, -(h // 2) - m, region, GL_NODES, GL_WEIGHTS,
                         SERSIC_TOLS, 3, 12, floor, np.zeros(n), np.zeros(6, np.int64))
        return timed(go, repeat=repeat)[1] / n * 1e3

    stamp_half = np.full(n, h // 2 + m, dtype=np.int64)
    out["cubature_stamp_grid_only_ms"] = cub_variant(stamp_half, CUSP_FLUX_FLOOR)
    out["cubature_no_cusp_refinement_ms"] = cub_variant(half, 1.0)
    cub()  # the default region again, for the PSF steps
    out["psf_steps_ms"] = psf_steps(region, ker, amps, h, m, repeat)
    return out


def psf_steps(region, ker, amps, h: int, r: int, repeat: int) -> dict:
    """CPU ms per stamp of each step of ``psf.convolve_bands`` (Moffat path, float32),
    repeated here step by step with the same calls and FFT lengths."""
    import scipy.fft

    n = region.shape[0]
    py = region.shape[-1]
    nx = scipy.fft.next_fast_len(py, real=True)
    while nx % 2:  # the even length convolve_bands uses
        nx = scipy.fft.next_fast_len(nx + 1, real=True)
    ny = nx
    am = np.asarray(amps, dtype=np.float64)[:, :, None, None]
    res = {}

    def step(name, fn):
        val, cpu, _ = timed(fn, repeat=repeat)
        res[name] = cpu / n * 1e3
        return val

    fa = step("rfft_rows", lambda: scipy.fft.rfft(region.astype(np.float32), n=nx, axis=-1))
    fa = step("fft_columns", lambda: scipy.fft.fft(fa, n=ny, axis=-2))

    def kernel_spectra():
        quad = np.asarray(ker[..., r:, r:] * am, dtype=np.float32)
        kq = scipy.fft.dct(quad, type=1, n=nx // 2 + 1, axis=-1)
        kq = scipy.fft.dct(kq, type=1, n=ny // 2 + 1, axis=-2)
        return np.concatenate([kq, kq[..., ny // 2 - 1: 0: -1, :]], axis=-2)

    fk = step("kernel_spectra", kernel_spectra)
    fk = step("multiply", lambda: fk * fa[:, None])
    g = step("ifft_columns", lambda: scipy.fft.ifft(fk, axis=-2)[..., r: r + h, :])
    step("irfft_rows", lambda: scipy.fft.irfft(g, n=nx, axis=-1))
    res["fft_length"] = int(nx)
    return res


def bench_mask(n: int = 256):
    try:
        from gen5dask.kernels.masking import center_mask
    except ImportError as exc:  # masking is another engineer's module
        return None, f"center_mask not importable: {exc}"
    rng = np.random.default_rng(1)
    imgs = rng.normal(size=(n, 3, 64, 64)).astype(np.float32)
    radius = rng.uniform(3, 7, n)
    keys = np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(1)
    out = np.empty_like(imgs)
    center_mask(imgs[:2], radius[:2], keys[:2], out=out[:2])  # JIT warm-up
    _, cpu, wall = timed(center_mask, imgs, radius, keys, out=out, repeat=5)
    return imgs.nbytes / cpu / 1e9, f"{n}x3x64x64 float32, best of 5 (wall {wall * 1e3:.1f} ms)"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=str, default=None, help="write results to this JSON file")
    ap.add_argument("--n", type=int, default=128, help="stamps timed for render_lensed_sersic")
    ap.add_argument("--n-lenstronomy", type=int, default=6, help="stamps timed in lenstronomy")
    ap.add_argument("--n-reference", type=int, default=6, help="stamps for flux-error checks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lenstronomy-supersampling", type=int, nargs="+",
                    default=[3, 5, 7, 9, 11, 15, 21],
                    help="lenstronomy supersampling factors swept for the equal-accuracy ratio")
    ap.add_argument("--lenstronomy-fixed", type=int, default=3,
                    help="supersampling of the fixed-setting ratio speedup_vs_lenstronomy_ssN")
    ap.add_argument("--tol-scales", type=float, nargs="*", default=[2.0, 4.0, 8.0],
                    help="coarser tol_scale values of ours, for the reverse comparison")
    ap.add_argument("--reference-supersampling", type=int, default=60,
                    help="uniform supersampling of the numpy flux reference (even: no sample "
                    "on the lens centre)")
    ap.add_argument("--reference-check", type=int, default=44,
                    help="coarser numpy supersampling the reference is checked against")
    args = ap.parse_args(argv)

    d = random_systems(args.n, args.seed)
    render_lensed_sersic(**subset(d, slice(0, 2)))  # JIT warm-up (cached afterwards)
    work = np.zeros(len(WORK_COUNTERS), dtype=np.int64)
    (arc, mu), cpu, wall = timed(render_lensed_sersic, **d, work=work, repeat=3)
    work //= 3
    res = {
        "n_stamps": args.n,
        "inject_ms_per_stamp": cpu / args.n * 1e3,
        "inject_wall_ms_per_stamp": wall / args.n * 1e3,
        "work_per_stamp": {k: float(v) / args.n for k, v in zip(WORK_COUNTERS, work, strict=True)},
    }

    nref = min(args.n_reference, args.n)
    sub = subset(d, slice(0, nref))
    _, cpu_np, _ = timed(reference_render_lensed_sersic, **sub, supersample=3)
    res["numpy_reference_ms_per_stamp"] = cpu_np / nref * 1e3
    truth = reference_render_lensed_sersic(**sub, supersample=args.reference_supersampling)
    tflux = truth.sum(axis=(2, 3))
    res["flux_error_max"] = float(np.abs(arc[:nref].sum(axis=(2, 3)) / tflux - 1).max())
    res["peak_error_max"] = float(
        (np.abs(arc[:nref] - truth).max(axis=(2, 3)) / truth.max(axis=(2, 3))).max()
    )

    # the reference's own convergence: a coarser uniform supersampling of the same stamps
    ref_c = reference_render_lensed_sersic(**sub, supersample=args.reference_check)
    res["reference_supersampling"] = args.reference_supersampling
    res["reference_self_flux_diff_max"] = float(
        np.abs(ref_c.sum(axis=(2, 3)) / tflux - 1).max())
    res["reference_check_supersampling"] = args.reference_check
    # flux errors at or below the reference's own convergence are not resolved by it
    res["reference_resolves_flux_error"] = bool(
        res["flux_error_max"] > res["reference_self_flux_diff_max"])

    # our accuracy knob (tol_scale > 1: coarser, faster); the default stays tol_scale 1
    ours_rows = [(1.0, res["inject_ms_per_stamp"], res["flux_error_max"])]
    sweep_ours = [{"tol_scale": 1.0, "ms_per_stamp": res["inject_ms_per_stamp"],
                   "flux_error_max": res["flux_error_max"]}]
    for ts in args.tol_scales:
        (a, _), c, _ = timed(render_lensed_sersic, **d, tol_scale=ts, repeat=3)
        ms = c / args.n * 1e3
        err = float(np.abs(a[:nref].sum(axis=(2, 3)) / tflux - 1).max())
        ours_rows.append((float(ts), ms, err))
        sweep_ours.append({"tol_scale": float(ts), "ms_per_stamp": ms, "flux_error_max": err})
    res["ours_tol_scale_sweep"] = sweep_ours

    try:
        import lenstronomy  # noqa: F401

        have_len = True
    except ImportError:
        have_len = False
    if have_len:
        nl = min(args.n_lenstronomy, args.n)
        if nl > nref:
            msg = (f"--n-lenstronomy {nl} > --n-reference {nref}: every lenstronomy stamp "
                   "timed must also have its flux error measured")
            raise SystemExit(msg)
        factors = sorted(set(args.lenstronomy_supersampling) | {args.lenstronomy_fixed})
        lenstronomy_render(d, 0)  # warm imports
        sweep, rows = [], []
        for ss in factors:
            t_all, t_img, errs = 0.0, 0.0, []
            for i in range(nl):
                c0 = time.process_time()
                img, ti = lenstronomy_render(d, i, supersampling=ss)
                t_all += time.process_time() - c0
                t_img += ti
                errs.append(np.abs(img.sum(axis=(1, 2)) / tflux[i] - 1).max())
            ms, err = t_all / nl * 1e3, float(max(errs))
            sweep.append({"supersampling": ss, "ms_per_stamp": ms,
                          "image_only_ms_per_stamp": t_img / nl * 1e3,
                          "flux_error_max": err,
                          "speedup_of_ours": ms / res["inject_ms_per_stamp"]})
            rows.append((ss, ms, err))
        res["lenstronomy_sweep"] = sweep
        res["lenstronomy_n_stamps"] = nl
        # headline, equal accuracy: the cheapest lenstronomy setting whose flux error is <=
        # ours; if none in the sweep reaches it, the most accurate one (a lower bound)
        eq = equal_accuracy_speedup(rows, res["inject_ms_per_stamp"], res["flux_error_max"])
        res["speedup_vs_lenstronomy"] = eq["speedup"]
        res["speedup_is_lower_bound"] = eq["is_lower_bound"]
        res["equal_accuracy_lenstronomy_supersampling"] = eq["setting"]
        res["lenstronomy_ms_per_stamp"] = eq["ms_per_stamp"]
        res["lenstronomy_flux_error_max"] = eq["flux_error"]
        # the fixed-supersampling ratio of earlier rounds (not at equal accuracy)
        fx = next(r for r in sweep if r["supersampling"] == args.lenstronomy_fixed)
        k = f"ss{args.lenstronomy_fixed}"
        res[f"speedup_vs_lenstronomy_{k}"] = fx["speedup_of_ours"]
        res[f"lenstronomy_{k}_ms_per_stamp"] = fx["ms_per_stamp"]
        res[f"lenstronomy_{k}_flux_error_max"] = fx["flux_error_max"]
        res[f"speedup_vs_lenstronomy_{k}_image_only"] = (
            fx["image_only_ms_per_stamp"] / res["inject_ms_per_stamp"])
        # reverse: our cheapest tol_scale at least as accurate as that lenstronomy setting
        (ts, ms, err), short = cheapest_at_accuracy(ours_rows, fx["flux_error_max"])
        res[f"ours_at_lenstronomy_{k}_accuracy"] = {
            "tol_scale": ts, "ms_per_stamp": ms, "flux_error_max": err,
            "speedup": fx["ms_per_stamp"] / ms, "reaches_accuracy": not short}
    else:
        res["lenstronomy_ms_per_stamp"] = None
        res["speedup_vs_lenstronomy"] = None
        res["lenstronomy_note"] = "lenstronomy not installed"

    res["profile_ms_per_stamp"] = profile_render(d)
    gbps, note = bench_mask()
    res["mask_gb_per_s"] = gbps
    res["mask_note"] = note
    res["speedup_vs_numpy_reference"] = res["numpy_reference_ms_per_stamp"] / res[
        "inject_ms_per_stamp"]

    width = max(len(k) for k in res)
    for k, v in res.items():
        if isinstance(v, float):
            print(f"{k:<{width}}  {v:12.4g}")
        elif isinstance(v, list):
            print(f"{k}:")
            for row in v:
                print("  " + "  ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}"
                                       for a, b in row.items()))
        elif not isinstance(v, dict):
            print(f"{k:<{width}}  {v}")
    for k, v in res["work_per_stamp"].items():
        print(f"  work/{k:<{width - 7}}  {v:12.1f}")
    for k, v in res["profile_ms_per_stamp"].items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                print(f"  profile/{k}/{k2:<{width - 22}}  {v2:12.4g}")
        else:
            print(f"  profile/{k:<{width - 10}}  {v:12.4g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
