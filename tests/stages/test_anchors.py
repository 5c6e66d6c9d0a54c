"""Anchors: planted coordinate errors and empty-sky cutouts are rejected with a reason."""

import numpy as np
import pandas as pd
import pytest

from gen5dask import store
from gen5dask.anchors import catalogs
from gen5dask.config import config_from_dict
from gen5dask.stages.anchors import centre_snr, run_anchors, select_anchors
from gen5dask.store.testing import fake_chunk

STAMP = 32


def _cutout_store(path, n=12, empty=(3, 7), stress=(10, 11), *, arcs=False):
    """Cutouts of anchors at (150 + 0.01 i, 2) deg: a central source except in ``empty``, kind
    stress for ``stress``; with ``arcs``, every even cutout also gets a faint partial ring."""
    store.create_store(path, n_samples=n, stage="test", config={}, seed=0, stamp_size=STAMP,
                       chunk_size=8)
    man = store.store_geometry(path)
    yy, xx = np.mgrid[:STAMP, :STAMP]
    r = np.hypot(yy - STAMP // 2, xx - STAMP // 2)
    blob = 2.0 * np.exp(-(r**2) / (2 * 1.5**2))
    arc = 0.2 * np.exp(-((r - 7) ** 2) / 2) * (xx > STAMP // 2 + 3)
    ids = 1000 + np.arange(n)
    for i, (a, b) in enumerate(store.chunk_bounds(n, 8)):
        d = fake_chunk(ids[a:b], variables=man["variables"], stamp_size=STAMP, seed=1)
        d["ra"] = 150.0 + 0.01 * np.arange(a, b)
        d["dec"] = np.full(b - a, 2.0)
        kinds = []
        for j in range(a, b):
            if j not in empty:
                d["image"][j - a] += blob.astype("f4")
            if arcs and j % 2 == 0:
                d["image"][j - a] += arc.astype("f4")
            kinds.append("stress" if j in stress else "anchor")
        d["kind"] = np.array(kinds)
        store.write_chunk(path, i, d)
    store.finalize_store(path)
    return ids


def _setup(tmp_path, *, min_action="warn"):
    cut = tmp_path / "cut.zarr"
    ids = _cutout_store(cut)
    ra = 150.0 + 0.01 * np.arange(10)
    dec = np.full(10, 2.0)
    ref = pd.DataFrame({"name": [f"L{i}" for i in range(10)], "ra": ra, "dec": dec,
                        "grade": "confident", "ref": "Huang et al. (2021)"})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    typed = ref.copy()
    typed["id"] = ids[:10]
    typed.loc[5, "dec"] += 3.0 / 60.0  # the earlier pipeline's 3-arcmin error
    typed.to_csv(tmp_path / "list.csv", index=False)
    cfg = config_from_dict({
        "output_dir": str(tmp_path / "out"), "chunk_size": 4,
        "anchors": {"catalogs": [{"kind": "table", "path": str(tmp_path / "list.csv")}],
                    "reference": str(tmp_path / "ref.csv"), "cutouts": str(cut),
                    "min_anchors": 3, "min_action": min_action},
    })
    return cfg


def test_planted_offsets_and_empty_sky_rejected(tmp_path):
    cfg = _setup(tmp_path)
    out = run_anchors(cfg)
    rej = pd.read_csv(cfg.layout.anchors_rejected_csv)
    reasons = dict(zip(rej.name, rej.reason, strict=True))
    assert "coordinates off" in reasons["L5"] and "180" in reasons["L5"]
    assert "no source at the cutout centre" in reasons["L3"]
    assert "no source at the cutout centre" in reasons["L7"]
    acc = pd.read_csv(cfg.layout.anchors_csv)
    assert set(acc.name) == {"L0", "L1", "L2", "L4", "L6", "L8", "L9", "stress-1010",
                             "stress-1011"}
    assert (acc.match_sep_arcsec.dropna() < 2).all()
    assert set(acc[acc.kind == "anchor"].tier) == {"A"}
    ds = store.open_store(out)
    assert store.validate(out) == []
    assert sorted(ds.kind.values.tolist()).count("stress") == 2
    assert set(ds.tier.values.tolist()) == {"A", "stress"}
    # every list row accounted for: accepted + rejected = list rows (+ survey stress)
    assert len(acc) - 2 + len(rej) == 10


def test_visual_grades_fed_back(tmp_path):
    cfg = _setup(tmp_path)
    pd.DataFrame({"name": ["L0", "L1"], "grade": ["not_a_lens", "B"]}).to_csv(
        tmp_path / "grades.csv", index=False)
    cfg.anchors.visual_grades = str(tmp_path / "grades.csv")
    acc, rej = select_anchors(cfg)
    assert "visual inspection: not a lens" in set(rej.reason)
    assert acc.set_index("name").loc["L1", "tier"] == "B"


def test_min_size_fail(tmp_path):
    cfg = _setup(tmp_path, min_action="fail")
    cfg.anchors.min_anchors = 50
    with pytest.raises(RuntimeError, match="Tier-A"):
        run_anchors(cfg)


def test_centre_snr_on_noise_and_source():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.1, (200, STAMP, STAMP))
    ivar = np.full_like(img, 100.0)
    s = centre_snr(img, ivar, 3.0)
    assert abs(s.mean()) < 0.3 and 0.7 < s.std() < 1.3


def test_lenscat_reader_and_merge():
    pytest.importorskip("lenscat")
    df = catalogs.read_lenscat(gradings=["confident"], ref_include=["Huang", "Storfer"])
    assert len(df) > 100 and not df.ref.str.contains("Lopes").any()
    assert df.ra.between(0, 360).all() and df.dec.between(-90, 90).all()
    assert not df.name.str.contains(r"\|").any()
    a = df.iloc[:5].assign(source="a")
    b = df.iloc[3:8].assign(source="b")
    m = catalogs.merge_sources([a, b], 1.0)
    assert len(m) == 8
    assert m.provenance.str.contains(";").sum() == 2


def test_anchor_gate_passes_on_clean_output_and_fires_on_planted_offset(tmp_path):
    from gen5dask.gates import anchor_coordinates_gate

    cfg = _setup(tmp_path)
    run_anchors(cfg)
    lay = cfg.layout
    g = anchor_coordinates_gate(lay.anchors_csv, lay.anchors_rejected_csv, max_sep_arcsec=2.0)
    assert g["passed"] is True  # survey stress rows (no typed coordinates) are not offenders
    acc = pd.read_csv(lay.anchors_csv)
    acc.loc[acc.coordinates_typed.astype(bool).idxmax(), "match_sep_arcsec"] = 180.0
    acc.to_csv(lay.anchors_csv, index=False)
    g = anchor_coordinates_gate(lay.anchors_csv, lay.anchors_rejected_csv, max_sep_arcsec=2.0)
    assert g["passed"] is False
