"""Config section ``anchors``: the Tier-A anchor set (plan Priority 2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gen5dask.config.base import Section


class AnchorSource(Section):
    """One anchor catalogue: the lenscat catalogue or a user CSV/FITS/Parquet list."""

    kind: Literal["lenscat", "table"] = "table"
    """``lenscat``: the lenscat catalogue (see ``lenscat_copy``); ``table``: the file ``path``."""
    lenscat_copy: Literal["bundled", "package"] = "bundled"
    """lenscat: ``bundled`` = the copy shipped with gen5dask (lenscat 1.1.3, MIT); ``package`` =
    the newer CSV of an installed ``lenscat`` package (``pip install 'gen5dask[catalogs]'``)."""
    name: str = ""
    """Label recorded in provenance (default: the file name or ``lenscat``)."""
    path: str | None = None
    """CSV, FITS or Parquet file for ``kind: table``; ``{output_dir}`` is substituted."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Logical -> file column names for id, name, ra, dec, grade, theta_e, z_lens, z_source."""
    coordinates_typed: bool = True
    """Coordinates come from a list (hand-typed or copied): validate them against the reference."""
    gradings: list[str] = Field(default_factory=lambda: ["confident", "probable"])
    """lenscat: keep these gradings."""
    types: list[str] = Field(default_factory=lambda: ["galaxy"])
    """lenscat: keep these lens types (galaxy / group / cluster)."""
    ref_include: list[str] = Field(default_factory=list)
    """lenscat: keep rows whose reference contains any of these strings (empty = all)."""
    ref_exclude: list[str] = Field(default_factory=lambda: ["Lopes et al. (2004)"])
    """lenscat: drop rows whose reference contains any of these (Lopes 2004 is a cluster list)."""
    region: tuple[float, float, float, float] | None = None
    """Optional RA/Dec box ``[ra_min, ra_max, dec_min, dec_max]`` (deg) to keep."""


class AnchorsConfig(Section):
    """Settings of the ``anchors`` and ``inspect`` stages."""

    catalogs: list[AnchorSource] = Field(
        default_factory=lambda: [
            AnchorSource(kind="table", name="mock-list", path="{output_dir}/mock/anchor_list.csv")
        ]
    )
    """Anchor sources, merged and de-duplicated by sky cross-match. A bare path (``[list.csv]``
    or ``--set anchors.catalogs=[list.csv]``) means ``{kind: table, path: list.csv}``."""
    reference: str = "lenscat"
    """Reference catalogue for coordinate validation: ``lenscat`` (the bundled copy),
    ``lenscat-package`` (an installed lenscat package's copy), ``none`` or a table path."""
    tolerance_arcsec: float = Field(2.0, gt=0)
    """Maximum separation from the reference entry and for de-duplication, arcsec."""
    cutouts: str | None = None
    """Cutout store of the anchors (default: the mock survey store ``survey.zarr``)."""
    match_cutouts_by: Literal["id", "position"] = "id"
    """Find each anchor's cutout by its ``id`` column or by position (within tolerance)."""
    include_survey_stress: bool = True
    """Also take the cutout store's ``stress`` population (SLACS/BELLS-like) as the stress set."""
    centre_snr_min: float = Field(3.0, gt=0)
    """Minimum r-band S/N within ``centre_radius_pix`` for "a source at the centre" (empty sky
    gives S/N ~ N(0, 1), so 3 accepts an empty cutout with probability ~0.1 %)."""
    centre_radius_pix: float = Field(6.0, gt=0)
    """Aperture radius for the centre-source check, pixels."""
    min_anchors: int = Field(50, ge=0)
    """Minimum Tier-A sample size for paper-grade claims (plan: n >= 50)."""
    min_action: Literal["warn", "fail"] = "warn"
    """What happens below ``min_anchors``."""
    desi_native_refs: list[str] = Field(
        default_factory=lambda: ["Huang et al.", "Storfer et al.", "Jacobs et al. (2019)"]
    )
    """References counted as DESI Legacy Surveys native searches (Tier-A when confident)."""
    stress_refs: list[str] = Field(default_factory=lambda: ["Bolton", "Auger", "Brownstein", "Shu"])
    """References of SLACS / BELLS (spectroscopic) lenses: the separate stress set."""
    secondary_refs: list[str] = Field(
        default_factory=lambda: [
            "Sonnenfeld",
            "Wong et al.",
            "Chan et al.",
            "Jaelani",
            "Diehl",
            "Rojas",
            "Zaborowski",
            "Jacobs et al. (2017)",
            "Canameras",
        ]
    )
    """Cross-survey searches (SuGOHI, DES, ...) kept apart as tier ``secondary``."""
    visual_grades: str | None = None
    """CSV exported from the ``inspect`` gallery (name, grade in A/B/C/not_a_lens)."""

    @field_validator("catalogs", mode="before")
    @classmethod
    def _bare_paths_are_tables(cls, value):
        """``path`` or ``[path, {...}]``: a bare string is a table source with that path."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return [{"kind": "table", "path": v} if isinstance(v, str) else v for v in value]
        return value
