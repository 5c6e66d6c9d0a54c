"""Config section `split`."""

from __future__ import annotations

from gen5dask.config.base import Section


class SplitConfig(Section):
    """Settings of the `split` stage."""
