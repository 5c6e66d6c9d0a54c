"""Config section `simulate`."""

from __future__ import annotations

from gen5dask.config.base import Section


class SimulateConfig(Section):
    """Settings of the `simulate` stage."""
