"""The mock DR10 survey: population plan, sample ids, and the per-chunk simulation.

Sample ids
----------
``sample id = POPULATION_OFFSETS[population] + index`` (index ``0 .. count - 1``):

======================  ==============  ==============================
population              kind            id offset
======================  ==============  ==============================
``lrg``                 host            0
``anchor``              anchor          1 000 000 000
``stress``              stress          2 000 000 000
``ring_galaxy``         hard_negative   3 000 000 000
``spiral``              hard_negative   4 000 000 000
``merger``              hard_negative   5 000 000 000
``edge_on``             hard_negative   6 000 000 000
``procedural_ring``     ring            7 000 000 000
======================  ==============  ==============================

so ids are unique, stable when other populations change size, and tell the population at a
glance. Store rows are the populations in that order.

Randomness
----------
Everything about sample ``id`` is drawn from ``generator(seed, "simulate", id, replicate)``:
replicate 0 = population parameters, 1 = masks, 2 = neighbours, 3 = position; the pixel noise
uses the counter RNG with key ``mix_key(seed, stage_id("simulate"), id, 4, 0)`` and counter =
flat pixel index. Global quantities (anchor magnitude offset, off-target and tier-A sets,
lenscat positions) are deterministic functions of the config and seed. Output is therefore
bit-identical for any worker count or chunking.

Anchors and the hand-typed list
-------------------------------
Tier A is exactly ``round(anchor_tier_a_fraction * n_anchors)`` anchors and the off-target set
exactly ``round(off_target_fraction * n_anchors)`` (both chosen by ranking keyed hashes of the
anchor ids). An off-target anchor (subtype ``off_target``, still kind ``anchor``, label 1) has
its lens at the *true* position, but its cutout -- and its ``ra``/``dec`` in the store and in
``mock/anchor_list.csv`` -- are at the hand-typed position ``off_target_offset_arcmin`` away:
empty sky at the centre (neighbours and masks only, no truth). ``mock/lens_catalog.csv`` has
the true positions of every anchor (the reference catalogue a cross-match should use).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen5dask import ZEROPOINT_AB
from gen5dask.injection.amplitude import solve_nearest
from gen5dask.injection.colour import colour_factors
from gen5dask.injection.laws import MODE_CODES, TargetDistribution, draw_injection_params
from gen5dask.injection.matched_filter import snr_opt
from gen5dask.injection.render import render_unit_arcs
from gen5dask.injection.spec import InjectionModel
from gen5dask.kernels import psf as _psf
from gen5dask.kernels import rng
from gen5dask.kernels.noise import add_noise
from gen5dask.sim import lenspop, sky
from gen5dask.sim import populations as pop
from gen5dask.sim.maskbits import draw_stamp_masks, moffat_image
from gen5dask.store.schema import TRUTH_VARS

STAGE = "simulate"
#: replicate slots of a sample's streams
R_PARAMS, R_MASKS, R_NEIGHBOURS, R_POSITION, R_NOISE = 0, 1, 2, 3, 4

#: population -> (kind, subtype, id offset)
POPULATIONS: dict[str, tuple[str, str, int]] = {
    "lrg": ("host", "lrg", 0),
    "anchor": ("anchor", "", 1_000_000_000),
    "stress": ("stress", "", 2_000_000_000),
    "ring_galaxy": ("hard_negative", "ring_galaxy", 3_000_000_000),
    "spiral": ("hard_negative", "spiral", 4_000_000_000),
    "merger": ("hard_negative", "merger", 5_000_000_000),
    "edge_on": ("hard_negative", "edge_on", 6_000_000_000),
    "procedural_ring": ("ring", "procedural_ring", 7_000_000_000),
}
ID_STRIDE = 1_000_000_000
#: sub-batch of samples rendered and convolved together (bounds worker memory)
RENDER_BATCH = 32

TRUTH_NAMES = tuple(t for t, _, _ in TRUTH_VARS)
LENS_KEYS = (
    "theta_e", "lens_q", "lens_pa", "shear_g1", "shear_g2", "src_x", "src_y", "src_reff",
    "src_n", "src_q", "src_pa", "src_gr", "src_rz",
)


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurveyPlan:
    """Populations and counts of a mock survey, in store-row order."""

    counts: tuple[tuple[str, int], ...]

    @classmethod
    def from_config(cls, sim) -> SurveyPlan:
        """Plan of a :class:`~gen5dask.config.simulate.SimulateConfig`."""
        counts = [("lrg", sim.n_hosts), ("anchor", sim.n_anchors), ("stress", sim.n_stress)]
        counts += [(t, sim.n_hard_negatives) for t in POPULATIONS if t in sim.hard_negative_types]
        counts.append(("procedural_ring", sim.n_rings))
        for name, n in counts:
            if n >= ID_STRIDE:
                msg = f"simulate: population {name!r} count {n} exceeds the id stride {ID_STRIDE}"
                raise ValueError(msg)
        return cls(tuple(counts))

    @property
    def n_samples(self) -> int:
        """Total number of samples."""
        return sum(n for _, n in self.counts)

    def ids(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Sample ids of store rows ``start:stop`` (int64)."""
        all_ids = np.concatenate(
            [POPULATIONS[p][2] + np.arange(n, dtype=np.int64) for p, n in self.counts]
            or [np.zeros(0, np.int64)]
        )
        return all_ids[start:stop]


def population_of(sample_id: int) -> tuple[str, int]:
    """``(population, index)`` of a sample id."""
    offset = (int(sample_id) // ID_STRIDE) * ID_STRIDE
    for name, (_, _, off) in POPULATIONS.items():
        if off == offset:
            return name, int(sample_id) - off
    msg = f"sample id {sample_id} belongs to no simulate population"
    raise ValueError(msg)


@functools.lru_cache(maxsize=32)
def _ranked_subset(seed: int, n: int, k: int, salt: int) -> frozenset:
    ids = POPULATIONS["anchor"][2] + np.arange(n, dtype=np.int64)
    keys = rng.keys_for(np.int64(seed), np.int64(rng.stage_id(f"{STAGE}.anchor_sets")), ids,
                        salt, 0)
    order = np.argsort(keys, kind="stable")
    return frozenset(int(i) for i in order[:k])


def tier_a_indices(sim, seed: int) -> frozenset:
    """Anchor indices in tier A (exactly ``round(fraction * n_anchors)``)."""
    n = sim.n_anchors
    return _ranked_subset(int(seed), n, int(round(sim.anchor_tier_a_fraction * n)), 0)


def off_target_indices(sim, seed: int) -> frozenset:
    """Anchor indices with hand-typed coordinate errors (``round(fraction * n_anchors)``)."""
    n = sim.n_anchors
    return _ranked_subset(int(seed), n, int(round(sim.off_target_fraction * n)), 1)


# ---------------------------------------------------------------------------------------------
# lenscat positions
# ---------------------------------------------------------------------------------------------


def lenscat_catalog_path() -> Path | None:
    """Path of the lenscat catalogue bundled with gen5dask (:func:`gen5dask.data.lenscat_csv`)."""
    from gen5dask.data import lenscat_csv

    return lenscat_csv()


def lenscat_anchor_table(sim, seed: int):
    """``n_anchors`` DESI-native confident lenscat rows (name, ra, dec, zlens, ref) or None.

    Rows whose ``ref`` cites Lopes et al. (2004) are skipped. The subset is chosen by a
    permutation keyed by ``(seed, "simulate.lenscat")``. Returns None (with a warning) when
    lenscat is not installed.
    """
    import pandas as pd

    path = lenscat_catalog_path()
    if path is None:
        warnings.warn(
            "simulate.anchor_positions='lenscat' but lenscat is not installed; "
            "placing anchors inside the footprint",
            stacklevel=2,
        )
        return None
    df = pd.read_csv(path)
    ref = df["ref"].astype(str)
    sel = (
        df["name"].astype(str).str.contains(sim.lenscat_name_contains, regex=False)
        & (df["grading"].astype(str) == sim.lenscat_grading)
        & ~ref.str.contains("Lopes", regex=False)
    )
    rows = df[sel].reset_index(drop=True)
    if len(rows) < sim.n_anchors:
        msg = (
            f"simulate.n_anchors={sim.n_anchors} exceeds the {len(rows)} lenscat rows matching "
            f"name~{sim.lenscat_name_contains!r}, grading={sim.lenscat_grading!r} ({path})"
        )
        raise ValueError(msg)
    perm = rng.generator(seed, f"{STAGE}.lenscat", 0).permutation(len(rows))[: sim.n_anchors]
    rows = rows.iloc[perm].reset_index(drop=True)
    z = pd.to_numeric(rows["zlens"].astype(str).str.rstrip("?"), errors="coerce")
    return {
        "name": [str(s).split(" | ")[0] for s in rows["name"]],
        "ra": rows["RA [deg]"].to_numpy(np.float64),
        "dec": rows["DEC [deg]"].to_numpy(np.float64),
        "z_lens": z.to_numpy(np.float64),
        "source": [str(s).split(" | ")[0] for s in rows["ref"]],
    }


# ---------------------------------------------------------------------------------------------
# per-sample models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """Run-wide, deterministic inputs of the per-sample draws (small; pickled to workers)."""

    sim: object
    seed: int
    bands: tuple[str, ...]
    stamp_size: int
    pixscale: float
    anchor_dm: float
    lenscat: dict | None = None
    anchor_injection: InjectionModel | None = None
    """``simulate.anchor_model: injection``: the injection model the anchors are drawn from."""
    anchor_lenses: dict | None = None
    """Precomputed physical anchor lenses, sample id -> truth dict (:func:`with_anchor_lenses`);
    used only while ``anchor_lenses_key`` matches this context."""
    anchor_lenses_key: str = ""


def desi_name(ra: float, dec: float) -> str:
    """DESI-style lens name ``DESI-RRR.RRRR+DD.DDDD``."""
    return f"DESI-{ra:08.4f}{dec:+08.4f}"


#: key stage of the injection-model anchors' draws.
ANCHOR_LENS_STAGE = "simulate.anchor_lens"


def injection_model_lens(sample_id: int, ctx: Context) -> tuple[dict, tuple[float, float, float]]:
    """Lens and source of an anchor drawn from the injection model (``anchor_model:
    injection``) and its target ``(arc_snr, bin_low, bin_high)`` from the anchors' table."""
    model = ctx.anchor_injection
    table = TargetDistribution(*ctx.sim.anchor_arc_snr_table())
    par = draw_injection_params(
        model.laws, seed=ctx.seed, host_ids=[int(sample_id)], replicates=[0],
        modes=[MODE_CODES["calibrated"]], target=table,
        n_galaxies=len(model.source) if model.source is not None else None,
        stage=ANCHOR_LENS_STAGE,
    )
    lens = {k: float(par[k][0]) for k in LENS_KEYS}
    lens["src_index"] = int(par["src_index"][0])
    t = float(par["target_arc_snr"][0])
    lo, hi = table.bin_of(np.array([t]))
    return lens, (t, float(lo[0]), float(min(hi[0], table.bins[-1])))


@functools.lru_cache(maxsize=4096)
def _physical_anchor_cached(sample_id, ra, dec, deflector_pa, tier, seed, sim_json, bands,
                            stamp_size, pixscale):
    from gen5dask.config.simulate import SimulateConfig

    sim = SimulateConfig.model_validate_json(sim_json)
    params = lenspop.LensPopParams.from_config(sim.lenspop)
    cond = sky.observing_conditions(np.array([ra]), np.array([dec]), sim=sim, seed=seed,
                                    bands=bands)
    rb = bands.index("r")
    fwhm = float(cond.psfsize.astype(np.float32)[0, rb])
    k = kernel_size(sim, pixscale)
    kern = np.empty((1, 1, k, k))
    _psf.moffat_fill_batch(kern, np.array([[fwhm / pixscale]]), float(sim.psf_beta))
    depth = cond.psfdepth.astype(np.float32).astype(np.float64)[:, rb : rb + 1]
    sigma = float(sky.pixel_sigma(depth, sky.nea_of_kernel(kern))[0, 0])
    sel = lenspop.select_visible_lens(
        rng.generator(seed, lenspop.STAGE, sample_id), params, psf_kernel_r=kern[0, 0],
        psf_fwhm_r=fwhm, pixel_sigma_r=sigma, psfdepth_r=float(depth[0, 0]),
        stamp_size=stamp_size, pixscale=pixscale,
        deflector_pa=deflector_pa, supersample=sim.supersample,
        snr_min=params.selection_snr_min if tier == "A" else params.tier_b_snr_min,
        label=f"simulate anchor {sample_id}",
    )
    return sel


def physical_anchor_lens(sample_id: int, ra: float, dec: float, deflector_pa: float,
                         tier: str, ctx: Context) -> dict:
    """Lens and source of a physical anchor: the first visible candidate of its keyed stream.

    Candidates come from :func:`gen5dask.sim.lenspop.draw_lens_population` keyed by
    ``generator(seed, "simulate.lenspop", sample_id)``; the visual selection uses the r-band
    PSF and sky noise at ``(ra, dec)`` (the lens's true position) and the tier's S/N threshold
    (``selection_snr_min`` for tier A, ``tier_b_snr_min`` for B). Returns the truth dict
    (:data:`LENS_KEYS` plus ``src_mag_r``, ``z_lens``, ``z_source``, ``sigma_v``,
    ``magnification``, ``selection_arc_snr``). Cached per process.
    """
    sim = ctx.sim
    if ctx.anchor_lenses is not None and ctx.anchor_lenses_key == anchor_lenses_key(ctx):
        lens = ctx.anchor_lenses.get(int(sample_id))
        if lens is not None:
            return dict(lens)
    if "r" not in ctx.bands:
        msg = f"simulate: the physical anchor population needs the r band, bands {ctx.bands}"
        raise ValueError(msg)
    sel = _physical_anchor_cached(int(sample_id), float(ra), float(dec), float(deflector_pa),
                                  str(tier), int(ctx.seed), sim.model_dump_json(),
                                  tuple(ctx.bands), int(ctx.stamp_size), float(ctx.pixscale))
    lens = dict(sel.lens)
    lens["selection_arc_snr"] = sel.arc_snr
    return lens


def anchor_lenses_key(ctx: Context) -> str:
    """What the physical anchor lenses depend on (config, seed, stamp geometry, lenscat)."""
    import hashlib

    lc = "" if ctx.lenscat is None else repr((list(ctx.lenscat["ra"]), list(ctx.lenscat["dec"])))
    text = repr((ctx.sim.model_dump_json(), ctx.seed, ctx.bands, ctx.stamp_size, ctx.pixscale,
                 lc))
    return hashlib.sha256(text.encode()).hexdigest()


def anchor_lens_block(block: int, ctx: Context, block_size: int) -> dict:
    """Physical lenses of anchors ``block * block_size`` ... (one task of the precompute)."""
    n = ctx.sim.n_anchors
    off = POPULATIONS["anchor"][2]
    ids = range(off + block * block_size, off + min(n, (block + 1) * block_size))
    return {int(i): sample_model(int(i), ctx).lens for i in ids}


def with_anchor_lenses(ctx: Context, lenses: dict) -> Context:
    """``ctx`` carrying precomputed physical anchor lenses (sample id -> truth dict), so that
    workers and the anchor list do not repeat the visual selection."""
    from dataclasses import replace

    return replace(ctx, anchor_lenses=dict(lenses), anchor_lenses_key=anchor_lenses_key(ctx))


def sample_model(sample_id: int, ctx: Context) -> pop.SampleModel:
    """Draw everything about one sample (no rendering): population, position, light, lens."""
    sim, seed = ctx.sim, ctx.seed
    name, index = population_of(sample_id)
    kind, subtype, _ = POPULATIONS[name]
    g = rng.generator(seed, STAGE, sample_id, R_PARAMS)
    gpos = rng.generator(seed, STAGE, sample_id, R_POSITION)
    box = sky.footprint_box(sim.footprint_center, sim.footprint_size)
    ra, dec = sky.position_in_box(gpos.uniform(), gpos.uniform(), box)
    m = pop.SampleModel(sample_id=int(sample_id), kind=kind, subtype=subtype)
    kw = {"pixscale": ctx.pixscale, "bands": ctx.bands}
    if name in ("lrg", "procedural_ring"):
        shape = pop.draw_lrg(g, sim)
        m.components.append(pop.lrg_component(shape, **kw))
        m.host_mag_r = shape["mag_r"]
        if name == "procedural_ring":
            m.feature = "ring"
            m.ring_row = pop.ring(
                0.0, 0.0, radius=pop.unif(g, sim.ring_radius), sigma=pop.unif(g, sim.ring_width),
                q=float(g.uniform(0.85, 1.0)), pa=float(g.uniform(0.0, np.pi)),
            )
            m.ring_colors = (pop.unif(g, sim.ring_gr), pop.unif(g, sim.ring_rz))
            target = pop.draw_piecewise_uniform(g, sim.arc_snr_bins, sim.arc_snr_fractions)
            m.target_snr, m.target_bin = target[0], target[1:]
    elif name in ("anchor", "stress"):
        if name == "anchor":
            shape = pop.draw_lrg(g, sim)
            comp = pop.lrg_component(shape, mag_offset=ctx.anchor_dm,
                                     reff_scale=sim.anchor_reff_scale, **kw)
            mag = shape["mag_r"] + ctx.anchor_dm
            m.tier = "A" if index in tier_a_indices(sim, seed) else "B"
            physical = sim.anchor_model == "physical"
            if not physical:
                lens, target = pop.draw_lens(g, sim, theta_range=sim.anchor_theta_e,
                                             deflector_pa=shape["pa"])
                if ctx.anchor_injection is not None:  # the stream above is drawn either way
                    lens, target = injection_model_lens(sample_id, ctx)
                    m.lens_model = "injection"
                m.z_lens, m.z_source = pop.unif(g, sim.z_lens), pop.unif(g, sim.z_source)
            if ctx.lenscat is not None:
                ra, dec = float(ctx.lenscat["ra"][index]), float(ctx.lenscat["dec"][index])
                m.name, m.source = ctx.lenscat["name"][index], ctx.lenscat["source"][index]
                if not physical and np.isfinite(ctx.lenscat["z_lens"][index]):
                    m.z_lens = float(ctx.lenscat["z_lens"][index])
            else:
                m.name, m.source = desi_name(ra, dec), "gen5dask simulate (mock)"
            if physical:
                lens = physical_anchor_lens(sample_id, ra, dec, shape["pa"], m.tier, ctx)
                target = (np.nan, np.nan, np.nan)
                m.z_lens, m.z_source = lens["z_lens"], lens["z_source"]
        else:
            shape = pop.draw_lrg(g, sim)
            shape["mag_r"] = pop.unif(g, sim.stress_mag_r)
            comp = pop.lrg_component(shape, **kw)
            mag = shape["mag_r"]
            lens, target = pop.draw_lens(g, sim, theta_range=sim.stress_theta_e,
                                         deflector_pa=shape["pa"], stress=True)
            m.tier = "stress"
            m.z_lens, m.z_source = float(g.uniform(0.1, 0.6)), float(g.uniform(0.5, 1.5))
            m.name, m.source = desi_name(ra, dec).replace("DESI-", "STRESS-"), "mock SLACS/BELLS"
        m.label = 1
        m.true_ra, m.true_dec = ra, dec
        phi = float(g.uniform(0.0, 2.0 * np.pi))
        if name == "anchor" and index in off_target_indices(sim, seed):
            off = sim.off_target_offset_arcmin * 60.0
            ra, dec = sky.offset_position(ra, dec, off * np.cos(phi), off * np.sin(phi))
            m.subtype = "off_target"
            m.lens = lens  # catalogue values of the (unseen) lens
        else:
            m.components.append(comp)
            m.host_mag_r = mag
            m.feature = "lens"
            m.lens = lens
            m.target_snr, m.target_bin = target[0], target[1:]
    else:
        comps, mag = pop.hard_negative_components(g, sim, name, **kw)
        m.components.extend(comps)
        m.host_mag_r = mag
    m.ra, m.dec = ra, dec
    if np.isnan(m.true_ra):
        m.true_ra, m.true_dec = ra, dec
    gn = rng.generator(seed, STAGE, sample_id, R_NEIGHBOURS)
    comps, stars = pop.draw_neighbours(gn, sim, stamp_size=ctx.stamp_size, **kw)
    m.components.extend(comps)
    m.stars.extend(stars)
    return m


# ---------------------------------------------------------------------------------------------
# chunk simulation
# ---------------------------------------------------------------------------------------------


def kernel_size(sim, pixscale: float) -> int:
    """Fixed PSF kernel side (pixels) of a run: enough for the largest allowed FWHM."""
    return int(_psf.moffat_size(sim.psfsize_range[1] / pixscale, sim.psf_beta))


def _convolve_region(region, kernels, stamp_size):
    """``(n, nb, P, P)`` regions convolved per band with ``(n, nb, K, K)`` kernels."""
    n, nb, npix, _ = region.shape
    k = kernels.shape[-1]
    out = _psf.convolve_bands(
        region.reshape(n * nb, npix, npix), kernels.reshape(n * nb, 1, k, k),
        np.ones((n * nb, 1)), stamp_shape=(stamp_size, stamp_size),
    )
    return out.reshape(n, nb, stamp_size, stamp_size)


def _render_light(models, kernels, ctx: Context, *, ring_only: bool = False):
    """Noise-free PSF-convolved light ``(n, nb, H, W)`` float64 of the models' components
    (``ring_only``: the unit-r-flux ring feature instead)."""
    n, nb, H = len(models), len(ctx.bands), ctx.stamp_size
    k = kernels.shape[-1]
    npix = H + k - 1
    origin = -(H // 2) - k // 2
    out = np.zeros((n, nb, H, H))
    buf = np.empty((npix, npix))
    for a in range(0, n, RENDER_BATCH):
        batch = models[a : a + RENDER_BATCH]
        rows, flux, owner = [], [], []
        for i, m in enumerate(batch):
            if ring_only:
                if m.feature == "ring":
                    gr, rz = m.ring_colors
                    rows.append(m.ring_row)
                    flux.append(pop.band_fluxes(ZEROPOINT_AB, gr, rz, ctx.bands))
                    owner.append(i)
                continue
            for row, f in m.components:
                rows.append(row)
                flux.append(f)
                owner.append(i)
        if not rows:
            continue
        region = np.zeros((len(batch), nb, npix, npix))
        pop.render_components(
            np.asarray(rows, dtype=np.float64), np.asarray(flux, dtype=np.float64),
            np.asarray(owner, dtype=np.int64), float(ctx.pixscale), int(origin),
            int(ctx.sim.supersample), buf, region,
        )
        out[a : a + len(batch)] = _convolve_region(region, kernels[a : a + len(batch)], H)
    return out


def _render_lensed(models, idx, kernels, ctx: Context):
    """Unit-r-flux lensed arcs ``(len(idx), nb, H, W)`` float32 and magnifications."""
    from gen5dask.kernels.render import render_lensed_sersic

    lens = {k: np.array([models[i].lens[k] for i in idx], dtype=np.float64) for k in LENS_KEYS}
    flux = colour_factors(ctx.bands, lens["src_gr"], lens["src_rz"])  # r flux 1 nanomaggy
    arcs, mags = [], []
    for a in range(0, len(idx), RENDER_BATCH):
        sl = slice(a, a + RENDER_BATCH)
        arc, mag = render_lensed_sersic(
            stamp_size=ctx.stamp_size, pixscale=ctx.pixscale,
            **{k: lens[k][sl] for k in LENS_KEYS if k not in ("src_gr", "src_rz")},
            src_flux_bands=flux[sl], psf_kernels=kernels[idx[sl]], psf_beta=ctx.sim.psf_beta,
            supersample=ctx.sim.supersample, bands=ctx.bands,
        )
        arcs.append(arc)
        mags.append(mag)
    return np.concatenate(arcs), np.concatenate(mags)


def _render_injection_model(models, idx, psfsize, ctx: Context):
    """Unit-r-flux arcs of injection-model anchors, by the injection renderer."""
    keys = (*LENS_KEYS, "src_index")
    par = {k: np.array([models[i].lens[k] for i in idx]) for k in keys}
    par["src_index"] = par["src_index"].astype(np.int64)
    unit = colour_factors(ctx.bands, par["src_gr"], par["src_rz"])
    return render_unit_arcs(
        ctx.anchor_injection, par, unit, np.asarray(psfsize, np.float64)[idx],
        stamp_size=ctx.stamp_size, pixscale=ctx.pixscale, bands=ctx.bands,
    )


def simulate_samples(ids: np.ndarray, ctx: Context) -> dict[str, np.ndarray]:
    """Simulate the samples ``ids``: every store variable (strings for coded ones).

    Pure function of ``(ids, ctx)``; each sample depends on its own id only.
    """
    from gen5dask.kernels.photometry import arc_snr

    sim = ctx.sim
    ids = np.asarray(ids, dtype=np.int64)
    n, nb, H = ids.size, len(ctx.bands), ctx.stamp_size
    models = [sample_model(int(i), ctx) for i in ids]
    ra = np.array([m.ra for m in models], dtype=np.float64)
    dec = np.array([m.dec for m in models], dtype=np.float64)
    cond = sky.observing_conditions(ra, dec, sim=sim, seed=ctx.seed, bands=ctx.bands)
    psfsize = cond.psfsize.astype(np.float32)
    psfdepth = cond.psfdepth.astype(np.float32)
    fwhm_pix = psfsize.astype(np.float64) / ctx.pixscale
    k = kernel_size(sim, ctx.pixscale)
    kernels = np.empty((n, nb, k, k))
    _psf.moffat_fill_batch(kernels, fwhm_pix, float(sim.psf_beta))
    sigma = sky.pixel_sigma(psfdepth.astype(np.float64), sky.nea_of_kernel(kernels))  # (n, nb)

    # light
    image_nf = _render_light(models, kernels, ctx)
    for i, m in enumerate(models):
        for x, y, f in m.stars:
            c = H // 2
            for b in range(nb):
                image_nf[i, b] += moffat_image(f[b], c + x / ctx.pixscale, c + y / ctx.pixscale,
                                               fwhm_pix[i, b], sim.psf_beta, (H, H))

    # masks and invvar
    maskbits = np.zeros((n, H, H), dtype=np.int32)
    invvar = np.empty((n, nb, H, H), dtype=np.float64)
    zero = np.zeros((n, nb, H, H), dtype=bool)
    sat = np.zeros((n, nb, H, H), dtype=bool)
    for i, m in enumerate(models):
        gm = rng.generator(ctx.seed, STAGE, int(ids[i]), R_MASKS)
        npri = sky.nprimary_mask(m.ra, m.dec, H, ctx.pixscale)
        sm = draw_stamp_masks(gm, sim=sim, bands=ctx.bands, stamp_size=H,
                              pixscale=ctx.pixscale, fwhm_pix=fwhm_pix[i], nprimary=npri)
        maskbits[i] = sm.maskbits
        invvar[i] = sm.ivar_factor / (sigma[i] ** 2)[:, None, None]
        image_nf[i] += sm.star_light
        zero[i], sat[i] = sm.zero_image, sm.saturated
    invvar32 = invvar.astype(np.float32)

    # features: lensed arcs and procedural rings, amplitudes solved for the target S/N
    arc = np.zeros((n, nb, H, H), dtype=np.float32)
    truth = {t: np.full(n, np.nan, dtype=np.float32) for t in TRUTH_NAMES}
    rband = ctx.bands.index("r") if "r" in ctx.bands else nb // 2
    lens_idx = np.array([i for i, m in enumerate(models) if m.feature == "lens"], dtype=np.int64)
    ring_idx = np.array([i for i, m in enumerate(models) if m.feature == "ring"], dtype=np.int64)
    unit = np.zeros((n, nb, H, H), dtype=np.float32)
    magnification = np.full(n, np.nan)
    snr_opt_all = np.full(n, np.nan)  # matched-filter S/N of lensed arcs (issue #12)
    if lens_idx.size:
        inj = np.array([models[i].lens_model == "injection" for i in lens_idx], dtype=bool)
        own, other = lens_idx[~inj], lens_idx[inj]
        if own.size:
            unit[own], magnification[own] = _render_lensed(models, own, kernels, ctx)
        if other.size:
            unit[other], magnification[other] = _render_injection_model(
                models, other, psfsize, ctx
            )
    if ring_idx.size:
        ring_light = _render_light([models[i] for i in ring_idx], kernels[ring_idx], ctx,
                                   ring_only=True)
        unit[ring_idx] = ring_light.astype(np.float32)
    feat = np.concatenate([lens_idx, ring_idx])
    if feat.size:
        target = np.array([models[i].target_snr for i in feat])
        # the toolkit's one amplitude policy (inject, calibrate and here): exact where a linear
        # piece of arc_snr(amplitude) attains the target, else the nearer side of the jump;
        # physical anchors: the arc brightness is the source's own flux times magnification
        src_mag = np.array([models[i].lens.get("src_mag_r", np.nan) for i in feat])
        phys = np.isfinite(src_mag)
        bounds = tuple(np.array([models[i].target_bin[j] for i in feat]) for j in (0, 1))
        amp = np.zeros(feat.size)
        if (~phys).any():
            solved, _ = solve_nearest(unit[feat[~phys], rband], invvar32[feat[~phys], rband],
                                      target[~phys], tuple(b[~phys] for b in bounds))
            amp[~phys] = np.where(np.isfinite(solved), solved, 0.0)
        amp[phys] = 10.0 ** ((ZEROPOINT_AB - src_mag[phys]) / 2.5)
        arc[feat] = (unit[feat] * amp[:, None, None, None]).astype(np.float32)
        snr = arc_snr(arc[feat, rband], invvar32[feat, rband])
        truth["arc_snr"][feat] = snr.arc_snr
        truth["arc_snr_peak"][feat] = snr.arc_snr_peak
        if lens_idx.size:
            snr_opt_all[lens_idx] = snr_opt(arc[lens_idx], invvar32[lens_idx])
        with np.errstate(divide="ignore"):
            src_mag = np.where(amp > 0, ZEROPOINT_AB - 2.5 * np.log10(np.maximum(amp, 1e-300)),
                               np.inf)
        for j, i in enumerate(feat):
            m = models[i]
            truth["src_mag_r"][i] = src_mag[j]
            if m.feature == "lens":
                for key in LENS_KEYS:
                    truth[key][i] = m.lens[key]
                truth["magnification"][i] = magnification[i]
                truth["src_dmag"][i] = src_mag[j] - m.host_mag_r
            else:
                truth["src_gr"][i], truth["src_rz"][i] = m.ring_colors
        image_nf += arc

    # noise; no-data pixels are 0, saturated pixels keep their noise-free value
    keys = rng.keys_for(np.int64(ctx.seed), np.int64(rng.stage_id(STAGE)), ids, R_NOISE, 0)
    image = add_noise(image_nf, invvar32, keys, poisson=sim.poisson_noise, gain=sim.gain)
    image[zero] = 0.0
    image[sat] = image_nf[sat]
    out = {
        "sample": ids,
        "image": image.astype(np.float32),
        "invvar": invvar32,
        "maskbits": maskbits,
        "ra": ra,
        "dec": dec,
        "brickname": sky.bricknames(ra, dec),
        "region": np.full(n, -1, dtype=np.int32),
        "split": np.full(n, ""),
        "label": np.array([m.label for m in models], dtype=np.int8),
        "kind": np.array([m.kind for m in models]),
        "psfsize": psfsize,
        "psfdepth": psfdepth,
        "host_sample": np.full(n, -1, dtype=np.int64),
        "tier": np.array([m.tier for m in models]),
        "subtype": np.array([m.subtype for m in models]),
        "host_mag_r": np.array([m.host_mag_r for m in models], dtype=np.float32),
        "snr_opt": snr_opt_all.astype(np.float32),
        **truth,
    }
    if sim.store_arc:
        out["arc"] = arc
    return out


def catalogue_rows(kind: str, ctx: Context, plan: SurveyPlan) -> list[dict]:
    """Rows of the hand-typed list of ``kind`` ``anchor`` or ``stress`` (no rendering).

    Columns: id, name, ra, dec (typed = store position), grade (tier), theta_e (arcsec),
    z_lens, z_source, source, plus true_ra, true_dec (the lens's real position).
    """
    counts = dict(plan.counts)
    rows = []
    for i in range(counts.get(kind, 0)):
        m = sample_model(POPULATIONS[kind][2] + i, ctx)
        rows.append({
            "id": m.sample_id, "name": m.name, "ra": m.ra, "dec": m.dec, "grade": m.tier,
            "theta_e": m.lens.get("theta_e", np.nan), "z_lens": m.z_lens,
            "z_source": m.z_source, "source": m.source, "true_ra": m.true_ra,
            "true_dec": m.true_dec, "off_target": m.subtype == "off_target",
        })
    return rows


__all__ = [
    "POPULATIONS",
    "STAGE",
    "ANCHOR_LENS_STAGE",
    "Context",
    "SurveyPlan",
    "anchor_lens_block",
    "anchor_lenses_key",
    "catalogue_rows",
    "desi_name",
    "injection_model_lens",
    "kernel_size",
    "lenscat_anchor_table",
    "lenscat_catalog_path",
    "off_target_indices",
    "physical_anchor_lens",
    "population_of",
    "sample_model",
    "simulate_samples",
    "tier_a_indices",
    "with_anchor_lenses",
]
