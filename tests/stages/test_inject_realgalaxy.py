"""inject with real-galaxy sources (``source_mode: real_galaxy``) on a tiny generated catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from gen5dask.config import ConfigError
from gen5dask.config.inject import InjectConfig
from gen5dask.injection.laws import MODE_CODES, TargetDistribution, draw_injection_params
from gen5dask.injection.sources import BORDER_PIX, prepare_real_galaxy
from gen5dask.store import is_complete, read_samples, read_table, validate
from tests.stages.test_inject import cfg_for, make_hosts

GAL_PIX = 0.05  # arcsec / source pixel (coarser than COSMOS' 0.03 to keep the tests fast)
SHAPES = ((41, 41), (36, 50), (45, 39))
COSMOS = Path("/work/shared/data/cosmos_hst_paltas/real_galaxy_catalog_23.5.fits")


def galaxy_images(seed: int = 0) -> list[np.ndarray]:
    """Three small galaxies with a sky offset and noise: Gaussian, elliptical exp., two blobs."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (h, w) in enumerate(SHAPES):
        y, x = np.mgrid[:h, :w].astype(float)
        y -= h // 2
        x -= w // 2
        if k == 0:
            img = np.exp(-0.5 * (x**2 + y**2) / 3.0**2)
        elif k == 1:
            img = np.exp(-np.sqrt((x / 6.0) ** 2 + (y / 2.5) ** 2))
        else:
            img = np.exp(-0.5 * ((x - 4) ** 2 + y**2) / 2.0**2) + 0.6 * np.exp(
                -0.5 * ((x + 5) ** 2 + (y - 3) ** 2) / 1.5**2
            )
        img = 10.0 * img + 0.02 + rng.normal(0.0, 0.002, img.shape)
        out.append(img.astype(np.float32))
    return out


def write_catalog(directory: Path, *, image_subdir: str | None = None) -> Path:
    """RealGalaxy-format catalogue (table in HDU 1) + one image file with 3 HDUs."""
    directory.mkdir(parents=True, exist_ok=True)
    img_dir = directory if image_subdir is None else directory / image_subdir
    img_dir.mkdir(parents=True, exist_ok=True)
    imgs = galaxy_images()
    hdus = [fits.PrimaryHDU(imgs[0])] + [fits.ImageHDU(a) for a in imgs[1:]]
    fits.HDUList(hdus).writeto(img_dir / "gals.fits", overwrite=True)
    n = len(imgs)
    cols = [
        fits.Column(name="IDENT", format="K", array=np.arange(100, 100 + n)),
        fits.Column(name="GAL_FILENAME", format="20A", array=["gals.fits"] * n),
        fits.Column(name="GAL_HDU", format="K", array=np.arange(n)),
        fits.Column(name="PIXEL_SCALE", format="D", array=np.full(n, GAL_PIX)),
        fits.Column(name="MAG", format="D", array=np.array([21.0, 22.0, 22.5])),
    ]
    path = directory / "catalog.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(
        path, overwrite=True
    )
    return path


def prepare_reference(a, *, max_size=None, threshold=0.0):
    """Slow, obvious numpy version of ``prepare_real_galaxy``."""
    a = np.asarray(a, dtype=np.float64)
    h, w = a.shape
    border = [
        a[i, j]
        for i in range(h)
        for j in range(w)
        if min(i, j, h - 1 - i, w - 1 - j) < BORDER_PIX
    ]
    bg = np.median(border)
    sig = 1.4826 * np.median(np.abs(np.array(border) - bg))
    out = a - bg
    out = np.where(out >= max(threshold * sig, 0.0), out, 0.0)
    if max_size is not None:
        cy, cx = h // 2, w // 2
        rows = [i for i in range(h) if h <= max_size or 0 <= i - (cy - max_size // 2) < max_size]
        cols = [j for j in range(w) if w <= max_size or 0 <= j - (cx - max_size // 2) < max_size]
        out = out[np.ix_(rows, cols)]
    return out / out.sum()


# ---------------------------------------------------------------------------------------------
# pure pieces
# ---------------------------------------------------------------------------------------------


def test_prepare_real_galaxy_matches_reference():
    for img in galaxy_images(3):
        for kw in ({}, {"max_size": 20}, {"max_size": 21, "threshold": 2.0}, {"threshold": 1.0}):
            got = prepare_real_galaxy(
                img, max_size=kw.get("max_size"), threshold_sigma=kw.get("threshold", 0.0)
            )
            ref = prepare_reference(img, **kw)
            assert got.shape == ref.shape and got.dtype == np.float64
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
            assert got.min() >= 0 and abs(got.sum() - 1.0) < 1e-12
    # the centre pixel stays the centre after a crop: the peak of a centred Gaussian
    g = prepare_real_galaxy(galaxy_images()[0], max_size=10)
    assert g.shape == (10, 10) and np.unravel_index(np.argmax(g), g.shape) == (5, 5)
    # a flat image has no flux after background subtraction
    with pytest.raises(ValueError, match="row 7.*no flux"):
        prepare_real_galaxy(np.ones((9, 9)), name="cat row 7")
    bad = np.ones((9, 9))
    bad[4, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        prepare_real_galaxy(bad)
    with pytest.raises(ValueError, match="2-D"):
        prepare_real_galaxy(np.ones((3, 3)))


def test_config_requires_catalogue():
    with pytest.raises(ConfigError, match="real_galaxy_catalog"):
        cfg_for(Path("/tmp/x"), Path("/tmp/h"), source_mode="real_galaxy")
    with pytest.raises(ConfigError, match="source_mode"):
        cfg_for(Path("/tmp/x"), Path("/tmp/h"), source_mode="sersic_v2")
    with pytest.raises(ConfigError, match="real_galaxy_max_size"):
        cfg_for(Path("/tmp/x"), Path("/tmp/h"), real_galaxy_max_size=2)


def test_real_galaxy_draws_keyed():
    real = InjectConfig(source_mode="real_galaxy", real_galaxy_catalog="x.fits")
    norot = InjectConfig(
        source_mode="real_galaxy", real_galaxy_catalog="x.fits", real_galaxy_rotate=False
    )
    ids = np.arange(3000, dtype=np.int64) * 5 + 1
    reps = ids % 3
    modes = np.where(ids % 2 == 0, MODE_CODES["calibrated"], MODE_CODES["uncalibrated"])
    t = TargetDistribution([1, 5, 20], [0.5, 0.5])
    kw = {"seed": 9, "host_ids": ids, "replicates": reps, "modes": modes, "target": t}
    ps = draw_injection_params(InjectConfig(), **kw)
    pr = draw_injection_params(real, n_galaxies=7, **kw)
    pn = draw_injection_params(norot, n_galaxies=7, **kw)
    assert np.all(ps["src_index"] == -1)
    idx = pr["src_index"]
    assert idx.dtype == np.int64 and idx.min() == 0 and idx.max() == 6
    counts = np.bincount(idx, minlength=7)
    assert np.all(np.abs(counts - ids.size / 7) < 5 * np.sqrt(ids.size / 7))
    for name in ("src_n", "src_reff", "src_q"):
        assert np.all(np.isnan(pr[name])) and np.all(np.isfinite(ps[name]))
    # the rotation uses the full circle; the Sersic angle (pi-symmetric) half of it
    assert 0 <= pr["src_pa"].min() and pr["src_pa"].max() < 2 * np.pi
    assert pr["src_pa"].max() > 1.9 * np.pi
    np.testing.assert_array_equal(pr["src_pa"], 2 * ps["src_pa"])
    assert np.all(pn["src_pa"] == 0) and np.array_equal(pn["src_index"], idx)
    # every other draw is the Sersic mode's (same keyed stream)
    for name in ("theta_e", "lens_q", "src_x", "shear_g1", "src_gr", "target_arc_snr"):
        np.testing.assert_array_equal(pr[name], ps[name], err_msg=name)
    # keyed: a permuted batch gets the permuted draws
    perm = np.random.default_rng(1).permutation(ids.size)
    pp = draw_injection_params(
        real, seed=9, host_ids=ids[perm], replicates=reps[perm], modes=modes[perm], target=t,
        n_galaxies=7,
    )
    np.testing.assert_array_equal(pp["src_index"], idx[perm])
    # without n_galaxies (calibration bookkeeping) no index is drawn
    assert np.all(draw_injection_params(real, **kw)["src_index"] == -1)
    with pytest.raises(ValueError, match="n_galaxies"):
        draw_injection_params(real, n_galaxies=0, **kw)


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------

RG_KW = {
    "source_mode": "real_galaxy",
    "theta_e_range": (0.6, 1.2),
    "src_pos_max_frac": 0.5,
    "n_null": 3,
    "store_arc": True,
}


@pytest.fixture(scope="module")
def rg_hosts(tmp_path_factory):
    p = tmp_path_factory.mktemp("rghosts") / "hosts.zarr"
    d = make_hosts(p, 10, chunk=8)
    return p, d


@pytest.fixture(scope="module")
def rg_catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("rgcat"), image_subdir="imgs")


@pytest.fixture(scope="module")
def rg_run(rg_hosts, rg_catalog, tmp_path_factory):
    from gen5dask.stages.inject import run_inject

    out = tmp_path_factory.mktemp("rgsync")
    cfg = cfg_for(
        out, rg_hosts[0], chunk=16, real_galaxy_catalog=str(rg_catalog),
        real_galaxy_image_dir=str(rg_catalog.parent / "imgs"), **RG_KW,
    )
    return cfg, run_inject(cfg)


def test_real_galaxy_store_truth_and_flux(rg_run, rg_hosts, rg_catalog):
    from gen5dask.injection.colour import colour_factors
    from gen5dask.kernels.render import render_lensed_image
    from gen5dask.stages.inject import target_distribution

    cfg, path = rg_run
    _, hd = rg_hosts
    assert is_complete(path) and validate(path) == []
    tab = read_table(path)
    d = read_samples(path, slice(None), ["image", "arc", "invvar", "psfsize"])
    kind = tab["kind"].to_numpy()
    inj, ctrl, null = kind == "injection", kind == "control", kind == "null_injection"
    assert inj.sum() == 20 and ctrl.sum() == 10 and null.sum() == 3
    sidx = tab["src_index"].to_numpy()
    assert np.all(sidx[ctrl] == -1) and np.all((sidx[~ctrl] >= 0) & (sidx[~ctrl] < 3))
    assert len(set(sidx[inj])) == 3  # every galaxy gets used in 20 draws
    for name in ("src_n", "src_reff", "src_q"):
        assert np.all(np.isnan(tab[name].to_numpy()[inj])), name
    for name in ("theta_e", "src_pa", "magnification", "arc_snr", "src_mag_r", "src_dmag"):
        assert np.all(np.isfinite(tab[name].to_numpy()[inj])), name
    mag = tab["magnification"].to_numpy()
    assert np.all(mag[inj] > 1.0)
    # the recorded index and angle are those of the keyed draw
    ids = tab["sample"].to_numpy()
    mcode = np.where(tab["inject_mode"].to_numpy() == "calibrated", 2, 1)
    par = draw_injection_params(
        cfg.inject, seed=cfg.seed, host_ids=ids[inj] // 64, replicates=(ids[inj] % 64 - 2) // 2,
        modes=mcode[inj], n_galaxies=3, target=target_distribution(cfg)[0],
    )
    np.testing.assert_array_equal(sidx[inj], par["src_index"])
    np.testing.assert_allclose(tab["src_pa"].to_numpy()[inj], par["src_pa"], rtol=1e-6)
    # total r flux of the noise-free arc = magnification x source flux (minus the little light
    # the PSF wings carry off the 32-px stamp)
    amp = 10 ** (-0.4 * (tab["src_mag_r"].to_numpy()[inj] - 22.5))
    ratio = d["arc"][inj, 1].sum(axis=(1, 2)) / (mag[inj] * amp)
    assert np.all((ratio > 0.9) & (ratio < 1.0 + 1e-4)), ratio
    # the stored arc is amp x the unit render of the preprocessed catalogue image (numpy ref.)
    imgs = galaxy_images()
    rows = np.flatnonzero(inj)[:4]
    for j, row in enumerate(rows):
        src = prepare_reference(imgs[sidx[row]], threshold=cfg.inject.real_galaxy_threshold_sigma)
        # the truth columns are float32: use the exact float64 draws for the geometry
        tr = {k: par[k][j:j + 1] for k in (
            "theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y")}
        unit = colour_factors(["g", "r", "z"], par["src_gr"][j:j + 1], par["src_rz"][j:j + 1])
        arc, m1 = render_lensed_image(
            stamp_size=32, pixscale=0.262, **tr, src_image=src, src_pixscale=GAL_PIX,
            src_pa=par["src_pa"][j:j + 1], src_flux_bands=unit * amp[j],
            psf_fwhm_arcsec=d["psfsize"][row:row + 1].astype(np.float64),
            supersample=cfg.inject.supersample,
        )
        np.testing.assert_allclose(m1[0], mag[row], rtol=1e-6)
        np.testing.assert_allclose(d["arc"][row], arc[0], rtol=1e-4, atol=1e-6 * arc.max())
    # controls and null injections reproduce their host bit for bit
    row_of = {int(s): i for i, s in enumerate(hd["sample"])}
    hrow = np.array([row_of[int(h)] for h in tab["host_sample"]])
    same = np.all(d["image"].view(np.int32) == hd["image"][hrow].view(np.int32), axis=(1, 2, 3))
    assert np.all(same[ctrl | null]) and not np.any(same[inj])
    assert np.all(d["arc"][~inj] == 0)


def test_real_galaxy_calibrated_hits_targets(rg_run):
    from gen5dask.stages.inject import target_distribution

    cfg, path = rg_run
    tab = read_table(path)
    cal = (tab["inject_mode"] == "calibrated").to_numpy()
    ok = cal & (tab["quality"] == "ok").to_numpy()
    assert ok.sum() >= 7
    ids = tab["sample"].to_numpy()[ok]
    target, _ = target_distribution(cfg)
    par = draw_injection_params(
        cfg.inject, seed=cfg.seed, host_ids=ids // 64, replicates=(ids % 64 - 2) // 2,
        modes=np.full(ids.size, MODE_CODES["calibrated"]), target=target,
    )
    snr = tab["arc_snr"].to_numpy()[ok]
    t = par["target_arc_snr"]
    assert np.all(np.abs(np.log(snr / t)) < 0.4)
    assert np.all(np.abs(snr[t > 8] / t[t > 8] - 1) < 1e-4)
    # misses are only the reported targets inside a jump of arc_snr(amplitude) (low S/N)
    exact = np.abs(snr / t - 1) < 1e-4
    cj = json.loads(cfg.layout.calibration_json.read_text())
    assert (~exact).sum() == cj["unattainable"] and np.all(t[~exact] < 4)


def test_real_galaxy_deterministic_across_chunking(rg_run, rg_hosts, rg_catalog, tmp_path):
    """Chunk 5 on a 2-worker Dask cluster reproduces the in-process chunk-16 run bit for bit."""
    from distributed import Client, LocalCluster

    from gen5dask.stages.inject import run_inject

    _, path0 = rg_run
    ref = read_samples(path0, slice(None))
    cat = write_catalog(tmp_path / "cat", image_subdir="imgs")  # same content, own copy
    cfg = cfg_for(
        tmp_path, rg_hosts[0], chunk=5, real_galaxy_catalog=str(cat),
        real_galaxy_image_dir=str(cat.parent / "imgs"), **RG_KW,
    )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                     dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        run_inject(cfg, client=client)
    out = read_samples(cfg.layout.train, slice(None))
    assert set(out) == set(ref)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
    # a rerun is a no-op; a changed catalogue (same path) never silently resumes the store:
    # it is rebuilt (a new config hash, every chunk rewritten)
    from gen5dask.store import read_attrs

    assert run_inject(cfg) == cfg.layout.train
    old_hash = read_attrs(cfg.layout.train)["config_hash"]
    fits.setval(cat, "EXTRA", value=1, ext=1)
    run_inject(cfg)
    assert read_attrs(cfg.layout.train)["config_hash"] != old_hash
    assert is_complete(cfg.layout.train)


def test_real_galaxy_bad_catalogue(rg_hosts, rg_catalog, tmp_path):
    from gen5dask.stages.inject import run_inject

    cfg = cfg_for(tmp_path, rg_hosts[0], source_mode="real_galaxy",
                  real_galaxy_catalog=str(tmp_path / "nope.fits"))
    with pytest.raises(ValueError, match=r"real_galaxy_catalog.*nope\.fits"):
        run_inject(cfg)
    # images not where the catalogue says (default image_dir = catalogue dir): names the file
    cfg = cfg_for(tmp_path, rg_hosts[0], source_mode="real_galaxy",
                  real_galaxy_catalog=str(rg_catalog), brightness="uncalibrated", n_null=0)
    with pytest.raises(ValueError, match=r"gals\.fits"):
        run_inject(cfg)
    assert not is_complete(cfg.layout.train)


@pytest.mark.skipif(not COSMOS.exists(), reason="COSMOS RealGalaxy sample not present")
def test_real_cosmos_catalogue(rg_hosts, tmp_path):
    from gen5dask.stages.inject import run_inject

    cfg = cfg_for(
        tmp_path, rg_hosts[0], source_mode="real_galaxy", real_galaxy_catalog=str(COSMOS),
        real_galaxy_max_size=96, real_galaxy_threshold_sigma=2.0, brightness="uncalibrated",
        n_null=1, store_arc=True, theta_e_range=(0.8, 1.5),
    )
    path = run_inject(cfg)
    assert validate(path) == []
    tab = read_table(path)
    inj = (tab["kind"] == "injection").to_numpy()
    sidx = tab["src_index"].to_numpy()[inj]
    assert np.all((sidx >= 0) & (sidx < 10))
    mag = tab["magnification"].to_numpy()[inj]
    assert np.all(mag > 1.0) and np.all(np.isfinite(tab["arc_snr"].to_numpy()[inj]))
    arc = read_samples(path, slice(None), ["arc"])["arc"][inj, 1]
    amp = 10 ** (-0.4 * (tab["src_mag_r"].to_numpy()[inj] - 22.5))
    ratio = arc.sum(axis=(1, 2)) / (mag * amp)
    assert np.all((ratio > 0.8) & (ratio < 1.0 + 1e-4)), ratio
