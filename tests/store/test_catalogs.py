"""Catalogue parsing and FITS helpers: ids, formats, per-row reasons, unit conversions."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from gen5dask.config.ingest import CatalogColumns
from gen5dask.store import fitsio as F
from gen5dask.store.catalogs import read_catalog, sample_id_for
from tests.store.fitsfactory import catalog_frame, write_cutout_file


def test_sample_ids_integer_or_stable_hash():
    assert sample_id_for("12345") == 12345 and sample_id_for(" 7 ") == 7
    h = sample_id_for("J1234+5678")
    assert h == sample_id_for("J1234+5678") and 0 <= h < 2**63
    assert sample_id_for("-5") != -5 and sample_id_for("-5") >= 0
    assert sample_id_for(str(2**63)) != 2**63  # out of int64 range -> hashed
    assert sample_id_for("J1") != sample_id_for("J2")


@pytest.mark.parametrize("fmt", ["csv", "fits", "parquet"])
def test_formats_agree(tmp_path, fmt):
    from astropy.table import Table

    df = catalog_frame(6, seed=4)
    df = df.rename(columns={"RA": "ra"}).rename(columns=str.upper)  # case-insensitive columns
    path = tmp_path / f"c.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        Table.from_pandas(df).write(path, format="parquet" if fmt == "parquet" else None)
    cat = read_catalog(path, columns=CatalogColumns())
    assert cat.ok.all() and cat.n_rows == 6
    np.testing.assert_array_equal(cat.sample, df["ID"].to_numpy())
    np.testing.assert_allclose(cat.ra, df["RA"])
    mag = -2.5 * (np.log10(5 / np.sqrt(df["PSFDEPTH_G"].to_numpy())) - 9)
    np.testing.assert_allclose(cat.psfdepth[:, 0], mag, rtol=1e-6)
    np.testing.assert_allclose(cat.host_mag_r, 22.5 - 2.5 * np.log10(df["FLUX_R"]), rtol=1e-6)
    assert len(cat.sha256) == 64


def test_mag_units_and_absent_optional_columns(tmp_path):
    df = catalog_frame(3).drop(columns=["brickname", "flux_r"])
    df[["psfdepth_g", "psfdepth_r", "psfdepth_z"]] = 24.5
    df.to_csv(tmp_path / "c.csv", index=False)
    cat = read_catalog(tmp_path / "c.csv", columns=CatalogColumns(), psfdepth_units="mag")
    assert cat.ok.all() and (cat.psfdepth == 24.5).all() and np.isnan(cat.host_mag_r).all()
    assert not cat.brick_from_catalog and all(len(b) == 8 for b in cat.brickname)


def test_missing_required_column_names_it(tmp_path):
    catalog_frame(2).drop(columns=["dec"]).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match=r"'dec'.*columns\.dec"):
        read_catalog(tmp_path / "c.csv", columns=CatalogColumns())


def test_read_cutout_crops_about_centre_and_reads_bands_in_order(tmp_path):
    arrs = write_cutout_file(tmp_path / "a.fits", seed=3, size=33, bands="zrg")
    c = F.read_cutout(tmp_path / "a.fits", bands=("g", "r", "z"), stamp_size=9, max_bytes=10**7)
    # reference: 0-based centre pixel 16 -> rows 12..20
    np.testing.assert_array_equal(c.image, arrs["image"][::-1, 12:21, 12:21])
    np.testing.assert_array_equal(c.maskbits, arrs["maskbits"][12:21, 12:21])
    assert c.image.dtype == np.float32 and c.maskbits.dtype == np.int32


def test_truncation_and_magic(tmp_path):
    write_cutout_file(tmp_path / "a.fits", seed=1)
    raw = (tmp_path / "a.fits").read_bytes()
    (tmp_path / "b.fits").write_bytes(raw[:-100])
    (tmp_path / "c.fits").write_bytes(raw[:4])
    (tmp_path / "d.fits").write_bytes(b"\x89PNG" + b"\0" * 3000)
    for name, reason in [("b", F.TRUNCATED), ("c", F.TRUNCATED), ("d", F.NOT_FITS)]:
        with pytest.raises(F.Rejected) as exc:
            F.read_cutout(tmp_path / f"{name}.fits", bands=("g",), stamp_size=8, max_bytes=10**7)
        assert exc.value.reason == reason


def test_resolve_within_blocks_traversal_and_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (root / "link").symlink_to(tmp_path / "secret")
    roots = F.resolve_roots([root])
    assert F.resolve_within(root / "sub" / "f.fits", roots) == (root / "sub" / "f.fits").resolve()
    for bad in (root / ".." / "secret", root / "link", tmp_path / "secret"):
        with pytest.raises(F.Rejected) as exc:
            F.resolve_within(bad, roots)
        assert exc.value.reason == F.OUTSIDE_ROOTS


def test_header_bands_variants():
    h = fits.Header()
    h["BANDS"] = "g,r,i"
    assert F.header_bands(h) == ["g", "r", "i"]
    h = fits.Header()
    h["BAND0"], h["BAND1"] = "g", "z"
    assert F.header_bands(h) == ["g", "z"]
    assert F.header_bands(fits.Header()) is None


def test_header_wcs_check_matches_astropy_and_rejects_garbage():
    from astropy.wcs import WCS

    from tests.store.fitsfactory import tan_header

    h = tan_header(150.0, 2.0, 32)
    F.check_header_wcs(h, pixscale=0.262, tolerance=0.01, label="x")
    F.check_pixscale(WCS(h), pixscale=0.262, tolerance=0.01, label="x")  # astropy agrees
    h2 = fits.Header()  # CDELT + rotated PC form
    h2["CTYPE1"], h2["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h2["CDELT1"], h2["CDELT2"] = -0.262 / 3600, 0.262 / 3600
    th = np.deg2rad(30)
    c, s = np.cos(th), np.sin(th)
    h2["PC1_1"], h2["PC1_2"], h2["PC2_1"], h2["PC2_2"] = c, -s, s, c
    F.check_header_wcs(h2, pixscale=0.262, tolerance=0.01, label="x")
    for bad in ({"CTYPE1": "PIXEL"}, {"CDELT2": 1.0 / 3600}, {"CDELT1": "abc"}):
        hb = tan_header(150.0, 2.0, 32)
        hb.update(bad)
        with pytest.raises(F.Rejected) as exc:
            F.check_header_wcs(hb, pixscale=0.262, tolerance=0.01, label="x")
        assert exc.value.reason == F.BAD_WCS
