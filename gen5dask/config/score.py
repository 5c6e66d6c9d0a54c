"""Config section `score`."""

from __future__ import annotations

from gen5dask.config.base import Section


class ScoreConfig(Section):
    """Settings of the `score` stage."""
