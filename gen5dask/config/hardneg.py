"""Config section ``hardneg``: hard-negative look-alikes (survey, vote catalogue, mining)."""

from __future__ import annotations

from pydantic import Field, model_validator

from gen5dask.config.base import Section

_SUBTYPES = ("ring_galaxy", "spiral", "merger", "edge_on")


class HardnegConfig(Section):
    """Settings of the ``hardneg`` stage.

    Sources: (a) the survey's ``hard_negative`` populations, (b) a morphology vote catalogue
    matched by id to an ingested cutout store, (c) the top-scoring non-lenses of an earlier
    model's scores table, with known lenses removed by sky cross-match (subtype ``mined``).
    """

    from_survey: bool = True
    """Take the survey store's kind ``hard_negative`` samples (source a)."""
    votes_catalog: str | None = None
    """CSV of morphology vote fractions (Galaxy Zoo DECaLS style), one row per galaxy."""
    votes_id_column: str = "id"
    """Column of ``votes_catalog`` holding the sample id in ``cutouts_store``."""
    vote_columns: dict[str, str] = Field(
        default_factory=lambda: {
            "ring_galaxy": "ring_fraction",
            "spiral": "has-spiral-arms_yes_fraction",
            "merger": "merging_merger_fraction",
            "edge_on": "disk-edge-on_yes_fraction",
        }
    )
    """Subtype -> vote-fraction column (fractions in [0, 1])."""
    vote_thresholds: dict[str, float] = Field(
        default_factory=lambda: {
            "ring_galaxy": 0.5,
            "spiral": 0.8,
            "merger": 0.5,
            "edge_on": 0.8,
        }
    )
    """Subtype -> minimum vote fraction; a galaxy over several thresholds takes the subtype
    with the largest fraction (ties: the order ring_galaxy, spiral, merger, edge_on)."""
    cutouts_store: str | None = None
    """Contract store with the cutouts of the vote catalogue's galaxies (matched by sample id)."""
    mine_from: str | None = None
    """Scores zarr of an earlier model (columns sample, store, score, label, kind)."""
    mine_top_k: int = Field(200, ge=0)
    """Number of top-scoring non-lenses mined (after removing known lenses)."""
    mine_kinds: list[str] = Field(default_factory=lambda: ["host", "control"])
    """Kinds eligible for mining (label 0 only)."""
    mine_exclude_radius_arcsec: float = Field(3.0, ge=0.0)
    """Mined candidates within this distance (arcsec) of a known lens (anchor) are dropped."""
    eval_fraction: float = Field(0.3, ge=0.0, le=1.0)
    """Fraction of hard negatives (keyed by (seed, "hardneg", sample id)) in the evaluation
    slice (``eval_only = 1``): never used for training or model selection."""
    train_mix_fraction: float = Field(0.15, ge=0.10, le=0.20)
    """Fraction of training negatives drawn from the training slice of hard negatives (read by
    the trainer); allowed 0.10-0.20."""

    @model_validator(mode="after")
    def _check(self):
        for name, keys in (("vote_columns", self.vote_columns),
                           ("vote_thresholds", self.vote_thresholds)):
            bad = sorted(set(keys) - set(_SUBTYPES))
            if bad:
                msg = f"hardneg.{name}: unknown subtype(s) {bad}; allowed {list(_SUBTYPES)}"
                raise ValueError(msg)
        missing = sorted(set(self.vote_columns) - set(self.vote_thresholds))
        if missing:
            msg = f"hardneg.vote_thresholds: no threshold for subtype(s) {missing}"
            raise ValueError(msg)
        if self.votes_catalog is not None and self.cutouts_store is None:
            msg = "hardneg.votes_catalog is set but hardneg.cutouts_store is not"
            raise ValueError(msg)
        return self
