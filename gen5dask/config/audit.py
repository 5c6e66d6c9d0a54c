"""Config section ``audit``: diagnostics before training (DESIGN §7-8)."""

from __future__ import annotations

from pydantic import Field

from gen5dask.config.base import Section


class AuditConfig(Section):
    """Settings of the ``audit`` stage (thresholds of the gates are in ``gates``)."""

    core_radius_pix: float = Field(10.0, gt=0.0)
    """Core-only baseline: r-band pixels with r < this (pixels) are the features."""
    core_only_max_samples: int = Field(4000, ge=20)
    """Per inject mode, at most this many injections and as many controls (keyed subsample)."""
    core_only_folds: int = Field(5, ge=2)
    """Cross-validation folds (grouped by host) when the splits cannot give a held-out AUC."""
    core_only_c: float = Field(1.0, gt=0.0)
    """Inverse L2 regularisation strength of the logistic regression."""
    brightness_radius_pix: float = Field(8.0, gt=0.0)
    """Core-brightness aperture radius, pixels (median of r-band pixels with r < this)."""
    brightness_annulus_pix: tuple[float, float] = (8.0, 16.0)
    """Annulus (r_in, r_out), pixels, for the core excess sum."""
    n_boot: int = Field(1000, ge=10)
    """Bootstrap replicates of the median-ratio interval."""
    leakage_columns: list[str] = Field(
        default_factory=lambda: [
            "psfsize_g", "psfsize_r", "psfsize_z", "psfdepth_g", "psfdepth_r", "psfdepth_z",
            "ra", "dec", "bad_pixel_frac", "wise_mask_frac", "invvar_median_g",
            "invvar_median_r", "invvar_median_z", "host_mag_r",
        ]
    )
    """Metadata columns tested one at a time for label leakage (absent ones are skipped)."""
    loader_samples: int = Field(48, ge=4)
    """Samples in the loader once-per-epoch check."""
    loader_workers: int = Field(2, ge=0)
    """DataLoader workers in the loader check."""
    figures: bool = True
    """Write audit figures (PNG) under ``audit_dir``."""
