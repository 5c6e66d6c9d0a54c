"""Ingest fuzzing and input confinement (tests/store/test_ingest.py covers the basic reasons).

* corrupt-input kinds not covered there (catalogue and FITS), each quarantined with its reason;
* seeded random byte corruption of FITS files (bit flips, zeroed runs, truncation, appended
  junk, in headers and in data): the stage completes, every catalogue row is ingested or
  quarantined exactly once, every ingested stamp honours the contract, intact files are ingested
  bit for bit, and the CLI reports it with exit 0 and no traceback;
* paths are confined to the configured roots: absolute ids, symlinked directories, ``roots``
  not containing the cutouts, a catalogue outside ``roots``;
* ``fetch`` never writes outside its directory, never follows a URL to another host (userinfo
  tricks, non-http redirects), caps responses without Content-Length, and always passes a
  timeout (tests/store/test_fetch.py covers timeouts, retries, size limits and rate limiting).
"""

from __future__ import annotations

import gzip
import http.server
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits

from gen5dask.config import config_from_dict
from gen5dask.stages.ingest import run_ingest
from gen5dask.store import fitsio as F
from gen5dask.store import read_samples, read_table, validate
from gen5dask.store.ingest import side_paths
from tests.loopback import LoopbackServer
from tests.store.fitsfactory import (
    catalog_frame,
    cutout_arrays,
    ingest_config,
    write_cutout_file,
)

S = 16  # stamp size; cutouts are 32 x 32
ROOT = Path(__file__).resolve().parents[1]


def _accounting(out: Path, n_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every catalogue row ingested or quarantined exactly once; returns (quarantine, idmap)."""
    side = side_paths(out)
    q = pd.read_csv(side["quarantine"], dtype={"id": str}, keep_default_na=False)
    idmap = pd.read_csv(side["ids"], dtype={"id": str}, keep_default_na=False)
    ingested = idmap.loc[idmap["status"] == "ingested", "row"].tolist()
    assert sorted(q["row"].tolist() + ingested) == list(range(n_rows))
    assert set(q["reason"]) <= set(F.REASONS)
    assert (q["reason"] != "").all()
    return q, idmap


# --- more kinds of corrupt input ---------------------------------------------------------------


def _hdus(seed, *, size=32, bands="grz"):
    img, iv, mb = cutout_arrays(seed, nband=len(bands), size=size)
    prim = fits.PrimaryHDU(img)
    prim.header["BANDS"] = bands
    return prim, fits.ImageHDU(iv, name="INVVAR"), fits.ImageHDU(mb, name="MASKBITS")


def _write(path: Path, hdus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(list(hdus)).writeto(path, overwrite=True)


def test_more_corrupt_kinds_quarantined_with_reason(tmp_path):
    cdir = tmp_path / "cutouts"
    outside = tmp_path / "outside"
    df = catalog_frame(20, seed=5, start_id=1).astype({"id": object, "ra": object,
                                                        "dec": object})
    ids = list(df["id"])
    expected: dict[str, str] = {}

    def path(r):
        return cdir / f"{ids[r]}.fits"

    write_cutout_file(path(0), seed=0)  # the one good row
    # FITS problems
    prim, iv, mb = _hdus(1)
    iv.data = -iv.data
    _write(path(1), [prim, iv, mb])
    expected[ids[1]] = F.BAD_INVVAR
    prim, iv, mb = _hdus(2)
    _write(path(2), [prim, fits.ImageHDU(iv.data[:, :20], name="INVVAR"), mb])
    expected[ids[2]] = F.WRONG_SHAPE
    prim, iv, mb = _hdus(3)
    _write(path(3), [prim, iv, fits.ImageHDU(mb.data.astype("f4"), name="MASKBITS")])
    expected[ids[3]] = F.WRONG_DTYPE
    prim, iv, mb = _hdus(4)
    iv.data[2, 16, 16] = np.inf  # inside the central stamp
    _write(path(4), [prim, iv, mb])
    expected[ids[4]] = F.NON_FINITE
    prim, iv, mb = _hdus(5)
    _write(path(5), [fits.PrimaryHDU(), fits.ImageHDU(prim.data), iv, mb])  # empty primary
    expected[ids[5]] = F.MISSING_HDU
    prim, iv, mb = _hdus(6)
    prim.header["BANDS"] = "gr"  # 2 names, 3 planes
    _write(path(6), [prim, iv, mb])
    expected[ids[6]] = F.WRONG_SHAPE
    prim, iv, mb = _hdus(7)
    prim.header["CTYPE1"], prim.header["CTYPE2"] = "GLON-CAR", "GLAT-CAR"
    prim.header["CDELT1"], prim.header["CDELT2"] = 1.0, 1.0
    _write(path(7), [prim, iv, mb])
    expected[ids[7]] = F.BAD_WCS
    write_cutout_file(path(8), seed=8)
    path(8).write_bytes(gzip.compress(path(8).read_bytes()))  # gzip named .fits
    expected[ids[8]] = F.NOT_FITS
    write_cutout_file(path(9), seed=9)
    path(9).write_bytes(path(9).read_bytes()[:2880])  # header only, data missing
    expected[ids[9]] = F.TRUNCATED
    path(10).mkdir(parents=True)  # a directory where the file should be
    expected[ids[10]] = F.MISSING_FILE
    os.mkfifo(path(11))  # a FIFO must not block the reader
    expected[ids[11]] = F.MISSING_FILE
    raw = bytearray(b" " * 2880)  # 2880 bytes of blanks: no SIMPLE card
    path(12).write_bytes(bytes(raw))
    expected[ids[12]] = F.NOT_FITS
    # path confinement
    write_cutout_file(outside / "abs.fits", seed=13)
    df.loc[13, "id"] = str(outside / "abs")  # absolute path through the id
    expected[str(outside / "abs")] = F.OUTSIDE_ROOTS
    write_cutout_file(outside / "sub" / f"{ids[14]}.fits", seed=14)
    os.symlink(outside / "sub", cdir / "linkdir")  # a symlinked directory leaving the root
    df.loc[14, "id"] = f"linkdir/{ids[14]}"
    expected[f"linkdir/{ids[14]}"] = F.OUTSIDE_ROOTS
    # catalogue problems
    df.loc[15, "id"] = ""
    expected[""] = F.MISSING_ID
    df.loc[16, "ra"] = "inf"
    write_cutout_file(path(16), seed=16)
    expected[ids[16]] = F.UNPARSABLE  # not a finite number
    df.loc[17, "dec"] = ""
    write_cutout_file(path(17), seed=17)
    expected[ids[17]] = F.UNPARSABLE
    df.loc[18, "ra"] = -10.0
    write_cutout_file(path(18), seed=18)
    expected[ids[18]] = F.OUT_OF_RANGE
    df.loc[19, "psfsize_z"] = 1e9  # absurd PSF (would make a giant PSF kernel in inject)
    write_cutout_file(path(19), seed=19)
    expected[ids[19]] = F.BAD_PSFSIZE
    cat = tmp_path / "catalog.csv"
    df.to_csv(cat, index=False)
    cfg = config_from_dict(ingest_config(tmp_path, catalog=str(cat), cutouts=str(cdir)))
    out = run_ingest(cfg)
    assert validate(out) == []
    q, _ = _accounting(out, 20)
    got = dict(zip(q["id"], q["reason"], strict=True))
    wrong = {k: (got.get(str(k)), v) for k, v in expected.items() if got.get(str(k)) != v}
    assert not wrong, wrong
    assert read_table(out, ["sample"])["sample"].tolist() == [ids[0]]
    assert len(expected) >= 19


def test_roots_confine_every_read(tmp_path):
    cdir = tmp_path / "cutouts"
    df = catalog_frame(3, seed=1)
    for r in df.itertuples():
        write_cutout_file(cdir / f"{r.id}.fits", seed=int(r.id))
    cat = tmp_path / "catalog.csv"
    df.to_csv(cat, index=False)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    # the cutouts directory is not under the configured roots -> every row is quarantined
    d = ingest_config(tmp_path, catalog=str(cat), cutouts=str(cdir), roots=[str(tmp_path)])
    d["ingest"]["roots"] = [str(allowed), str(tmp_path)]
    ok = run_ingest(config_from_dict(d))  # catalogue and cutouts inside tmp_path: fine
    assert len(read_table(ok, ["sample"])) == 3
    d = ingest_config(tmp_path / "b", catalog=str(cat), cutouts=str(cdir), roots=[str(allowed)])
    with pytest.raises(PermissionError, match="ingest.catalog"):
        run_ingest(config_from_dict(d))  # the catalogue itself is outside the roots
    shutil_cat = allowed / "catalog.csv"
    shutil_cat.write_bytes(cat.read_bytes())
    d = ingest_config(tmp_path / "c", catalog=str(shutil_cat), cutouts=str(cdir),
                      roots=[str(allowed)])
    out = run_ingest(config_from_dict(d))
    q, _ = _accounting(out, 3)
    assert list(q["reason"]) == [F.OUTSIDE_ROOTS] * 3


# --- random byte corruption -------------------------------------------------------------------

MODES = ("flip_header", "flip_data", "zero_header", "zero_data", "truncate", "truncate_block",
         "append_junk", "intact")


def corrupt(raw: bytes, mode: str, rng: np.random.Generator) -> bytes:
    """Seeded corruption of a FITS file's bytes (header = first 2880-byte block)."""
    b = bytearray(raw)
    n = len(b)
    if mode == "flip_header":
        for pos in rng.integers(0, 2880, rng.integers(1, 8)):
            b[pos] ^= 1 << int(rng.integers(0, 8))
    elif mode == "flip_data":
        for pos in rng.integers(2880, n, rng.integers(1, 64)):
            b[pos] ^= 1 << int(rng.integers(0, 8))
    elif mode == "zero_header":
        a = int(rng.integers(0, 2880 - 80))
        k = int(rng.integers(1, 400))
        b[a: a + k] = bytes(len(b[a: a + k]))
    elif mode == "zero_data":
        a = int(rng.integers(2880, n - 100))
        k = int(rng.integers(1, 3000))
        b[a: a + k] = bytes(len(b[a: a + k]))
    elif mode == "truncate":
        return bytes(b[: int(rng.integers(1, n - 1))])
    elif mode == "truncate_block":
        return bytes(b[: 2880 * int(rng.integers(1, n // 2880))])
    elif mode == "append_junk":
        return bytes(b) + rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
    return bytes(b)


def _corrupt_set(tmp_path: Path, seed: int, n: int = 32):
    rng = np.random.default_rng(seed)
    cdir = tmp_path / "cutouts"
    df = catalog_frame(n, seed=seed)
    modes = [MODES[i % len(MODES)] for i in rng.permutation(n)]
    written = {}
    for row, mode in zip(df.itertuples(), modes, strict=True):
        p = cdir / f"{row.id}.fits"
        written[row.id] = write_cutout_file(p, seed=int(row.id), ra=row.ra, dec=row.dec)
        p.write_bytes(corrupt(p.read_bytes(), mode, rng))
    cat = tmp_path / "catalog.csv"
    df.to_csv(cat, index=False)
    return df, modes, written, ingest_config(tmp_path, catalog=str(cat), cutouts=str(cdir))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_byte_corruption(tmp_path, seed):
    df, modes, written, tree = _corrupt_set(tmp_path, seed)
    out = run_ingest(config_from_dict(tree))
    assert validate(out) == []
    q, idmap = _accounting(out, len(df))
    ingested = idmap.loc[idmap["status"] == "ingested"]
    data = read_samples(out, slice(None), ["sample", "image", "invvar", "maskbits"])
    # the contract holds for whatever got through
    assert np.isfinite(data["image"]).all() and np.isfinite(data["invvar"]).all()
    assert (data["invvar"] >= 0).all()
    np.testing.assert_array_equal(data["sample"], ingested["sample"].to_numpy())
    got = dict(zip(data["sample"], range(len(data["sample"])), strict=True))
    for ident, mode in zip(df["id"], modes, strict=True):
        if mode == "intact":  # untouched files are ingested bit for bit
            k = got[ident]
            np.testing.assert_array_equal(data["image"][k],
                                          F.crop_center(written[ident]["image"], S))
            np.testing.assert_array_equal(data["invvar"][k],
                                          F.crop_center(written[ident]["invvar"], S))
        elif mode in ("truncate", "truncate_block"):  # never silently accepted
            assert ident not in got, (ident, mode)
    assert set(q["reason"]) - {F.TRUNCATED, F.NOT_FITS, F.UNREADABLE, F.MISSING_HDU,
                               F.WRONG_SHAPE, F.WRONG_DTYPE, F.NON_FINITE, F.BAD_INVVAR,
                               F.MISSING_BANDS, F.BAD_WCS} == set()
    assert len(q) >= sum(m in ("truncate", "truncate_block") for m in modes)


def test_corrupt_ingest_through_cli(tmp_path, capsys):
    from gen5dask.cli import main

    df, _, _, tree = _corrupt_set(tmp_path, 7, n=16)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tree))
    capsys.readouterr()
    assert main(["ingest", str(cfg)]) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and "Traceback" not in cap.out
    m = re.search(r"ingested (\d+) \+ quarantined (\d+) = catalogue rows (\d+)", cap.out)
    assert m and int(m[1]) + int(m[2]) == int(m[3]) == len(df) and int(m[2]) > 0


# --- fetch: confinement and limits not covered by tests/store/test_fetch.py -----------------


class _Server(LoopbackServer):
    """Loopback server: ``/big`` streams without Content-Length, ``/redir`` -> file://."""

    def __init__(self, body: bytes):
        outer = self
        self.hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                outer.hits.append(self.path)
                if self.path.startswith("/redir"):
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd")
                    self.end_headers()
                    return
                self.send_response(200)
                self.end_headers()  # no Content-Length: the client must cap the read
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)


def _fetch_cfg(tmp_path, port, path, ids, **fetch):
    df = catalog_frame(len(ids), seed=1)
    df["id"] = ids
    df["ra"] = 150.0 + 0.001 * np.arange(len(ids))
    cat = tmp_path / "cat.csv"
    df.to_csv(cat, index=False)
    url = f"http://127.0.0.1:{port}/{path}?ra={{ra:.7f}}&dec={{dec:.7f}}&size={{size}}"
    d = ingest_config(tmp_path, catalog=str(cat), cutouts=str(tmp_path / "cutouts"))
    d["fetch"] = {"catalog": str(cat), "url_template": url, "allowed_hosts": ["127.0.0.1"],
                  "rate_limit_per_s": 500.0, "backoff_s": 0.0, "timeout_s": 5.0,
                  "retries": 0, **fetch}
    return config_from_dict(d)


def test_fetch_caps_unsized_responses_and_refuses_escapes(tmp_path):
    from gen5dask.stages.fetch import QUARANTINE, run_fetch

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with _Server(b"SIMPLE  = " + b"x" * 200_000) as srv:
        cfg = _fetch_cfg(tmp_path / "a", srv.port, "big", ["1001", "../escape", "/tmp/abs"],
                         max_bytes=50_000)
        out = run_fetch(cfg)
        hits_big = list(srv.hits)
        cfg = _fetch_cfg(tmp_path / "b", srv.port, "redir", ["2001"])
        out_b = run_fetch(cfg)
    q = pd.read_csv(out / QUARANTINE, dtype={"id": str}, keep_default_na=False)
    got = dict(zip(q["id"], q["reason"], strict=True))
    assert got == {"1001": F.TOO_LARGE, "../escape": F.OUTSIDE_ROOTS,
                   "/tmp/abs": F.OUTSIDE_ROOTS}
    assert len(hits_big) == 1  # the escaping rows were refused before any request
    assert not (tmp_path / "a" / "escape.fits").exists() and not Path("/tmp/abs.fits").exists()
    assert sorted(p.name for p in out.iterdir()) == [QUARANTINE]
    qb = pd.read_csv(out_b / QUARANTINE, dtype={"id": str})
    assert list(qb["reason"]) == [F.DOWNLOAD_FAILED]  # file:// redirect not followed
    assert not any(p.suffix == ".fits" for p in out_b.iterdir())


def test_fetch_url_tricks_refused():
    from gen5dask.stages.fetch import check_url

    allowed = ["www.legacysurvey.org"]
    for url in ("https://www.legacysurvey.org@evil.example/x.fits",
                "https://evil.example/www.legacysurvey.org/x.fits",
                "https://www.legacysurvey.org.evil.example/x.fits",
                "ftp://www.legacysurvey.org/x.fits",
                "https://WWW.legacysurvey.org:443@127.0.0.1/"):
        with pytest.raises(PermissionError):
            check_url(url, allowed)
    check_url("https://www.legacysurvey.org/viewer/cutout.fits?ra=1", allowed)


def test_every_network_call_has_a_timeout():
    """Source invariant: each urlopen/opener.open call in gen5dask passes ``timeout=``."""
    calls = 0
    for path in (ROOT / "gen5dask").rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"(urlopen|opener\.open|\.urlretrieve|requests\.\w+)\(", text):
            calls += 1
            call = text[m.start(): text.find(")", m.start()) + 1]
            assert "timeout=" in call, f"{path}: {call} without timeout"
    assert calls >= 1
