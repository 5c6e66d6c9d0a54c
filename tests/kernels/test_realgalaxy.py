"""GalSim RealGalaxy-format catalogue reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from gen5dask.injection.realgalaxy import load_real_galaxy_catalog
from gen5dask.kernels.render import render_lensed_image

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PALTAS = DATA / "cosmos_hst_paltas" / "real_galaxy_catalog_23.5.fits"
SLSIM = DATA / "cosmos_slsim" / "test_COSMOS_23.5_training_sample" / "real_galaxy_catalog_23.5.fits"


def _write_catalog(tmp_path, *, columns=None, hdus=(0, 1), n_images=2):
    rng = np.random.default_rng(0)
    imgs = [rng.uniform(0, 1, (11 + 2 * i, 9 + 2 * i)).astype(np.float32) for i in range(n_images)]
    hdul = fits.HDUList([fits.PrimaryHDU(imgs[0])] + [fits.ImageHDU(im) for im in imgs[1:]])
    hdul.writeto(tmp_path / "gals.fits")
    cols = {
        "IDENT": fits.Column(name="IDENT", format="J", array=np.array([101, 202])),
        "GAL_FILENAME": fits.Column(name="GAL_FILENAME", format="16A",
                                    array=np.array(["gals.fits", "gals.fits"])),
        "GAL_HDU": fits.Column(name="GAL_HDU", format="J", array=np.array(hdus)),
        "PIXEL_SCALE": fits.Column(name="PIXEL_SCALE", format="D", array=np.array([0.03, 0.05])),
        "MAG": fits.Column(name="MAG", format="D", array=np.array([21.0, 22.5])),
    }
    use = [cols[c] for c in (columns or cols)]
    path = tmp_path / "cat.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(use)]).writeto(path)
    return path, imgs


def test_generated_catalog_roundtrip(tmp_path):
    path, imgs = _write_catalog(tmp_path)
    cat = load_real_galaxy_catalog(path)
    assert len(cat) == 2
    np.testing.assert_array_equal(cat.ident, [101, 202])
    np.testing.assert_allclose(cat.mag, [21.0, 22.5])
    for i in range(2):
        arr, scale = cat.image(i)
        assert arr.dtype == np.float64
        np.testing.assert_array_equal(arr, imgs[i])
        assert scale == [0.03, 0.05][i]
    assert cat.index_of(202) == 1
    with pytest.raises(KeyError):
        cat.index_of(5)
    with pytest.raises(IndexError):
        cat.image(2)


def test_missing_column_names_file(tmp_path):
    path, _ = _write_catalog(tmp_path, columns=["IDENT", "GAL_FILENAME", "PIXEL_SCALE"])
    with pytest.raises(ValueError, match=r"cat\.fits.*GAL_HDU"):
        load_real_galaxy_catalog(path)


def test_missing_hdu_and_file(tmp_path):
    path, _ = _write_catalog(tmp_path, hdus=(0, 7))
    cat = load_real_galaxy_catalog(path)
    with pytest.raises(ValueError, match=r"gals\.fits.*GAL_HDU=7"):
        cat.image(1)
    cat2 = load_real_galaxy_catalog(path, image_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="does not exist"):
        cat2.image(0)
    with pytest.raises(ValueError, match="does not exist"):
        load_real_galaxy_catalog(tmp_path / "absent.fits")


def test_not_a_table(tmp_path):
    p = tmp_path / "img.fits"
    fits.HDUList([fits.PrimaryHDU(np.ones((3, 3)))]).writeto(p)
    with pytest.raises(ValueError, match="binary table"):
        load_real_galaxy_catalog(p)


@pytest.mark.skipif(not PALTAS.exists(), reason="paltas COSMOS sample not available")
def test_real_paltas_cosmos_lensed():
    cat = load_real_galaxy_catalog(PALTAS)
    assert len(cat) == 10
    img, scale = cat.image(1)
    assert scale == pytest.approx(0.03)
    assert img.ndim == 2 and np.isfinite(img).all()
    arc, mu = render_lensed_image(
        stamp_size=48, pixscale=0.262, theta_e=[1.2], lens_q=[0.8], lens_pa=[0.3],
        shear_g1=[0.0], shear_g2=[0.0], src_x=[0.1], src_y=[0.05], src_image=img,
        src_pixscale=scale, src_flux_bands=[[1.0, 2.0]], psf_fwhm_arcsec=[[1.1, 1.2]],
    )
    assert np.isfinite(arc).all() and mu[0] > 1.5
    np.testing.assert_allclose(arc[0].sum(axis=(1, 2)), mu[0] * np.array([1.0, 2.0]), rtol=0.05)


@pytest.mark.skipif(not SLSIM.exists(), reason="slsim COSMOS sample not available")
def test_real_slsim_catalog():
    cat = load_real_galaxy_catalog(SLSIM)
    np.testing.assert_array_equal(cat.ident, [97475, 169753])
    img, scale = cat.image(0)
    assert img.shape == (153, 154) and scale == pytest.approx(0.03)
