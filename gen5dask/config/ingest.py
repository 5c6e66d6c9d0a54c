"""Config section `ingest`."""

from __future__ import annotations

from gen5dask.config.base import Section


class IngestConfig(Section):
    """Settings of the `ingest` stage."""
