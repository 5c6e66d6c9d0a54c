"""Data files shipped with gen5dask.

``lenscat_catalog.csv.gz``: an unmodified copy of the lenscat catalogue of known strong lenses
(the CSV of the lenscat 1.1.3 wheel, gzip-compressed), MIT licence (``LICENSE.lenscat``); its
version, checksum and citation are in ``lenscat_catalog.json`` (:func:`lenscat_info`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

LENSCAT_FILE = "lenscat_catalog.csv.gz"
LENSCAT_INFO_FILE = "lenscat_catalog.json"


def data_path(name: str) -> Path:
    """Path of a shipped data file (an installed package's files are plain files on disk)."""
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.exists():
        msg = f"gen5dask data file {path} is missing (broken install?)"
        raise FileNotFoundError(msg)
    return path


def lenscat_csv() -> Path:
    """Path of the bundled lenscat catalogue (gzip CSV; ``pandas.read_csv`` reads it as is)."""
    return data_path(LENSCAT_FILE)


def lenscat_info() -> dict:
    """Version, licence, checksum and citation of the bundled lenscat catalogue."""
    return json.loads(data_path(LENSCAT_INFO_FILE).read_text())


__all__ = ["LENSCAT_FILE", "LENSCAT_INFO_FILE", "data_path", "lenscat_csv", "lenscat_info"]
