"""Config section ``fetch``: download Legacy Surveys DR10 cutouts for a catalogue."""

from __future__ import annotations

from pydantic import Field, field_validator

from gen5dask.config.base import Section
from gen5dask.config.ingest import CatalogColumns, check_pattern

DEFAULT_URL = (
    "https://www.legacysurvey.org/viewer/cutout.fits?ra={ra:.7f}&dec={dec:.7f}"
    "&layer=ls-dr10&pixscale={pixscale}&bands={bands}&size={size}&invvar"
)


class FetchConfig(Section):
    """Settings of the ``fetch`` stage (stdlib HTTP client, threads, no Dask)."""

    catalog: str | None = None
    """Catalogue (same formats and ``columns`` as ``ingest``; only id, ra, dec are needed)."""
    columns: CatalogColumns = Field(default_factory=CatalogColumns)
    """Catalogue column names."""
    url_template: str = DEFAULT_URL
    """Request URL; placeholders ``{ra}``, ``{dec}`` (degrees), ``{size}`` (pixels),
    ``{pixscale}`` (arcsec/pixel), ``{bands}`` (e.g. ``grz``). The Legacy Surveys viewer returns
    the image cube in the primary HDU and, with ``&invvar``, the inverse variance in HDU 1."""
    allowed_hosts: list[str] = Field(default_factory=lambda: ["www.legacysurvey.org"])
    """Hosts that may be contacted (also for redirects); any other host is refused."""
    out_dir: str | None = None
    """Cutout directory (default: ``ingest.cutouts``, else ``<output_dir>/cutouts``)."""
    pattern: str = "{id}.fits"
    """File name under ``out_dir`` (same placeholders as ``ingest.pattern``)."""
    size: int | None = Field(None, gt=7)
    """Cutout side requested, pixels (default: top-level ``stamp_size``)."""
    concurrency: int = Field(4, ge=1, le=64)
    """Simultaneous downloads (threads)."""
    rate_limit_per_s: float = Field(3.0, gt=0)
    """Maximum request starts per second, over all threads (be kind to the service)."""
    timeout_s: float = Field(60.0, gt=0)
    """Socket timeout of one request, seconds."""
    retries: int = Field(3, ge=0)
    """Retries after a timeout, connection error, HTTP 429 or 5xx (not after other 4xx or an
    invalid file)."""
    backoff_s: float = Field(1.0, ge=0)
    """First retry delay, seconds; doubles on each retry."""
    max_bytes: int = Field(20_000_000, gt=0)
    """Responses larger than this are refused (bytes)."""

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return check_pattern(v, key="fetch.pattern")

    @field_validator("url_template")
    @classmethod
    def _url(cls, v: str) -> str:
        import string

        allowed = {"ra", "dec", "size", "pixscale", "bands"}
        for _, name, _spec, conv in string.Formatter().parse(v):
            if name is not None and (name not in allowed or conv):
                msg = (
                    f"fetch.url_template: placeholder {{{name}}} not allowed; "
                    f"use {sorted(allowed)}"
                )
                raise ValueError(msg)
        if not v.startswith(("https://", "http://")):
            msg = f"fetch.url_template must be an http(s) URL, got {v[:40]!r}"
            raise ValueError(msg)
        return v
