"""Config section `report`: the self-contained HTML report."""

from __future__ import annotations

from pydantic import Field

from gen5dask.config.base import Section


class ReportConfig(Section):
    """Settings of the `report` stage."""

    title: str = "gen5dask lens-finder evaluation"
    """Title of the HTML page."""
    gallery_size: int = Field(48, ge=0)
    """Maximum number of anchors shown in the anchor gallery (highest tier first)."""
    gallery_columns: int = Field(8, ge=1)
    """Columns of the anchor gallery grid."""
    max_rejected_rows: int = Field(200, ge=0)
    """Maximum number of rejected anchors listed (the CSV has them all)."""
    figure_dpi: int = Field(90, ge=30, le=300)
    """Resolution of embedded figures (dots per inch)."""
    config_max_chars: int = Field(200_000, ge=0)
    """Longest effective-config text embedded verbatim (longer text is truncated, saying so)."""
