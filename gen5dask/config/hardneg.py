"""Config section `hardneg`."""

from __future__ import annotations

from gen5dask.config.base import Section


class HardnegConfig(Section):
    """Settings of the `hardneg` stage."""
