"""Config section `anchors`."""

from __future__ import annotations

from gen5dask.config.base import Section


class AnchorsConfig(Section):
    """Settings of the `anchors` stage."""
