"""PyTorch training and scoring: streaming Zarr dataset, augmentation, models, trainer, DDP.

Import submodules directly (``gen5dask.train.dataset`` etc.); torch loads only when they do.
"""

__all__ = ["augment", "dataset", "distributed", "models", "scoring", "trainer"]
