"""Strict pydantic base for every config section: unknown keys are errors naming the key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. Unknown or mistyped keys raise a validation error naming the key."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True
    )


__all__ = ["Section"]
