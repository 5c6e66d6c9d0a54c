"""Config section ``gates``: automatic checks that block ``train`` (DESIGN §8)."""

from __future__ import annotations

from pydantic import Field

from gen5dask.config.base import Section


class GatesConfig(Section):
    """Gate thresholds and explicit overrides."""

    override: list[str] = Field(default_factory=list)
    """Names of blocking gates allowed to fail (recorded in provenance), e.g. ``[null_injection]``."""
