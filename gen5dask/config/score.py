"""Config section ``score``: scoring every evaluation store with each arm's model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gen5dask.config.base import Section

STORE_NAMES = ("train", "anchors", "hardneg", "survey")


class ScoreConfig(Section):
    """Settings of the ``score`` stage."""

    backend: Literal["dask", "local"] = "dask"
    """``dask``: one task per store chunk on the cluster (model cached per worker, 1 torch
    thread each); ``local``: score in this process (use with a GPU)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device of the ``local`` backend (``auto``: cuda if available); Dask workers use CPU."""
    batch_size: int = Field(256, ge=1)
    """Samples per forward pass."""
    stores: list[Literal["train", "anchors", "hardneg", "survey"]] = Field(
        default_factory=lambda: list(STORE_NAMES)
    )
    """Evaluation stores to score (missing ones are skipped with a note)."""
    survey_kinds: list[str] = Field(default_factory=lambda: ["ring"])
    """Kinds of ``survey.zarr`` rows scored (ring diagnostics by default)."""
    arms: list[str] | None = None
    """Subset of arm names to score (None: every arm of ``ablation.arms`` with a model file)."""
    torch_threads: int | None = Field(None, ge=1)
    """torch threads of the ``local`` backend (None: the machine's cores)."""
    embeddings: bool = True
    """Also write each scored row's penultimate-layer features (the model's pooled image
    features, ``LensResNet.embed``; 96 floats per row for ``resnet_small``, 512 for
    ``resnet18``) as variable ``embedding`` (dims ``row, feature``, float32) of the scores
    table, for the realism probe; read them with ``gen5dask.train.scoring.read_embeddings``.
    Costs 4 bytes x features per row in memory and on disk (turn off at catalogue scale if
    the probe is not needed)."""
