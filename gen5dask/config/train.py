"""Config section ``train``: the streaming PyTorch trainer (``gen5dask train``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gen5dask.config.base import Section


class TrainConfig(Section):
    """Settings of the ``train`` stage (every ablation arm is trained with these)."""

    arms: list[str] | None = None
    """Subset of ``ablation.arms`` names to train (``None``: every arm)."""
    model: Literal["resnet_small", "resnet18"] = "resnet_small"
    """Network: ``resnet_small`` (compact, CPU-friendly) or ``resnet18`` (GPU-sized)."""
    crop: int | None = Field(None, ge=8)
    """Side, pixels, of the central crop of each stamp the network sees (``None``: the whole
    stamp). The stamp is normalised on its own outer region first (``norm_r_outer``), so the
    crop changes what the network looks at, not the noise units; the crop is part of the
    architecture stored in the model file, so scoring sees the same pixels. Costs ~crop^2 /
    stamp_size^2 of the network's compute."""
    epochs: int = Field(4, ge=1)
    """Maximum number of passes over the training selection."""
    batch_size: int = Field(128, ge=1)
    """Samples per optimiser step (per rank under DDP)."""
    eval_batch_size: int = Field(256, ge=1)
    """Samples per forward pass during validation."""
    lr: float = Field(3e-3, gt=0.0)
    """Peak learning rate of AdamW (1/step)."""
    weight_decay: float = Field(1e-4, ge=0.0)
    """AdamW decoupled weight decay."""
    schedule: Literal["cosine", "onecycle"] = "cosine"
    """Learning-rate schedule over the whole run, stepped per batch: ``cosine`` (decay from
    ``lr`` to ``lr * min_lr_frac``) or ``onecycle`` (linear warm-up over ``warmup_frac`` then
    cosine decay)."""
    warmup_frac: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction of the run used for warm-up by ``schedule: onecycle``."""
    min_lr_frac: float = Field(0.01, ge=0.0, le=1.0)
    """Final learning rate as a fraction of ``lr``."""
    selection_metric: Literal["val_auc", "val_loss"] = "val_auc"
    """Metric (on the val split) that selects the saved checkpoint and drives early stopping:
    ``val_auc`` (higher is better) or ``val_loss`` (lower is better)."""
    early_stopping_patience: int | None = Field(3, ge=1)
    """Stop after this many epochs without improvement of ``selection_metric`` (None: never)."""
    positive_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    """Target fraction of positives (injections) in the training selection; the majority class
    is subsampled deterministically (keyed by seed and sample id). ``None``: natural mix."""
    hard_negative_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    """For arms with ``hard_negatives``: target fraction of hard negatives among the training
    negatives (plan: 0.1-0.2). Excess hard negatives are subsampled deterministically; if there
    are too few, all are kept and the achieved fraction is logged (controls are never dropped)."""
    rotate_flip: bool = True
    """Apply random D4 rotations/flips about the centre pixel (training only)."""
    center_mask_prob: float = Field(1.0, ge=0.0, le=1.0)
    """For arms with ``center_mask``: probability that a training sample is masked (per sample
    and epoch, keyed)."""
    center_mask_law: Literal["uniform", "psf"] = "uniform"
    """Mask radius law: ``uniform`` U[rmin, rmax) px or ``psf`` 0.5 * psfsize_r / pixscale."""
    center_mask_rmin: float = Field(3.0, ge=0.0)
    """Lower bound of the uniform mask radius, pixels."""
    center_mask_rmax: float = Field(7.0, ge=0.0)
    """Upper bound of the uniform mask radius, pixels."""
    center_mask_annulus: tuple[float, float] | None = None
    """``(r_in, r_out)`` pixels: draw fill values only from this annulus (None: every pixel
    outside the mask)."""
    norm_r_outer: float = Field(16.0, ge=0.0)
    """Normalisation statistics use pixels with r >= this radius, pixels (stored in the model
    file so scoring uses the same value)."""
    norm_clip: float = Field(10.0, gt=0.0)
    """Normalised pixels are clipped to +-this (units of the outer-region noise)."""
    lens_light: Literal["none", "azimuthal_median"] = "none"
    """Lens-light model subtracted from every stamp before the centre mask and the
    normalisation, in training and scoring alike (stored in the model file):
    ``azimuthal_median`` shows the network ``image - median of its 1-px radial bin`` (the
    visibility proxy's model; removes the deflector's round light and the sky, keeps arcs and
    the azimuthal structure of rings), ``none`` the stamp itself."""
    metadata_columns: list[str] = Field(default_factory=list)
    """Per-sample scalars fed to the head besides the pixels, e.g. ``[psfsize_r, psfdepth_r]``
    (``read_table`` column names); standardised with the training-selection mean/std stored in
    the model file. Listed in provenance so the leakage audit sees them."""
    shuffle_buffer: int = Field(1024, ge=0)
    """Shuffle depth of the streaming loader, samples per rank: a sample comes out on average
    this many places after it arrives in the rank's permuted chunk sequence, at most 3x.
    Independent of ``num_workers``."""
    num_workers: int = Field(1, ge=0)
    """Loader worker processes per rank (0: the training process loads). Workers are persistent;
    each decodes whole store chunks into a shared-memory ring and applies the centre mask; the
    training process normalises and rotates each batch in one pass. Batches are identical for
    any number of workers."""
    loader_start_method: Literal["forkserver", "spawn"] = "forkserver"
    """How loader workers start: ``forkserver`` (fast; forks from a clean server process, never
    from the training process, whose zarr event loop or Dask client would deadlock a fork) or
    ``spawn`` (fresh interpreters; ``forkserver`` falls back to it where unavailable)."""
    norm_stats_cache: bool = True
    """Compute the per-sample normalisation statistics (outer-region median and MAD per band)
    once per store and keep them in ``models/norm_stats/`` instead of recomputing them every
    epoch; the network input is bit-identical either way."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device (``auto``: cuda if available)."""
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    """Mixed precision on CUDA (autocast; ``fp16`` also uses a GradScaler). CPU trains in fp32
    unless ``cpu_bf16``."""
    cpu_bf16: bool = False
    """bf16 autocast on CPU. Only faster on CPUs with native bf16 (AVX512-BF16 or AMX); on the
    AVX2 development machine it was slower (``scripts/bench_train.py``), hence off."""
    channels_last: bool = True
    """Channels-last memory layout for the images and the model (faster convolutions on CPU
    and on tensor-core GPUs; the loader writes this layout directly)."""
    compile: bool = False
    """``torch.compile`` the model for training (inductor; needs a C++ compiler on CPU). The
    first epoch pays the compile time; measured by ``scripts/bench_train.py``."""
    torch_threads: int | None = Field(None, ge=1)
    """torch intra-op threads for training (None: the machine's cores; loader workers use one
    thread each and mostly wait on the model)."""
    deterministic: bool = True
    """Seed everything and ask torch for deterministic algorithms (warn-only where missing)."""
    progress: bool = True
    """Show a tqdm progress bar with samples/s."""

    @model_validator(mode="after")
    def _check(self):
        if self.center_mask_rmin > self.center_mask_rmax:
            msg = (
                f"train.center_mask_rmin ({self.center_mask_rmin}) must be <= "
                f"train.center_mask_rmax ({self.center_mask_rmax})"
            )
            raise ValueError(msg)
        if self.center_mask_annulus is not None:
            r_in, r_out = self.center_mask_annulus
            if not 0.0 <= r_in < r_out:
                msg = f"train.center_mask_annulus must satisfy 0 <= r_in < r_out, got {r_in, r_out}"
                raise ValueError(msg)
        return self
