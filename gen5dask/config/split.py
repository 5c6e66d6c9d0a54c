"""Config section ``split``: sky regions and region-disjoint train/val/test splits (DESIGN §6)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gen5dask.config.base import Section


class SplitConfig(Section):
    """Settings of the ``split`` stage.

    A region is one HEALPix cell (nested scheme; region id = NUNIQ ``4 nside^2 + ipix``, so ids
    of different resolutions never collide). The start resolution is ``nside``; it is doubled
    until at least ``min_regions`` cells are occupied, and any cell holding more than
    ``max_region_frac`` of the objects is replaced by its nested children (up to ``max_nside``).
    """

    nside: int = Field(32, ge=1, le=8192)
    """Starting HEALPix nside (power of 2); 32 gives ~1.8 deg cells (~20-30 over 10x6 deg)."""
    max_nside: int = Field(1024, ge=1, le=8192)
    """Finest nside used when refining (power of 2)."""
    min_regions: int = Field(12, ge=3)
    """Minimum number of occupied regions; nside is doubled until it is reached."""
    max_region_frac: float = Field(0.15, gt=0.0, le=1.0)
    """Cap on any region's share of objects (fraction); larger cells are split."""
    fractions: list[float] = Field(default_factory=lambda: [0.7, 0.15, 0.15])
    """Target train / val / test fractions of objects (sum 1)."""
    min_test_regions: int = Field(2, ge=2)
    """Minimum number of test-only regions."""
    min_val_regions: int = Field(1, ge=1)
    """Minimum number of validation regions."""
    n_candidates: int = Field(4000, ge=1)
    """Seeded candidate assignments scored (best kept)."""
    fraction_weight: float = Field(5.0, ge=0.0)
    """Weight of sum |achieved - target fraction| in a candidate's score."""
    ks_weight: float = Field(1.0, ge=0.0)
    """Weight of the sum of (binned) KS statistics over proxies and split pairs."""
    ks_bins: int = Field(32, ge=4, le=512)
    """Quantile bins of the binned KS used to rank candidates (exact KS is reported)."""
    proxies: list[str] = Field(
        default_factory=lambda: ["psfsize_r", "psfdepth_r", "theta_e_over_psf", "arc_snr"]
    )
    """Columns whose distributions are matched across splits (``theta_e_over_psf`` is
    theta_e / psfsize_r, dimensionless)."""
    dup_radius_arcsec: float = Field(5.0, ge=0.0)
    """Positions closer than this (arcsec) form a near-duplicate group that shares a split."""

    @field_validator("nside", "max_nside")
    @classmethod
    def _pow2(cls, v: int, info):
        if v & (v - 1):
            msg = f"split.{info.field_name} must be a power of 2, got {v}"
            raise ValueError(msg)
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]):
        if len(v) != 3 or any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            msg = (
                "split.fractions: need 3 non-negative fractions (train, val, test) summing to "
                f"1, got {v}"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _nside_order(self):
        if self.max_nside < self.nside:
            msg = f"split.max_nside ({self.max_nside}) must be >= split.nside ({self.nside})"
            raise ValueError(msg)
        return self
