"""Config section `train`."""

from __future__ import annotations

from gen5dask.config.base import Section


class TrainConfig(Section):
    """Settings of the `train` stage."""
