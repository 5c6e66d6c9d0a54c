"""Tiny seeded scores tables for the evaluation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_scores(seed: int = 0, *, n_ctrl: int = 400, n_hard: int = 100, n_inj: int = 300,
                n_anchor: int = 60, n_stress: int = 20, n_ring: int = 30,
                sep: float = 1.5) -> pd.DataFrame:
    """A scores table with every kind, score = sigmoid(logit noise + sep * label)."""
    rng = np.random.default_rng(seed)
    rows = []
    sid = 0

    def add(n, kind, label, split, **cols):
        nonlocal sid
        logit = rng.normal(0.0, 1.0, n) + sep * label - 0.5
        if kind in ("injection", "anchor"):
            te = rng.uniform(0.5, 3.0, n)
            psf = rng.uniform(0.9, 1.6, n)
            logit = logit + 0.8 * (te / psf - 1.5)
        else:
            te = np.full(n, np.nan)
            psf = rng.uniform(0.9, 1.6, n)
        snr = rng.lognormal(1.5, 1.0, n) if kind == "injection" else np.full(n, np.nan)
        d = {
            "sample": np.arange(sid, sid + n, dtype=np.int64),
            "store": "train", "score": (1 / (1 + np.exp(-logit))).astype(np.float32),
            "label": np.full(n, label, np.int8), "kind": kind, "split": split,
            "region": rng.integers(0, 12, n).astype(np.int32), "tier": "", "subtype": "",
            "inject_mode": "", "eval_only": np.zeros(n, np.int8),
            "theta_e": te.astype(np.float32), "psfsize_r": psf.astype(np.float32),
            "psfdepth_r": rng.uniform(23.0, 25.0, n).astype(np.float32),
            "arc_snr": snr.astype(np.float32), "host_sample": np.full(n, -1, np.int64),
        }
        d.update(cols)
        sid += n
        rows.append(pd.DataFrame(d))

    add(n_ctrl, "control", 0, "test")
    add(n_ctrl // 2, "control", 0, "train")
    add(n_hard // 2, "hard_negative", 0, "test", subtype="spiral")
    add(n_hard // 2, "hard_negative", 0, "", subtype="ring_galaxy", eval_only=np.ones(
        n_hard // 2, np.int8), store="hardneg")
    add(n_hard // 2, "hard_negative", 0, "train", subtype="merger", store="hardneg")
    add(n_inj, "injection", 1, "test", inject_mode="calibrated")
    add(n_inj, "injection", 1, "test", inject_mode="uncalibrated")
    add(n_inj // 2, "injection", 1, "train", inject_mode="calibrated")
    add(n_anchor, "anchor", 1, "", tier="A", store="anchors")
    add(n_anchor // 2, "anchor", 1, "", tier="B", store="anchors")
    add(n_stress, "stress", 1, "", tier="stress", store="anchors")
    add(n_ring, "ring", 0, "", store="survey")
    add(20, "null_injection", 0, "test")
    return pd.concat(rows, ignore_index=True)
