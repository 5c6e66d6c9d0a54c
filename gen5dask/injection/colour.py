"""The one colour law of lensed sources (injections and the mock survey's lensed populations).

A source is described by its r-band flux and two colours (AB mag): ``g = r + gr``,
``z = r - rz``, and ``i = r - rz / 2`` (interpolated between r and z). Fluxes are nanomaggies
(AB zero point 22.5).
"""

from __future__ import annotations

import numpy as np

from gen5dask import ZEROPOINT_AB

#: magnitude offset of each band from r, as (coefficient of gr, coefficient of rz).
BAND_OFFSETS: dict[str, tuple[float, float]] = {
    "g": (1.0, 0.0),
    "r": (0.0, 0.0),
    "i": (0.0, -0.5),
    "z": (0.0, -1.0),
}


def colour_factors(bands, src_gr, src_rz) -> np.ndarray:
    """Flux per band relative to r, ``(n, nband)`` float64 (``10**(-0.4 (m_b - m_r))``)."""
    gr = np.atleast_1d(np.asarray(src_gr, dtype=np.float64))
    rz = np.atleast_1d(np.asarray(src_rz, dtype=np.float64))
    out = np.empty((gr.shape[0], len(bands)), dtype=np.float64)
    for j, b in enumerate(bands):
        if b not in BAND_OFFSETS:
            msg = f"no source colour law for band {b!r} (supported: {', '.join(BAND_OFFSETS)})"
            raise ValueError(msg)
        cg, cz = BAND_OFFSETS[b]
        if b == "r":
            out[:, j] = 1.0
        elif cz == 0.0:
            out[:, j] = 10.0 ** (-0.4 * (cg * gr))
        else:
            out[:, j] = 10.0 ** (-0.4 * (cz * rz))
    return out


def mag_to_flux(mag) -> np.ndarray:
    """AB magnitude -> nanomaggies (zero point 22.5)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - ZEROPOINT_AB))


def flux_to_mag(flux) -> np.ndarray:
    """Nanomaggies -> AB magnitude (``inf`` for 0, ``-inf`` for ``inf``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return ZEROPOINT_AB - 2.5 * np.log10(np.asarray(flux, dtype=np.float64))


__all__ = ["BAND_OFFSETS", "colour_factors", "flux_to_mag", "mag_to_flux"]
