"""``gen5dask fetch``: download DR10 grz cutouts (with inverse variance) for a catalogue.

Standard library only (``urllib.request``) on a thread pool: the work is network-bound, so the
Dask client is not used. Each row's file lands in the layout ``ingest`` reads
(``<out_dir>/<pattern>``, default ``{id}.fits``), converted to the ingest cutout format
(primary cube + ``BANDS`` header, ``INVVAR`` extension). A download is accepted only after
validation (FITS, shape, finite pixels) and is written to a temporary file then renamed, so a
killed run never leaves a half file; a rerun fetches only rows whose file is missing or invalid.
Only ``allowed_hosts`` are contacted, also across redirects. Failures go to
``<out_dir>/fetch.quarantine.csv`` (id, source, reason, detail, row).

Retries (``fetch.retries``) wait ``backoff_s * 2^attempt`` seconds with full jitter (a uniform
draw up to that, so many clients do not retry in lock step), or the server's ``Retry-After``
when it sends one (429/503), capped at 10 minutes -- the policy of urllib3's ``Retry``. It is
written out here rather than taken from urllib3 because the redirect host check must see every
hop, which urllib's handler chain gives without another dependency.
"""

from __future__ import annotations

import email.utils
import io
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from gen5dask import __version__
from gen5dask.config import Config
from gen5dask.log import get_logger, progress_bar
from gen5dask.stages.declare import stage
from gen5dask.store import fitsio
from gen5dask.store.catalogs import read_catalog
from gen5dask.store.fitsio import Rejected

QUARANTINE = "fetch.quarantine.csv"
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 600.0
log = get_logger(__name__)


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at
    :data:`MAX_RETRY_AFTER_S`; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, min(when.timestamp() - now, MAX_RETRY_AFTER_S))


class RateLimiter:
    """At most ``rate`` request starts per second over all threads (evenly spaced)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def check_url(url: str, allowed_hosts) -> None:
    """Refuse non-http(s) URLs and hosts outside ``allowed_hosts`` (``PermissionError``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        msg = f"fetch: refusing URL scheme {parts.scheme!r} ({url[:80]})"
        raise PermissionError(msg)
    if (parts.hostname or "") not in set(allowed_hosts):
        msg = f"fetch: host {parts.hostname!r} is not in fetch.allowed_hosts {list(allowed_hosts)}"
        raise PermissionError(msg)


class _Redirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, allowed_hosts):
        self.allowed = list(allowed_hosts)

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl, self.allowed)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(opener, url: str, *, timeout: float, max_bytes: int) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": f"gen5dask/{__version__}"})
    with opener.open(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise Rejected(fitsio.TOO_LARGE, f"Content-Length {length} > {max_bytes} bytes")
        body = resp.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise Rejected(fitsio.TOO_LARGE, f"response larger than {max_bytes} bytes")
    return body


def convert_response(
    body: bytes, *, bands, size: int, label: str, pixscale: float = 0.262
) -> fitsio.Cutout:
    """Validate a cutout-service response and return it in the ingest format.

    The service returns the image cube in the primary HDU (``BANDS`` header; assumed to be the
    requested ``bands`` when absent) and, with ``&invvar``, the inverse-variance cube in HDU 1
    (any name; renamed ``INVVAR`` on write).
    """
    if not body:
        raise Rejected(fitsio.EMPTY_FILE, f"{label}: empty response")
    fitsio.check_magic(body[:9], label, len(body))
    with fitsio.open_fits(io.BytesIO(body), name=label) as hdul:
        hdr = hdul[0].header
        if fitsio.header_bands(hdr) is None:
            hdr["BANDS"] = "".join(bands)
        if len(hdul) > 1 and hdul[1].data is not None and hdul[1].name.upper() != "INVVAR":
            hdul[1].name = "INVVAR"
        buf = io.BytesIO()
        hdul.writeto(buf)
    return fitsio.read_cutout(
        label, bands=tuple(bands), stamp_size=size, max_bytes=len(body) + 1,
        pixscale=pixscale, source=io.BytesIO(buf.getvalue()),
    )


def _fetch_one(row: dict, ctx: dict) -> tuple[str, str, str]:
    """Download, validate and write one cutout -> ``(status, reason, detail)``."""
    url = row["url"]
    label = url
    last: tuple[str, str] = (fitsio.DOWNLOAD_FAILED, "no attempt")
    wait_s: float | None = None  # the server's Retry-After, when it sent one
    for attempt in range(ctx["retries"] + 1):
        if attempt:
            cap = ctx["backoff_s"] * 2 ** (attempt - 1)
            delay = wait_s if wait_s is not None else random.uniform(0.0, cap)  # full jitter
            log.debug("fetch: retry %d of %s in %.2f s (%s)", attempt, url, delay, last[1])
            time.sleep(delay)
            wait_s = None
        ctx["limiter"].wait()
        ctx["counter"].append(time.monotonic())
        try:
            body = _download(
                ctx["opener"], url, timeout=ctx["timeout_s"], max_bytes=ctx["max_bytes"]
            )
            cut = convert_response(body, bands=ctx["bands"], size=ctx["size"], label=label,
                                   pixscale=ctx["pixscale"])
        except Rejected as exc:  # a bad file: retrying will not fix it
            return "quarantined", exc.reason, exc.detail
        except PermissionError as exc:  # redirect to a host that is not allowed
            return "quarantined", fitsio.DOWNLOAD_FAILED, str(exc)
        except urllib.error.HTTPError as exc:
            last = (fitsio.DOWNLOAD_FAILED, f"HTTP {exc.code} {exc.reason}")
            if exc.code not in RETRY_STATUS:
                break
            wait_s = retry_after_s(exc.headers.get("Retry-After") if exc.headers else None)
            continue
        except TimeoutError as exc:
            last = (fitsio.TIMEOUT, f"no answer within {ctx['timeout_s']} s ({exc})")
            continue
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                last = (fitsio.TIMEOUT, f"no answer within {ctx['timeout_s']} s")
            else:
                last = (fitsio.DOWNLOAD_FAILED, f"{exc.reason}")
            continue
        except (ConnectionError, OSError) as exc:
            last = (fitsio.DOWNLOAD_FAILED, f"{type(exc).__name__}: {exc}")
            continue
        fitsio.write_cutout(row["path"], cut.image, bands=ctx["bands"], invvar=cut.invvar)
        return "fetched", "", ""
    return "quarantined", last[0], f"{last[1]} after {attempt + 1} attempt(s)"


@stage(
    "fetch",
    reads=("fetch", "ingest", "seed", "bands", "stamp_size", "pixscale", "chunk_size"),
)
def run_fetch(cfg: Config, client=None, *, force: bool = False) -> Path:
    """Download the cutouts of ``cfg.fetch.catalog`` into ``out_dir``; returns ``out_dir``.

    Rows whose file already exists and validates are skipped (``force`` re-downloads all).
    ``client`` is accepted for the stage interface and not used (threads do network I/O).
    Prints ``fetched F + present P + quarantined Q = catalogue rows R``.
    """
    del client
    fc = cfg.fetch
    if fc.catalog is None:
        msg = "fetch.catalog is not set (a CSV/FITS/Parquet catalogue with id, ra, dec)"
        raise ValueError(msg)
    out_dir = Path(fc.out_dir or cfg.ingest.cutouts or (cfg.layout.root / "cutouts"))
    out_dir.mkdir(parents=True, exist_ok=True)
    roots = fitsio.resolve_roots([out_dir])
    size = int(fc.size or cfg.stamp_size)
    bands = list(cfg.bands)
    fields = {"size": size, "pixscale": cfg.pixscale, "bands": "".join(bands)}
    check_url(fc.url_template.format(ra=0.0, dec=0.0, **fields), fc.allowed_hosts)
    cat = read_catalog(fc.catalog, columns=fc.columns, bands=bands, require_psf=False)

    status = np.full(cat.n_rows, "", dtype=object)
    reason = cat.reason.copy()
    detail = cat.detail.copy()
    source = np.full(cat.n_rows, str(fc.catalog), dtype=object)
    todo = []
    for r in np.flatnonzero(cat.ok):
        names = {"id": str(cat.ids[r]), "sample": int(cat.sample[r]),
                 "brickname": str(cat.brickname[r]), "row": int(r)}
        path = out_dir / fc.pattern.format(**names)
        url = fc.url_template.format(ra=float(cat.ra[r]), dec=float(cat.dec[r]), **fields)
        source[r] = url
        try:
            path = fitsio.resolve_within(path, roots)
        except Rejected as exc:
            reason[r], detail[r] = exc.reason, exc.detail
            continue
        if not force and path.exists():
            try:
                fitsio.read_cutout(path, bands=tuple(bands), stamp_size=size,
                                   max_bytes=fc.max_bytes, pixscale=cfg.pixscale)
                status[r] = "present"
                continue
            except Rejected:
                pass  # invalid leftover: fetch again
        todo.append({"row": int(r), "url": url, "path": path})

    opener = urllib.request.build_opener(_Redirects(fc.allowed_hosts))
    ctx = {
        "opener": opener,
        "limiter": RateLimiter(fc.rate_limit_per_s),
        "counter": [],
        "timeout_s": fc.timeout_s,
        "retries": fc.retries,
        "backoff_s": fc.backoff_s,
        "max_bytes": fc.max_bytes,
        "bands": bands,
        "size": size,
        "pixscale": cfg.pixscale,
    }
    log.info("fetch: %d to download, %d present (of %d catalogue rows)", len(todo),
             int((status == "present").sum()), cat.n_rows)
    with (
        ThreadPoolExecutor(max_workers=fc.concurrency) as pool,
        progress_bar(total=len(todo), desc="fetch", unit="cutout",
                     disable=not cfg.cluster.progress) as bar,
    ):
        results = []
        for res in pool.map(lambda row: _fetch_one(row, ctx), todo):
            results.append(res)
            bar.update(1)
    for row, (st, rsn, det) in zip(todo, results, strict=True):
        r = row["row"]
        status[r] = st
        if rsn:
            reason[r], detail[r] = rsn, det
    quarantined = reason != ""
    status[quarantined] = "quarantined"
    q = pd.DataFrame({
        "id": cat.ids[quarantined],
        "source": source[quarantined],
        "reason": reason[quarantined],
        "detail": detail[quarantined],
        "row": np.flatnonzero(quarantined),
    })
    qpath = out_dir / QUARANTINE
    tmp = qpath.with_name(f".{qpath.name}.{os.getpid()}.tmp")
    q.to_csv(tmp, index=False)
    os.replace(tmp, qpath)
    n_f = int((status == "fetched").sum())
    n_p = int((status == "present").sum())
    n_q = int(quarantined.sum())
    if n_f + n_p + n_q != cat.n_rows:
        msg = f"fetch accounting broken: {n_f} + {n_p} + {n_q} != {cat.n_rows}"
        raise RuntimeError(msg)
    print(
        f"fetch: fetched {n_f} + present {n_p} + quarantined {n_q} = catalogue rows {cat.n_rows}"
        f" ({len(ctx['counter'])} requests)"
    )
    return out_dir


__all__ = ["MAX_RETRY_AFTER_S", "RateLimiter", "check_url", "convert_response", "retry_after_s",
           "run_fetch"]
