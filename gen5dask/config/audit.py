"""Config section `audit`."""

from __future__ import annotations

from gen5dask.config.base import Section


class AuditConfig(Section):
    """Settings of the `audit` stage."""
