"""Config section `inject`."""

from __future__ import annotations

from gen5dask.config.base import Section


class InjectConfig(Section):
    """Settings of the `inject` stage."""
