"""Config section `calibrate`."""

from __future__ import annotations

from gen5dask.config.base import Section


class CalibrateConfig(Section):
    """Settings of the `calibrate` stage."""
