"""Config section ``ingest``: real cutouts / DR10 coadd bricks + a catalogue -> a host store."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gen5dask.config.base import Section

#: Placeholders a cutout file pattern may use (plain names only: no attribute or index access).
PATTERN_FIELDS = frozenset({"id", "sample", "brickname", "row"})


def check_pattern(pattern: str, *, key: str = "ingest.pattern") -> str:
    """Validate a file-name pattern: only ``{id}``, ``{sample}``, ``{brickname}``, ``{row}``.

    Attribute access (``{id.__class__}``), indexing, conversions and format specs are refused,
    so a pattern cannot reach into Python objects.
    """
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        msg = f"{key}: invalid pattern {pattern!r}: {exc}"
        raise ValueError(msg) from None
    names = [name for _, name, spec, conv in parsed if name is not None]
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in PATTERN_FIELDS or spec or conv:
            msg = (
                f"{key}: placeholder {{{name}{'!' + conv if conv else ''}"
                f"{':' + spec if spec else ''}}} not allowed; use plain "
                f"{sorted(PATTERN_FIELDS)}"
            )
            raise ValueError(msg)
    if not names:
        msg = f"{key}: pattern {pattern!r} has no placeholder; every row would read one file"
        raise ValueError(msg)
    return pattern


class CatalogColumns(Section):
    """Logical -> catalogue column names (case-insensitive match; ``None`` = absent)."""

    id: str = "id"
    """Unique object id. Non-negative integers are used as the sample id; anything else is
    hashed to a stable 63-bit id (the string is kept in ``<out>.ids.csv``)."""
    ra: str = "ra"
    """Right ascension, degrees (ICRS)."""
    dec: str = "dec"
    """Declination, degrees (ICRS)."""
    brickname: str | None = "brickname"
    """DR10 brick name (``RRRRpDDD``); absent -> computed from ra/dec (required for bricks)."""
    psfsize: str = "psfsize_{band}"
    """PSF FWHM column per band, arcsec (``{band}`` is replaced by each of ``bands``)."""
    psfdepth: str | None = "psfdepth_{band}"
    """PSF depth column per band (units: ``ingest.psfdepth_units``); ``None`` -> NaN."""
    mag_r: str | None = None
    """Host r magnitude (AB); used when set, else ``flux_r``."""
    flux_r: str | None = "flux_r"
    """Host r flux, nanomaggies (Tractor ``flux_r``) -> ``host_mag_r``; ``None`` -> NaN."""


class IngestConfig(Section):
    """Settings of the ``ingest`` stage (FITS cutouts or DR10 coadd bricks -> ``hosts.zarr``)."""

    catalog: str | None = None
    """Catalogue file (``.csv``, ``.fits``/``.fit``/``.fits.gz``, ``.parquet``, ``.ecsv``)."""
    columns: CatalogColumns = Field(default_factory=CatalogColumns)
    """Catalogue column names (defaults: DR10 Tractor names)."""
    psfdepth_units: Literal["ivar", "mag"] = "ivar"
    """``ivar``: Tractor ``psfdepth`` (nanomaggies^-2, converted to 5-sigma AB mag);
    ``mag``: already 5-sigma AB mag."""
    cutouts: str | None = None
    """Directory of per-object FITS cutouts (Legacy Surveys cutout format). Exclusive with
    ``bricks``."""
    pattern: str = "{id}.fits"
    """Cutout file name under ``cutouts`` (placeholders ``{id}``, ``{sample}``, ``{brickname}``,
    ``{row}``; may contain sub-directories)."""
    bricks: str | None = None
    """Directory of DR10 coadd bricks (``<brick>/`` or the DR10 tree ``coadd/<RRR>/<brick>/``)."""
    stamp_size: int | None = Field(None, gt=7)
    """Stamp side, pixels (default: top-level ``stamp_size``). Larger cutouts are cropped about
    pixel (H//2, W//2); smaller ones are quarantined."""
    out: str | None = None
    """Output store (default: ``<output_dir>/hosts.zarr``). Side files: ``<stem>.quarantine.csv``,
    ``<stem>.ids.csv`` and (while running) ``<stem>.staging/``."""
    kind: Literal[
        "host", "control", "anchor", "stress", "hard_negative", "ring", "injection",
        "null_injection",
    ] = "host"
    """``kind`` of every ingested sample."""
    label: Literal[0, 1] | None = None
    """``label`` of every sample (default: 1 for anchor/stress/injection, else 0)."""
    partial_overlap: Literal["flag", "reject"] = "flag"
    """Brick stamps that run off the brick: ``flag`` (invvar 0 and maskbits NPRIMARY outside,
    quality ``partial_overlap``) or ``reject`` (quarantined)."""
    missing_invvar: Literal["quarantine", "psfdepth"] = "quarantine"
    """Cutout without an INVVAR extension: ``quarantine`` it, or derive a constant per-band
    inverse variance from ``psfdepth`` and ``psfsize`` (Gaussian-PSF noise-equivalent area;
    quality ``invvar_from_psfdepth``)."""
    roots: list[str] = Field(default_factory=list)
    """Allowed root directories for every file read. Empty -> the ``cutouts``/``bricks``
    directory. Paths that resolve (symlinks followed) outside every root are quarantined."""
    max_file_mb: float = Field(200.0, gt=0)
    """Larger input files are quarantined (MiB)."""
    pixscale_tolerance: float = Field(0.01, gt=0)
    """Relative tolerance on a file's WCS pixel scale versus the top-level ``pixscale``."""

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return check_pattern(v)

    @model_validator(mode="after")
    def _one_source(self):
        if self.cutouts is not None and self.bricks is not None:
            msg = "ingest: set either 'cutouts' or 'bricks', not both"
            raise ValueError(msg)
        return self
