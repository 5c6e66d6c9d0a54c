"""Config section ``gates``: automatic checks that block ``train`` (DESIGN §8)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gen5dask.config.base import Section


class GatesConfig(Section):
    """Gate thresholds, which gates block, and explicit overrides."""

    override: list[str] = Field(default_factory=list)
    """Names of blocking gates allowed to fail (recorded in provenance), e.g.
    ``[null_injection]``."""
    non_blocking: list[str] = Field(default_factory=list)
    """Gates that are evaluated and reported but never block ``train``."""
    anchor_max_sep_arcsec: float = Field(2.0, gt=0.0)
    """An accepted anchor farther than this (arcsec) from its reference entry fails
    ``anchor_coordinates``."""
    psf_centroid_tol_pix: float = Field(0.01, gt=0.0)
    """Largest allowed centroid shift of a convolved centred point source, pixels."""
    psf_flux_tol: float = Field(1e-4, gt=0.0)
    """Largest allowed relative flux change of a convolved point source (fraction)."""
    psf_test_fwhm_pix: list[float] = Field(default_factory=lambda: [2.0, 4.6, 7.0])
    """Moffat FWHMs (pixels) of the PSF self-test."""
    core_only_max_auc: float = Field(0.75, gt=0.5, le=1.0)
    """Largest allowed AUC of the core-only logistic regression (injections vs controls)."""
    core_only_mode: Literal["calibrated", "uncalibrated"] = "calibrated"
    """Injection brightness mode the ``core_only_auc`` gate judges (the remediated arm's)."""
    leakage_max_auc_dev: float = Field(0.1, gt=0.0, le=0.5)
    """A metadata column whose single-column AUC for the label has |AUC - 0.5| above this is
    flagged by ``metadata_leakage``."""
    class_balance_max_cliffs_delta: float = Field(0.2, gt=0.0, le=1.0)
    """Largest allowed |Cliff's delta| between classes of mask fractions, invvar and observing
    conditions (``class_balance_conditions``)."""
    bandset_max_missing_frac: float = Field(0.0, ge=0.0, le=1.0)
    """Largest allowed fraction of samples with a band without data (all invvar 0)."""
