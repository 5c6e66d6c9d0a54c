"""``gen5dask fetch`` against a loopback HTTP server serving generated FITS (no internet)."""

from __future__ import annotations

import http.server
import io
import threading
import time
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from gen5dask.config import config_from_dict
from gen5dask.stages.fetch import (
    QUARANTINE,
    RateLimiter,
    check_url,
    retry_after_s,
    run_fetch,
)
from gen5dask.stages.ingest import run_ingest
from gen5dask.store import fitsio as F
from gen5dask.store import read_samples, validate
from tests.loopback import LoopbackServer
from tests.store.fitsfactory import catalog_frame, cutout_arrays, ingest_config

SIZE = 16


def service_fits(seed: int, *, nan: bool = False) -> bytes:
    """What the Legacy Surveys viewer returns: cube + BANDS in HDU 0, invvar cube in HDU 1."""
    img, iv, _ = cutout_arrays(seed, size=SIZE)
    if nan:
        img[0, 3, 3] = np.nan
    prim = fits.PrimaryHDU(img)
    prim.header["BANDS"] = "grz"
    buf = io.BytesIO()
    fits.HDUList([prim, fits.ImageHDU(iv)]).writeto(buf)
    return buf.getvalue()


class Server(LoopbackServer):
    """Loopback server; behaviour chosen by the request's ra (3 decimals)."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.hits: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                key = f"{float(q['ra'][0]):.3f}"
                with outer.lock:
                    n = sum(1 for _, k in outer.hits if k == key)
                    outer.hits.append((time.monotonic(), key))
                kind = outer.behaviour.get(key, "good")
                seed = int(round(float(key) * 1000)) % 1000
                body = service_fits(seed)
                if kind == "slow":
                    time.sleep(1.0)
                elif kind == "flaky" and n == 0:
                    return self.send_error(500)
                elif kind == "busy" and n == 0:  # 503 with Retry-After: 1 s, then fine
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                elif kind == "missing":
                    return self.send_error(404)
                elif kind == "truncated":
                    body = body[:-1000]
                elif kind == "oversized":
                    body = body * 40
                elif kind == "html":
                    body = b"<html>rate limited</html>"
                elif kind == "nan":
                    body = service_fits(seed, nan=True)
                elif kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{outer.port}/x?ra=1")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("Content-Type", "application/fits")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return None

        super().__init__(Handler)

    def count(self, key=None):
        return sum(1 for _, k in self.hits if key is None or k == key)


def _setup(tmp_path, port, ras, **fetch):
    df = catalog_frame(len(ras), seed=1)
    df["ra"] = ras
    cat = tmp_path / "cat.csv"
    df.to_csv(cat, index=False)
    url = (f"http://127.0.0.1:{port}/cutout.fits?ra={{ra:.7f}}&dec={{dec:.7f}}"
           "&size={size}&bands={bands}&invvar")
    d = ingest_config(tmp_path, catalog=str(cat), cutouts=str(tmp_path / "cutouts"))
    d["fetch"] = {"catalog": str(cat), "url_template": url, "allowed_hosts": ["127.0.0.1"],
                  "rate_limit_per_s": 200.0, "backoff_s": 0.01, "timeout_s": 5.0, **fetch}
    return config_from_dict(d), df


def test_fetch_every_failure_kind(tmp_path, capsys):
    kinds = {"150.001": "good", "150.002": "slow", "150.003": "flaky", "150.004": "truncated",
             "150.005": "oversized", "150.006": "html", "150.007": "missing", "150.008": "nan",
             "150.009": "redirect"}
    ras = [float(k) for k in kinds]
    with Server({k: v for k, v in kinds.items()}) as srv:
        cfg, df = _setup(tmp_path, srv.port, ras, timeout_s=0.3, retries=1, max_bytes=60_000)
        out = run_fetch(cfg)
        assert srv.count("150.003") == 2  # 500 then success
        assert srv.count("150.007") == 1  # 404 is not retried
        assert srv.count("150.002") == 2  # timeout retried once
    assert "fetched 2 + present 0 + quarantined 7 = catalogue rows 9" in capsys.readouterr().out
    q = pd.read_csv(out / QUARANTINE)
    got = dict(zip(q["row"], q["reason"], strict=True))
    assert got == {1: F.TIMEOUT, 3: F.TRUNCATED, 4: F.TOO_LARGE, 5: F.NOT_FITS,
                   6: F.DOWNLOAD_FAILED, 7: F.NON_FINITE, 8: F.DOWNLOAD_FAILED}
    assert "allowed_hosts" in q.loc[q.row == 8, "detail"].item()
    files = sorted(p.name for p in out.glob("*.fits"))
    assert files == sorted(f"{df['id'][i]}.fits" for i in (0, 2))
    assert not list(out.glob(".*.tmp"))
    with fits.open(out / f"{df['id'][0]}.fits") as h:  # converted to the ingest format
        assert h[0].header["BANDS"] == "grz" and h["INVVAR"].data.shape == (3, SIZE, SIZE)
        img, iv, _ = cutout_arrays(1, size=SIZE)
        np.testing.assert_array_equal(h[0].data, img)
        np.testing.assert_array_equal(h["INVVAR"].data, iv)


def test_rate_limit_respected():
    lim = RateLimiter(20.0)
    t = []
    threads = [threading.Thread(target=lambda: (lim.wait(), t.append(time.monotonic())))
               for _ in range(9)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert max(t) - min(t) >= 8 / 20.0 * 0.95


def test_fetch_rate_resume_and_ingest(tmp_path, capsys):
    ras = [150.0 + 0.001 * k for k in range(1, 9)]
    with Server({}) as srv:
        cfg, df = _setup(tmp_path, srv.port, ras, rate_limit_per_s=10.0, concurrency=4)
        out = run_fetch(cfg)
        stamps = sorted(t for t, _ in srv.hits)
        assert len(stamps) == 8
        assert stamps[-1] - stamps[0] >= 7 / 10.0 * 0.9  # <= 10 request starts per second
        # resume: delete two files, corrupt one -> exactly those three are fetched again
        (out / f"{df['id'][1]}.fits").unlink()
        (out / f"{df['id'][4]}.fits").unlink()
        (out / f"{df['id'][6]}.fits").write_bytes(b"SIMPLE  = junk")
        srv.hits.clear()
        run_fetch(cfg)
        assert sorted(k for _, k in srv.hits) == [f"{ras[i]:.3f}" for i in (1, 4, 6)]
    assert "fetched 3 + present 5 + quarantined 0 = catalogue rows 8" in capsys.readouterr().out
    # what fetch wrote, ingest reads
    store = run_ingest(cfg)
    assert validate(store) == []
    img = read_samples(store, slice(0, 8), ["image"])["image"]
    want, _, _ = cutout_arrays(int(round(ras[2] * 1000)) % 1000, size=SIZE)
    np.testing.assert_array_equal(img[2], want)


def test_hosts_and_schemes_refused(tmp_path):
    with pytest.raises(PermissionError, match="allowed_hosts"):
        check_url("https://evil.example.com/x.fits", ["www.legacysurvey.org"])
    with pytest.raises(PermissionError, match="scheme"):
        check_url("file:///etc/passwd", ["www.legacysurvey.org"])
    cfg, _ = _setup(tmp_path, 1, [150.0])
    cfg.fetch.allowed_hosts = ["www.legacysurvey.org"]
    with pytest.raises(PermissionError, match="127.0.0.1"):
        run_fetch(cfg)
    with pytest.raises(ValueError, match="url_template"):
        config_from_dict({"fetch": {"url_template": "https://x/{ra.__class__}"}})


def test_retry_after_is_honoured(tmp_path, capsys):
    with Server({"150.001": "busy"}) as srv:
        cfg, _ = _setup(tmp_path, srv.port, [150.001, 150.002], retries=2, backoff_s=0.01)
        run_fetch(cfg)
        hits = [t for t, k in srv.hits if k == "150.001"]
    assert len(hits) == 2 and hits[1] - hits[0] >= 0.95  # waited the server's 1 s, not 0.01
    assert "fetched 2 + present 0 + quarantined 0" in capsys.readouterr().out


def test_retry_after_parsing():
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("7") == 7.0 and retry_after_s("99999") == 600.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0
