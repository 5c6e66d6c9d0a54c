"""The store contract (DESIGN §3): variable names, dims, dtypes, units and string legends.

String-valued variables (``kind``, ``split``, ``tier``, ``subtype``, ``inject_mode``,
``quality``, ``brickname``) are stored as Zarr v3 variable-length UTF-8 strings (the ``string``
data type), so plain ``xr.open_zarr`` gives strings. The legends below are the allowed values
of each coded variable: writers validate against them, and the fast numeric view
(``read_samples(..., decode=False)``) maps strings to their index in the legend (int8 codes;
``brickname`` to the exact int32 code of :func:`encode_brickname`). ``band`` is a string
coordinate. Stores of the first layout (int8 codes with a ``gen5dask_legend`` attribute) still
open and decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE = "sample"
BAND = "band"


#: dtype of string variables (Zarr v3 variable-length UTF-8, ``string`` data type)
STRING = "str"


@dataclass(frozen=True)
class Var:
    """One contract variable (``dtype`` is a numpy dtype string, or :data:`STRING`)."""

    dims: tuple[str, ...]
    dtype: str
    units: str
    description: str
    legend: tuple[str, ...] | None = None  # allowed values of a coded string variable

    @property
    def is_string(self) -> bool:
        """Stored as variable-length strings."""
        return self.dtype == STRING

    @property
    def code_dtype(self) -> str:
        """dtype of the numeric view (``decode=False``): int8 legend index, int32 brick code."""
        if self.legend is not None:
            return "i1"
        if self.is_string:
            return "i4"
        return self.dtype

    @property
    def fill(self):
        """Value of a not-yet-written element."""
        if self.is_string:
            return ""
        if self.dtype.startswith("f"):
            return np.nan
        if self.dtype == "i8" and self.units == "id":
            return -1
        return 0


KINDS = (
    "host",
    "control",
    "injection",
    "anchor",
    "stress",
    "hard_negative",
    "ring",
    "null_injection",
)
SPLITS = ("", "train", "val", "test")
TIERS = ("", "A", "B", "secondary", "stress")
SUBTYPES = (
    "",
    "lrg",
    "ring_galaxy",
    "spiral",
    "merger",
    "edge_on",
    "procedural_ring",
    "mined",
    "off_target",
)
INJECT_MODES = ("", "uncalibrated", "calibrated", "null")
QUALITY = (
    "ok",
    "bound_hit_faint",
    "bound_hit_bright",
    "arc_below_target",
    "no_good_pixels",
    "partial_overlap",
    "psf_from_default",
    "invvar_from_psfdepth",
)

TRUTH_VARS = (
    ("theta_e", "arcsec", "SIE Einstein radius"),
    ("lens_q", "1", "SIE axis ratio b/a"),
    ("lens_pa", "rad", "SIE major-axis angle, counter-clockwise from +x"),
    ("shear_g1", "1", "external shear component 1"),
    ("shear_g2", "1", "external shear component 2"),
    ("src_x", "arcsec", "source x offset (columns), stamp frame"),
    ("src_y", "arcsec", "source y offset (rows), stamp frame"),
    ("src_dmag", "mag", "unlensed source r mag minus host r mag"),
    ("src_reff", "arcsec", "source Sersic R_eff along the intermediate axis"),
    ("src_n", "1", "source Sersic index"),
    ("src_q", "1", "source axis ratio"),
    ("src_pa", "rad", "source angle, counter-clockwise from +x"),
    ("src_mag_r", "mag", "unlensed source r magnitude (AB)"),
    ("src_gr", "mag", "source colour g - r"),
    ("src_rz", "mag", "source colour r - z"),
    ("magnification", "1", "total lensed / unlensed source flux, noise-free"),
    ("arc_snr", "1", "integrated arc S/N over pixels with a >= sigma (Collett 2015)"),
    ("arc_snr_peak", "1", "max over pixels of a * sqrt(invvar)"),
)

_S, _B, _Y, _X = SAMPLE, BAND, "y", "x"

VARIABLES: dict[str, Var] = {
    "image": Var((_S, _B, _Y, _X), "f4", "nanomaggy", "flux per pixel (AB zero point 22.5)"),
    "invvar": Var((_S, _B, _Y, _X), "f4", "nanomaggy-2", "inverse variance; 0 = no data"),
    "maskbits": Var((_S, _Y, _X), "i4", "1", "DR10 MASKBITS"),
    "ra": Var((_S,), "f8", "deg", "right ascension (ICRS)"),
    "dec": Var((_S,), "f8", "deg", "declination (ICRS)"),
    "brickname": Var((_S,), STRING, "", "DR10 brick name (RRRRpDDD)"),
    "region": Var((_S,), "i4", "1", "sky-region id (-1 = not assigned)"),
    "split": Var((_S,), STRING, "", "train / val / test / '' (not assigned)", SPLITS),
    "label": Var((_S,), "i1", "1", "1 lens, 0 non-lens"),
    "kind": Var((_S,), STRING, "", "population", KINDS),
    "psfsize": Var((_S, _B), "f4", "arcsec", "PSF FWHM"),
    "psfdepth": Var((_S, _B), "f4", "mag", "5-sigma point-source depth (AB)"),
    "host_sample": Var((_S,), "i8", "id", "host cutout id of an injection (-1 otherwise)"),
    **{name: Var((_S,), "f4", units, desc) for name, units, desc in TRUTH_VARS},
}

OPTIONAL: dict[str, Var] = {
    "arc": Var((_S, _B, _Y, _X), "f4", "nanomaggy", "noise-free injected arc (diagnostic)"),
    "tier": Var((_S,), STRING, "", "anchor tier", TIERS),
    "subtype": Var((_S,), STRING, "", "sub-population (e.g. hard-negative morphology)", SUBTYPES),
    "inject_mode": Var((_S,), STRING, "", "injection brightness mode", INJECT_MODES),
    "eval_only": Var((_S,), "i1", "1", "1 = evaluation slice, never used for training"),
    "quality": Var((_S,), STRING, "", "per-sample quality reason", QUALITY),
    "host_mag_r": Var((_S,), "f4", "mag", "host (deflector) r magnitude (AB)"),
    "visibility": Var((_S,), "f4", "1", "arc visibility proxy (annulus residual S/N)"),
    "core_brightness": Var((_S,), "f4", "nanomaggy", "median r-band flux at r < 8 px"),
    "src_index": Var((_S,), "i8", "id", "real-galaxy catalogue row of the source (-1 if none)"),
    "snr_opt": Var((_S,), "f4", "1",
                   "matched-filter S/N of the noise-free arc, sqrt(sum a^2 invvar) over good "
                   "pixels of all bands (NaN if no arc)"),
}

ALL_VARIABLES: dict[str, Var] = {**VARIABLES, **OPTIONAL}
REQUIRED = tuple(VARIABLES)
CODED = {name: v.legend for name, v in ALL_VARIABLES.items() if v.legend is not None}

CONVENTIONS = {
    "pixscale": 0.262,
    "zeropoint": 22.5,
    "pixel_grid": "object centre at pixel (H//2, W//2); x along columns, y along rows",
    "position_units": "arcsec in the stamp frame, origin at the centre pixel",
    "angle_convention": "radians counter-clockwise from +x",
    "lens_model": (
        "SIE (Kormann+1994, lenstronomy SIE convention) + external shear (lenstronomy SHEAR)"
    ),
    "theta_e_convention": "lenstronomy SIE theta_E (intermediate-axis Einstein radius), arcsec",
    "magnitude": "m = 22.5 - 2.5 log10(flux_nmgy)",
}


def encode_codes(name: str, values) -> np.ndarray:
    """Encode strings of coded variable ``name`` to int8 codes (legend index); unknown values
    raise. Integer input is range-checked and returned as int8."""
    legend = CODED[name]
    vals = np.asarray(values)
    if vals.dtype.kind in "iu":
        if vals.size and (vals.min() < 0 or vals.max() >= len(legend)):
            msg = f"variable {name!r}: code out of range 0..{len(legend) - 1}"
            raise ValueError(msg)
        return vals.astype("i1")
    import pandas as pd

    flat = as_unicode(vals.reshape(-1))
    codes = pd.Index(legend).get_indexer(flat)
    if codes.size and codes.min() < 0:
        bad = flat[np.flatnonzero(codes < 0)[0]]
        msg = f"variable {name!r}: unknown value {str(bad)!r}; allowed: {list(legend)}"
        raise ValueError(msg)
    return codes.astype("i1").reshape(vals.shape)


def decode_codes(name: str, codes) -> np.ndarray:
    """Decode int codes of ``name`` back to a numpy string array."""
    legend = np.asarray(CODED[name])
    return legend[np.asarray(codes, dtype=np.int64)]


def as_unicode(values) -> np.ndarray:
    """Any string array (numpy ``StringDType`` as zarr returns it, object, ``U``) as ``U``."""
    vals = np.asarray(values)
    if vals.dtype.kind == "U":
        return vals
    if vals.dtype.kind == "T":
        width = int(np.strings.str_len(vals).max()) if vals.size else 1
        return vals.astype(f"U{max(width, 1)}")
    return vals.astype(str)


def to_strings(name: str, values) -> np.ndarray:
    """Validated numpy ``U`` strings of string variable ``name`` from strings or codes."""
    var = ALL_VARIABLES[name]
    vals = np.asarray(values)
    if var.legend is not None:
        if vals.dtype.kind in "iu":
            return decode_codes(name, encode_codes(name, vals))
        vals = as_unicode(vals)
        encode_codes(name, vals)  # validates against the legend
        return vals
    if vals.dtype.kind in "iu":  # brickname codes
        return decode_brickname(vals)
    vals = as_unicode(vals)
    encode_brickname(vals)  # validates the RRRRpDDD form
    return vals


def to_codes(name: str, values) -> np.ndarray:
    """The numeric view of string variable ``name``: int8 legend codes, int32 brick codes."""
    if ALL_VARIABLES[name].legend is not None:
        return encode_codes(name, values)
    vals = np.asarray(values)
    return vals.astype("i4") if vals.dtype.kind in "iu" else encode_brickname(vals)


def encode_brickname(names) -> np.ndarray:
    """``RRRRpDDD`` -> int32: RRRR * 10000 + (5000 if 'm' else 0) + DDD (exact, reversible)."""
    # one spare character, so that a longer name fails the length check below
    arr = as_unicode(np.asarray(names).reshape(-1)).astype("U9")
    chars = arr.view("U1").reshape(arr.size, 9) if arr.size else np.zeros((0, 9), "U1")
    digits = np.char.isdigit(chars[:, [0, 1, 2, 3, 5, 6, 7]]).all(axis=1)
    ok = (np.char.str_len(arr) == 8) & np.isin(chars[:, 4], ["p", "m"]) & digits
    if not ok.all():
        s = arr[np.flatnonzero(~ok)[0]]
        msg = f"brickname {str(s)!r} is not of the form RRRRpDDD / RRRRmDDD"
        raise ValueError(msg)
    num = np.char.add(np.char.add(chars[:, 0], chars[:, 1]), np.char.add(chars[:, 2], chars[:, 3]))
    den = np.char.add(np.char.add(chars[:, 5], chars[:, 6]), chars[:, 7])
    out = num.astype(np.int64) * 10000 + np.where(chars[:, 4] == "m", 5000, 0) + den.astype(
        np.int64
    )
    return out.astype("i4").reshape(np.shape(names))


def decode_brickname(codes) -> np.ndarray:
    """Inverse of :func:`encode_brickname`."""
    c = np.asarray(codes, dtype=np.int64)
    rrrr = c // 10000
    rest = c % 10000
    sign = np.where(rest >= 5000, "m", "p")
    ddd = rest % 5000
    flat = [
        f"{r:04d}{s}{d:03d}"
        for r, s, d in zip(rrrr.ravel(), sign.ravel(), ddd.ravel(), strict=True)
    ]
    return np.asarray(flat, dtype="U8").reshape(c.shape)


def brickname_for(ra_deg, dec_deg) -> np.ndarray:
    """DR10-style brick name of the 0.25-deg brick containing each position.

    Brick rows are 0.25 deg in Dec; the name encodes the brick centre as RA*10 (4 digits) and
    |Dec|*10 (3 digits) with ``p``/``m`` for the sign, as in the Legacy Surveys bricks table.
    RA centres are spaced so that bricks are ~0.25 deg wide on the sky at that Dec.
    """
    ra = np.asarray(ra_deg, dtype=np.float64) % 360.0
    dec = np.asarray(dec_deg, dtype=np.float64)
    row = np.floor((dec + 90.0) / 0.25)
    dec_c = -90.0 + (row + 0.5) * 0.25
    ncol = np.maximum(1, np.round(360.0 * np.cos(np.deg2rad(dec_c)) / 0.25)).astype(np.int64)
    col = np.floor(ra / 360.0 * ncol)
    ra_c = (col + 0.5) * 360.0 / ncol
    names = [
        f"{int(r * 10):04d}{'p' if d >= 0 else 'm'}{int(abs(d) * 10 + 1e-9):03d}"
        for r, d in zip(ra_c.ravel(), dec_c.ravel(), strict=True)
    ]
    return np.asarray(names, dtype="U8").reshape(ra.shape)


__all__ = [
    "ALL_VARIABLES",
    "BAND",
    "CODED",
    "CONVENTIONS",
    "INJECT_MODES",
    "KINDS",
    "OPTIONAL",
    "QUALITY",
    "REQUIRED",
    "SAMPLE",
    "STRING",
    "SPLITS",
    "SUBTYPES",
    "TIERS",
    "TRUTH_VARS",
    "VARIABLES",
    "Var",
    "as_unicode",
    "brickname_for",
    "decode_brickname",
    "decode_codes",
    "encode_brickname",
    "encode_codes",
    "to_codes",
    "to_strings",
]
