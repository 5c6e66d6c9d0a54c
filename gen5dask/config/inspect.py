"""Config section ``inspect``: the anchor gallery for visual grading (plan Priority 2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gen5dask.config.base import Section


class InspectConfig(Section):
    """Settings of the ``inspect`` stage (``inspect/gallery.html``)."""

    max_items: int = Field(500, ge=1)
    """Most objects shown with pixels (after ``sort_by``); the rest are listed without stamps."""
    scale: int = Field(4, ge=1, le=16)
    """Nearest-neighbour upscaling of every stamp PNG (screen pixels per 0.262" pixel)."""
    sort_by: Literal["visibility", "tier", "name"] = "visibility"
    """Gallery order: arc visibility proxy (descending, NaN last), tier (A, B, secondary, stress;
    then visibility) or name."""
    kinds: list[Literal["anchor", "stress"]] = Field(default_factory=lambda: ["anchor", "stress"])
    """Which anchor kinds to show (``anchors.csv`` ``kind``)."""
    stretch: Literal["legacysurvey", "lupton"] = "legacysurvey"
    """Colour stretch of the composites: the Legacy Surveys viewer's asinh (default) or Lupton."""
    q: float = Field(20.0, gt=0)
    """Asinh softening ``Q`` of the colour stretch, dimensionless (viewer: 20)."""
    residual_nsigma: float = Field(5.0, gt=0)
    """Grey-scale range of the residual stamps: +- this many outer-pixel robust sigmas."""
