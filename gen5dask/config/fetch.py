"""Config section `fetch`."""

from __future__ import annotations

from gen5dask.config.base import Section


class FetchConfig(Section):
    """Settings of the `fetch` stage."""
