"""End-to-end ingest of FITS cutouts: contents, quarantine reasons, accounting, provenance."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from astropy.io import fits

from gen5dask.config import config_from_dict
from gen5dask.stages.ingest import run_ingest
from gen5dask.store import StoreError, read_attrs, read_samples, read_table, validate
from gen5dask.store import fitsio as F
from gen5dask.store.catalogs import sample_id_for
from gen5dask.store.ingest import side_paths
from tests.store.fitsfactory import (
    catalog_frame,
    ingest_config,
    make_cutout_set,
    write_cutout_file,
)

S = 16  # stamp size of these tests (cutouts are 32 x 32)


def _cfg(tmp_path, **kw):
    return config_from_dict(ingest_config(tmp_path, **kw))


def _crop(a):
    return F.crop_center(a, S)


def test_ingest_good_cutouts(tmp_path, capsys):
    cdir, cat = make_cutout_set(tmp_path, 13)
    cfg = _cfg(tmp_path, catalog=str(cat), cutouts=str(cdir))
    out = run_ingest(cfg)
    assert "ingested 13 + quarantined 0 = catalogue rows 13" in capsys.readouterr().out
    assert validate(out) == []
    ds = xr.open_zarr(out)
    assert ds.sizes == {"sample": 13, "band": 3, "y": S, "x": S}
    df = pd.read_csv(cat)
    np.testing.assert_array_equal(ds["sample"].values, df["id"].to_numpy())
    data = read_samples(out, slice(0, 13), ["image", "invvar", "maskbits"])
    for k, row in enumerate(df.itertuples()):
        with fits.open(cdir / f"{row.id}.fits") as h:
            np.testing.assert_array_equal(data["image"][k], _crop(h[0].data))
            np.testing.assert_array_equal(data["invvar"][k], _crop(h["INVVAR"].data))
            np.testing.assert_array_equal(data["maskbits"][k], _crop(h["MASKBITS"].data))
    tab = read_table(out)
    np.testing.assert_allclose(tab["ra"], df["ra"])
    np.testing.assert_allclose(tab["psfsize_r"], df["psfsize_r"], rtol=1e-6)
    # Tractor psfdepth ivar -> 5-sigma mag
    want = -2.5 * (np.log10(5 / np.sqrt(df["psfdepth_z"])) - 9)
    np.testing.assert_allclose(tab["psfdepth_z"], want, rtol=1e-6)
    np.testing.assert_allclose(tab["host_mag_r"], 22.5 - 2.5 * np.log10(df["flux_r"]), rtol=1e-6)
    assert set(tab["kind"]) == {"host"} and set(tab["label"]) == {0}
    assert set(tab["quality"]) == {"ok"} and (tab["region"] == -1).all()
    attrs = read_attrs(out)
    assert attrs["stage"] == "ingest" and attrs["complete"] is True
    assert attrs["n_ingested"] == 13 and attrs["n_quarantined"] == 0
    assert "catalog_sha256" in attrs and "ingest:" in attrs["config"]
    side = side_paths(out)
    assert not side["staging"].exists()
    assert len(pd.read_csv(side["quarantine"])) == 0
    ids = pd.read_csv(side["ids"])
    assert (ids["status"] == "ingested").all() and list(ids["index"]) == list(range(13))


def _bad_input_set(tmp_path):
    """A catalogue with 4 good rows and one row per bad-input kind; returns (cfg, expected)."""
    cdir = tmp_path / "cutouts"
    outside = tmp_path / "elsewhere"
    df = catalog_frame(24, seed=3, start_id=1)
    df = df.astype({"id": object, "ra": object})
    expected = {}

    def good(i):
        r = df.iloc[i]
        write_cutout_file(cdir / f"{r['id']}.fits", seed=i, ra=r["ra"], dec=r["dec"])

    for i in range(4):
        good(i)
    # file-level problems
    ids = list(df["id"])
    r = 4
    good(r)
    raw = (cdir / f"{ids[r]}.fits").read_bytes()
    (cdir / f"{ids[r]}.fits").write_bytes(raw[: len(raw) - 2880 * 4])  # mid INVVAR data
    expected[ids[r]] = F.TRUNCATED
    r = 5
    (cdir / f"{ids[r]}.fits").write_bytes(b"")
    expected[ids[r]] = F.EMPTY_FILE
    r = 6
    (cdir / f"{ids[r]}.fits").write_bytes(b"<html>503 Service Unavailable</html>" * 100)
    expected[ids[r]] = F.NOT_FITS
    r = 7
    write_cutout_file(cdir / f"{ids[r]}.fits", seed=r, size=12)  # smaller than the stamp
    expected[ids[r]] = F.WRONG_SHAPE
    r = 8
    write_cutout_file(cdir / f"{ids[r]}.fits", seed=r, image_dtype=np.int16)
    expected[ids[r]] = F.WRONG_DTYPE
    r = 9
    img = write_cutout_file(cdir / f"{ids[r]}.fits", seed=r)["image"].copy()
    img[1, 16, 16] = np.nan
    write_cutout_file(cdir / f"{ids[r]}.fits", seed=r, image=img)
    expected[ids[r]] = F.NON_FINITE
    r = 10
    write_cutout_file(cdir / f"{ids[r]}.fits", seed=r, bands="gr")
    expected[ids[r]] = F.MISSING_BANDS
    r = 11
    write_cutout_file(cdir / f"{ids[r]}.fits", seed=r, invvar=False)
    expected[ids[r]] = F.MISSING_HDU
    r = 12
    write_cutout_file(cdir / f"{ids[r]}.fits", seed=r, pixscale=0.5)
    expected[ids[r]] = F.BAD_WCS
    r = 13
    expected[ids[r]] = F.MISSING_FILE  # no file written
    r = 14  # symlink leaving the allowed root
    write_cutout_file(outside / "target.fits", seed=r)
    os.symlink(outside / "target.fits", cdir / f"{ids[r]}.fits")
    expected[ids[r]] = F.OUTSIDE_ROOTS
    r = 15  # path traversal through the id
    write_cutout_file(outside / "x.fits", seed=r)
    df.loc[r, "id"] = "../elsewhere/x"
    expected["../elsewhere/x"] = F.OUTSIDE_ROOTS
    r = 16  # too large
    write_cutout_file(cdir / f"{ids[r]}.fits", seed=r, size=200)
    expected[ids[r]] = F.TOO_LARGE
    # catalogue-level problems
    r = 17
    good(r)
    df.loc[r, "ra"] = "not-a-number"
    expected[ids[r]] = F.UNPARSABLE
    r = 18
    good(r)
    df.loc[r, "dec"] = 95.0
    expected[ids[r]] = F.OUT_OF_RANGE
    r = 19
    good(r)
    df.loc[r, "psfsize_r"] = -1.0
    expected[ids[r]] = F.BAD_PSFSIZE
    r = 20
    good(r)
    df.loc[r, "psfsize_g"] = np.nan
    expected["nan-psf"] = F.BAD_PSFSIZE
    df.loc[r, "id"] = "nan-psf"
    r = 21  # duplicate of row 0's id: row 0 ingested, this one quarantined
    df.loc[r, "id"] = ids[0]
    r = 22
    good(r)
    df.loc[r, "psfdepth_g"] = 0.0
    expected[ids[r]] = F.BAD_PSFDEPTH
    r = 23
    good(r)
    df.loc[r, "brickname"] = "nonsense"
    expected[ids[r]] = F.BAD_BRICKNAME
    cat = tmp_path / "catalog.csv"
    df.to_csv(cat, index=False)
    with open(cat, "a") as fh:  # a ragged line: one row, unparsable
        fh.write("999,150.1\n")
    cfg = _cfg(tmp_path, catalog=str(cat), cutouts=str(cdir), max_file_mb=0.2)
    return cfg, expected, ids


def test_every_bad_input_is_quarantined_with_its_reason(tmp_path, capsys):
    cfg, expected, ids = _bad_input_set(tmp_path)
    out = run_ingest(cfg)
    text = capsys.readouterr().out
    n_rows = 25
    assert f"ingested 4 + quarantined 21 = catalogue rows {n_rows}" in text
    assert validate(out) == []
    side = side_paths(out)
    q = pd.read_csv(side["quarantine"], dtype={"id": str}, keep_default_na=False)
    assert list(q.columns[:3]) == ["id", "source", "reason"]
    got = dict(zip(q["id"], q["reason"], strict=False))
    for ident, reason in expected.items():
        assert got.get(str(ident)) == reason, (ident, got.get(str(ident)), reason)
    dup = q[(q["id"] == str(ids[0]))]
    assert list(dup["reason"]) == [F.DUPLICATE_ID] and list(dup["row"]) == [21]
    ragged = q[q["row"] == 24]
    assert list(ragged["reason"]) == [F.UNPARSABLE]
    # every catalogue row is accounted for exactly once
    idmap = pd.read_csv(side["ids"], keep_default_na=False)
    assert len(idmap) == n_rows and set(idmap["status"]) == {"ingested", "quarantined"}
    ingested_rows = idmap.loc[idmap.status == "ingested", "row"].tolist()
    assert sorted(q["row"].tolist() + ingested_rows) == list(range(n_rows))
    np.testing.assert_array_equal(read_table(out, ["sample"])["sample"], ids[:4])
    attrs = read_attrs(out)
    assert attrs["n_quarantined"] == 21 and attrs["n_catalog_rows"] == n_rows


def test_missing_invvar_derived_from_psfdepth(tmp_path):
    cdir = tmp_path / "cutouts"
    df = catalog_frame(3, seed=1)
    for r in df.itertuples():
        write_cutout_file(cdir / f"{r.id}.fits", seed=int(r.id), invvar=False, maskbits=False)
    df.to_csv(tmp_path / "c.csv", index=False)
    cfg = _cfg(tmp_path, catalog=str(tmp_path / "c.csv"), cutouts=str(cdir),
               missing_invvar="psfdepth")
    out = run_ingest(cfg)
    tab = read_table(out)
    assert set(tab["quality"]) == {"invvar_from_psfdepth"}
    iv = read_samples(out, slice(0, 3), ["invvar", "maskbits"])
    assert (iv["maskbits"] == 0).all()
    # reference: 5-sigma depth m -> sigma_flux; NEA of a Gaussian PSF of FWHM psfsize
    depth = -2.5 * (np.log10(5 / np.sqrt(df["psfdepth_r"][1])) - 9)
    sig_flux = 10 ** ((22.5 - depth) / 2.5) / 5
    sig_psf_pix = df["psfsize_r"][1] / 2.35482 / 0.262
    nea = 4 * np.pi * sig_psf_pix**2
    sig_pix = sig_flux / np.sqrt(nea)
    np.testing.assert_allclose(iv["invvar"][1, 1], 1 / sig_pix**2, rtol=1e-4)


def test_string_ids_hashed_and_fits_catalog(tmp_path):
    from astropy.table import Table

    cdir = tmp_path / "cutouts"
    df = catalog_frame(4, seed=2)
    df["id"] = [f"J{i:04d}+0210" for i in range(4)]
    for i, r in enumerate(df.itertuples()):
        write_cutout_file(cdir / f"{r.id}.fits", seed=i)
    Table.from_pandas(df).write(tmp_path / "c.fits")
    out = run_ingest(_cfg(tmp_path, catalog=str(tmp_path / "c.fits"), cutouts=str(cdir)))
    smp = read_table(out, ["sample"])["sample"].to_numpy()
    np.testing.assert_array_equal(smp, [sample_id_for(s) for s in df["id"]])
    assert (smp >= 0).all()
    ids = pd.read_csv(side_paths(out)["ids"])
    assert list(ids["id"]) == list(df["id"]) and list(ids["sample"]) == list(smp)


def test_rerun_is_noop_force_redoes_and_changed_config_refused(tmp_path, capsys):
    cdir, cat = make_cutout_set(tmp_path, 5)
    cfg = _cfg(tmp_path, catalog=str(cat), cutouts=str(cdir))
    out = run_ingest(cfg)
    created = read_attrs(out)["created"]
    run_ingest(cfg)
    assert "up to date" in capsys.readouterr().out
    assert read_attrs(out)["created"] == created
    cfg2 = _cfg(tmp_path, catalog=str(cat), cutouts=str(cdir), kind="control")
    with pytest.raises(StoreError, match="different ingest configuration"):
        run_ingest(cfg2)
    run_ingest(cfg2, force=True)
    assert set(read_table(out, ["kind"])["kind"]) == {"control"}


def test_bad_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="ingest.catalog"):
        run_ingest(_cfg(tmp_path, cutouts=str(tmp_path)))
    cat = tmp_path / "c.csv"
    catalog_frame(2).drop(columns=["psfsize_z"]).to_csv(cat, index=False)
    with pytest.raises(ValueError, match="psfsize_z"):
        run_ingest(_cfg(tmp_path, catalog=str(cat), cutouts=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="ingest.cutouts"):
        run_ingest(_cfg(tmp_path, catalog=str(cat), cutouts=str(tmp_path / "nope")))


def test_cli_ingest_in_process(tmp_path, capsys):
    import yaml

    from gen5dask.cli import main

    cdir, cat = make_cutout_set(tmp_path, 4)
    cfg = ingest_config(tmp_path, catalog=str(cat), cutouts=str(cdir))
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["ingest", str(path)]) == 0
    assert "ingested 4 + quarantined 0 = catalogue rows 4" in capsys.readouterr().out
    assert validate(tmp_path / "out" / "hosts.zarr") == []
    assert main(["ingest", str(path), "--set", "ingest.cutouts=/nonexistent"]) == 2
