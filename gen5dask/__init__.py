"""gen5dask: train, stress-test and calibrate a strong-lens finder on a whole imaging survey.

Data live in chunked Zarr stores (opened as xarray Datasets), numba kernels do the pixel work,
Dask maps them over chunks, a PyTorch trainer streams from the stores, and the evaluation writes
metrics, plots and a report. See README.md and DESIGN.md.
"""

import os as _os

# numba's on-disk cache must live in a writable per-user directory (also on HPC workers whose
# package directory is read-only). Set before numba is imported anywhere in the package.
_os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    _os.path.join(_os.path.expanduser("~"), ".cache", "gen5dask", "numba"),
)

__version__ = "0.1.0"
PIXSCALE_ARCSEC = 0.262
ZEROPOINT_AB = 22.5
DEFAULT_BANDS = ("g", "r", "z")

__all__ = ["__version__", "PIXSCALE_ARCSEC", "ZEROPOINT_AB", "DEFAULT_BANDS"]
