"""Config section `inspect`."""

from __future__ import annotations

from gen5dask.config.base import Section


class InspectConfig(Section):
    """Settings of the `inspect` stage."""
