"""Metrics of one ablation arm from its scores table (DESIGN §7; the operating-point rule is exact).

The scores table has one row per scored sample with columns ``sample, store, score, label, kind,
split, region, tier, subtype, inject_mode, eval_only, theta_e, psfsize_r, psfdepth_r, arc_snr,
host_sample`` (see :func:`validate_scores`).

Operating point at FPR = a: with N evaluation negatives and ``k = floor(a N)``, a sample is called
a lens when its score is *strictly greater* than the (k+1)-th highest negative score; that score
is the threshold, so at most k negatives pass (ties at the threshold do not pass). Every recall
at that operating point (injections, Tier-A, stress) uses the same threshold, so any reader can
recompute it from the scores table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import stats as _st
from sklearn.metrics import roc_auc_score, roc_curve

from gen5dask.evaluate.limits import (
    limit_recall,
    matched_filter_recall,
    reweight_bins,
    reweighted_recall,
    reweighted_recall_bootstrap_ci,
)
from gen5dask.evaluate.selection import completeness_1d, completeness_2d, edges_to_json
from gen5dask.evaluate.stats import (
    bootstrap_ci,
    bootstrap_rng,
    finite_or_none,
    to_jsonable,
    wilson_interval,
)
from gen5dask.kernels.ranksum import resampled_auc_sum

__all__ = [
    "KINDS",
    "arm_metrics_kwargs",
    "auc",
    "auc_bootstrap_ci",
    "compute_arm_metrics",
    "evaluation_negatives",
    "fpr_tag",
    "k_for_fpr",
    "operating_point",
    "operating_point_k",
    "positives",
    "recall_at_threshold",
    "recall_at_fpr_bootstrap_ci",
    "saturation",
    "validate_scores",
]

KINDS = ("host", "control", "injection", "anchor", "stress", "hard_negative", "ring",
         "null_injection")
_REQUIRED = ("sample", "score", "label", "kind", "split")
_OPTIONAL_DEFAULTS = {
    "store": "", "region": -1, "tier": "", "subtype": "", "inject_mode": "", "eval_only": 0,
    "theta_e": np.nan, "psfsize_r": np.nan, "psfdepth_r": np.nan, "arc_snr": np.nan,
    "host_sample": -1, "snr_opt": np.nan,
}
_HIST_BINS = 50
_STRING_COLUMNS = ("kind", "split", "tier", "subtype", "inject_mode", "store")


def fpr_tag(fpr: float) -> str:
    """Metric-name form of a false-positive rate: 0.01 -> "0.01", 0.001 -> "0.001"."""
    return f"{fpr:g}"


def k_for_fpr(fpr: float, n_negatives: int) -> int:
    """``floor(fpr * N)`` computed exactly on the decimal the user wrote (0.29*100 -> 29)."""
    if not 0.0 <= fpr <= 1.0:
        msg = f"fpr must be in [0, 1], got {fpr}"
        raise ValueError(msg)
    return math.floor(Fraction(repr(float(fpr))) * int(n_negatives))


def operating_point_k(neg_scores: np.ndarray, k: int) -> dict:
    """Threshold that leaves at most ``k`` negatives strictly above it.

    Parameters
    ----------
    neg_scores : array_like of float
        Scores (p_lens) of the N evaluation negatives.
    k : int
        Allowed false positives (>= 0).

    Returns
    -------
    dict
        ``threshold`` (the (k+1)-th highest negative score; ``-inf`` when k >= N, i.e. every
        sample is called a lens; NaN when N = 0), ``k``, ``n_negatives`` (N) and
        ``n_false_positives`` (negatives with score > threshold, <= k).
    """
    neg = np.asarray(neg_scores, dtype=np.float64).ravel()
    n = int(neg.size)
    k = int(k)
    if k < 0:
        msg = f"operating_point_k: k must be >= 0, got {k}"
        raise ValueError(msg)
    if n == 0:
        return {"threshold": math.nan, "k": k, "n_negatives": 0, "n_false_positives": 0}
    if k >= n:
        return {"threshold": -math.inf, "k": k, "n_negatives": n, "n_false_positives": n}
    # (k+1)-th highest = element n-k-1 of the ascending order
    thr = float(np.partition(neg, n - k - 1)[n - k - 1])
    return {"threshold": thr, "k": k, "n_negatives": n,
            "n_false_positives": int(np.count_nonzero(neg > thr))}


def operating_point(neg_scores: np.ndarray, fpr: float) -> dict:
    """Exact operating point at false-positive rate ``fpr`` (DESIGN §7).

    ``k = floor(fpr * N)``; see :func:`operating_point_k` for the returned dict (plus ``fpr``).
    """
    neg = np.asarray(neg_scores, dtype=np.float64).ravel()
    out = operating_point_k(neg, k_for_fpr(fpr, neg.size))
    out["fpr"] = float(fpr)
    return out


def recall_at_threshold(pos_scores: np.ndarray, threshold: float) -> tuple[int, int, float | None]:
    """``(k, n, k/n)``: positives with score strictly above ``threshold`` (None if n = 0 or the
    threshold is undefined)."""
    pos = np.asarray(pos_scores, dtype=np.float64).ravel()
    if pos.size == 0 or math.isnan(threshold):
        return 0, int(pos.size), None
    k = int(np.count_nonzero(pos > threshold))
    return k, int(pos.size), k / pos.size


def recall_at_fpr_bootstrap_ci(
    neg_scores: np.ndarray,
    pos_scores: np.ndarray,
    fpr: float | None = None,
    *,
    k: int | None = None,
    n_boot: int,
    seed: int,
    conf: float = 0.95,
    name: str = "recall",
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the recall at an operating point.

    Negatives and positives are resampled independently (so the threshold varies too). The
    resampling is done exactly in distribution but without materialising resamples: the (k+1)-th
    highest of N resampled negatives is ``sorted_neg[floor(U N)]`` with ``U ~ Beta(N-k, k+1)``
    (the (N-k)-th uniform order statistic), and the number of resampled positives above a
    threshold t is ``Binomial(n_pos, frac_above(t))``. Cost O(n log n + n_boot), whatever N.

    Parameters
    ----------
    neg_scores, pos_scores : array_like of float
        Scores of the evaluation negatives and of the positives.
    fpr : float, optional
        False-positive rate (``k = floor(fpr N)``); or give ``k`` (allowed false positives).
    k : int, optional
        Fixed number of false positives (TPR_k); exclusive with ``fpr``.
    n_boot, seed, conf, name
        Replicates, run seed, confidence level, stream name (see :func:`bootstrap_ci`).

    Returns
    -------
    (lo, hi) : tuple of float or None
    """
    if (fpr is None) == (k is None):
        msg = "recall_at_fpr_bootstrap_ci: give exactly one of fpr, k"
        raise ValueError(msg)
    neg = np.sort(np.asarray(neg_scores, dtype=np.float64).ravel())
    pos = np.sort(np.asarray(pos_scores, dtype=np.float64).ravel())
    n, n_pos = neg.size, pos.size
    if n == 0 or n_pos == 0:
        return None, None
    kk = k_for_fpr(fpr, n) if fpr is not None else int(k)
    rng = bootstrap_rng(seed, name)
    if kk >= n:
        thr = np.full(n_boot, -np.inf)
    else:
        u = rng.beta(n - kk, kk + 1, size=n_boot)
        thr = neg[np.minimum((u * n).astype(np.int64), n - 1)]
    frac_above = (n_pos - np.searchsorted(pos, thr, side="right")) / n_pos
    reps = rng.binomial(n_pos, frac_above) / n_pos
    lo, hi = np.quantile(reps, [0.5 - conf / 2.0, 0.5 + conf / 2.0])
    return float(lo), float(hi)


def auc(neg_scores: np.ndarray, pos_scores: np.ndarray) -> float | None:
    """ROC AUC of positives against negatives (``sklearn.metrics.roc_auc_score``; ties count
    one half). ``None`` when either class is empty."""
    neg = np.asarray(neg_scores, dtype=np.float64).ravel()
    pos = np.asarray(pos_scores, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        return None
    y = np.concatenate([np.zeros(neg.size, np.int8), np.ones(pos.size, np.int8)])
    return float(roc_auc_score(y, np.concatenate([neg, pos])))


def auc_bootstrap_ci(
    neg_scores: np.ndarray,
    pos_scores: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    conf: float = 0.95,
    name: str = "auc",
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the AUC (classes resampled independently).

    Scores are ranked once; each replicate is a ``bincount`` of resampled rank groups, so the
    cost is O(n) per replicate with no sort (ties count one half, as in the point estimate).
    """
    neg = np.asarray(neg_scores, dtype=np.float64).ravel()
    pos = np.asarray(pos_scores, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        return None, None
    uniq, inv = np.unique(np.concatenate([neg, pos]), return_inverse=True)
    g_neg = np.ascontiguousarray(inv[: neg.size], dtype=np.int64)
    g_pos = np.ascontiguousarray(inv[neg.size:], dtype=np.int64)
    ng = uniq.size
    rng = bootstrap_rng(seed, name)
    reps = np.empty(n_boot)
    wn, wp = np.empty(ng, np.int64), np.empty(ng, np.int64)
    denom = 2 * neg.size * pos.size
    for b in range(n_boot):
        # 2U exactly (kernels.ranksum); the same draws and value as bincount/cumsum/dot
        idx_n = rng.integers(0, neg.size, neg.size)
        idx_p = rng.integers(0, pos.size, pos.size)
        reps[b] = resampled_auc_sum(g_neg, g_pos, idx_n, idx_p, wn, wp) / denom
    lo, hi = np.quantile(reps, [0.5 - conf / 2.0, 0.5 + conf / 2.0])
    return float(lo), float(hi)


def validate_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Check a scores table and fill optional columns with their defaults.

    Required columns: ``sample, score, label, kind, split``. Optional (defaults): ``store ""``,
    ``region -1``, ``tier ""``, ``subtype ""``, ``inject_mode ""``, ``eval_only 0``,
    ``theta_e, psfsize_r, psfdepth_r, arc_snr, snr_opt`` NaN, ``host_sample -1``.

    Raises
    ------
    ValueError
        Missing required column, non-finite or out-of-[0, 1] score, unknown ``kind``, or a label
        other than 0/1 — naming the column and the first offending sample ids.
    """
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        msg = f"scores table: missing required column(s) {missing}; has {list(df.columns)}"
        raise ValueError(msg)
    out = df.copy(deep=False)  # copy-on-write: the columns replaced below never touch df
    n = len(out)
    for col, default in _OPTIONAL_DEFAULTS.items():
        if col not in out.columns:
            out[col] = (pd.Categorical.from_codes(np.zeros(n, np.int8), categories=[default])
                        if isinstance(default, str) else default)
    for col in _STRING_COLUMNS:
        out[col] = _as_strings(out[col])
    score = out["score"].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(score) | (score < 0.0) | (score > 1.0)
    if bad.any():
        ids = out["sample"].to_numpy()[bad][:5].tolist()
        msg = f"scores table: column 'score' not finite in [0, 1] for sample(s) {ids}"
        raise ValueError(msg)
    unknown = sorted(set(out["kind"].unique()) - set(KINDS))
    if unknown:
        ids = out.loc[out["kind"].isin(unknown), "sample"].head(5).tolist()
        msg = f"scores table: unknown kind(s) {unknown} (sample(s) {ids}); expected {KINDS}"
        raise ValueError(msg)
    lab = out["label"].to_numpy()
    badl = (lab != 0) & (lab != 1)
    if badl.any():
        ids = out["sample"].to_numpy()[badl][:5].tolist()
        msg = f"scores table: column 'label' must be 0 or 1; sample(s) {ids}"
        raise ValueError(msg)
    return out


def _as_strings(s: pd.Series) -> pd.Series:
    """A string column with missing values as ``""``; a ``Categorical`` of strings stays one
    (its codes, 1 B a row, instead of a string per row), anything else becomes ``str``."""
    if isinstance(s.dtype, pd.CategoricalDtype) and all(
            isinstance(c, str) for c in s.cat.categories):
        if s.isna().any():
            if "" not in s.cat.categories:
                s = s.cat.add_categories([""])
            s = s.fillna("")
        return s
    return s.fillna("").astype(str)


def _check_label(rows: pd.DataFrame, want: int, what: str) -> None:
    bad = rows["label"].to_numpy() != want
    if bad.any():
        ids = rows["sample"].to_numpy()[bad][:5].tolist()
        msg = f"{what}: expected label {want}, found otherwise for sample(s) {ids}"
        raise ValueError(msg)


def evaluation_negatives(df: pd.DataFrame) -> pd.DataFrame:
    """The evaluation negatives, at their natural mix (DESIGN §7).

    Exactly the rows with

    * ``kind == "control"`` and ``split == "test"`` (controls of the test regions), plus
    * ``kind == "hard_negative"`` and (``split == "test"`` or ``eval_only == 1``) (hard
      negatives of the test regions, and the evaluation slice that is never trained on).

    No reweighting: the mix is whatever the stores hold. Hosts, null injections and synthetic
    rings are *not* negatives here (rings are a separate diagnostic).

    Raises
    ------
    ValueError
        If a selected row has label != 0 (names the samples).
    """
    d = validate_scores(df)
    kind, split = d["kind"], d["split"]
    m = ((kind == "control") & (split == "test")) | (
        (kind == "hard_negative") & ((split == "test") | (d["eval_only"].astype(int) == 1))
    )
    rows = d.loc[m]
    _check_label(rows, 0, "evaluation negatives")
    return rows


def positives(df: pd.DataFrame, which: str, *, inject_mode: str = "calibrated") -> pd.DataFrame:
    """Positive rows of one population.

    Parameters
    ----------
    df : DataFrame
        Validated scores table.
    which : {"injection", "tier_a", "stress"}
        ``"injection"``: ``kind == "injection"``, ``split == "test"`` and ``inject_mode`` equal
        to ``inject_mode`` (``"any"``: every mode) — held-out injections;
        ``"tier_a"``: ``kind == "anchor"`` and ``tier == "A"`` in all regions (anchors are never
        trained on); ``"stress"``: ``kind == "stress"`` in all regions (e.g. SLACS/BELLS).
    inject_mode : str
        Brightness mode of the injections.

    Raises
    ------
    ValueError
        Unknown ``which``, or a selected row with label != 1.
    """
    if which == "injection":
        m = (df["kind"] == "injection") & (df["split"] == "test")
        if inject_mode != "any":
            m &= df["inject_mode"] == inject_mode
    elif which == "tier_a":
        m = (df["kind"] == "anchor") & (df["tier"] == "A")
    elif which == "stress":
        m = df["kind"] == "stress"
    else:
        msg = f"positives: which must be 'injection', 'tier_a' or 'stress', got {which!r}"
        raise ValueError(msg)
    rows = df.loc[m]
    _check_label(rows, 1, f"positives[{which}]")
    return rows


def saturation(scores: np.ndarray, *, high: float = 0.999, low: float = 0.001) -> dict:
    """Score saturation of one group: ``{n, frac_above_high, frac_below_low, unique_frac}``
    (``unique_frac`` = distinct score values / n; a saturated net gives many exact 1.0)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        return {"n": 0, "frac_above_high": None, "frac_below_low": None, "unique_frac": None}
    return {"n": int(s.size), "frac_above_high": float(np.mean(s > high)),
            "frac_below_low": float(np.mean(s < low)),
            "unique_frac": float(np.unique(s).size / s.size)}


def _roc_points(neg: np.ndarray, pos: np.ndarray, max_points: int = 400) -> dict | None:
    if neg.size == 0 or pos.size == 0:
        return None
    y = np.concatenate([np.zeros(neg.size), np.ones(pos.size)])
    fpr, tpr, _ = roc_curve(y, np.concatenate([neg, pos]), drop_intermediate=True)
    if fpr.size > max_points:
        # keep points evenly spaced in log(fpr) (the interesting end) plus the end points
        grid = np.geomspace(max(1.0 / neg.size, 1e-12), 1.0, max_points)
        keep = np.unique(np.concatenate([[0, fpr.size - 1], np.searchsorted(fpr, grid)]))
        keep = keep[keep < fpr.size]
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _spearman(scores: np.ndarray, x: np.ndarray) -> float:
    if scores.size < 3 or np.all(x == x[0]) or np.all(scores == scores[0]):
        return math.nan
    return float(_st.spearmanr(scores, x).statistic)


def _stratified_auc(neg: np.ndarray, pos: np.ndarray, values: np.ndarray,
                    edges: Sequence[float]) -> list[dict]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = pos[(values >= lo) & (values < hi)]
        out.append({"lo": finite_or_none(lo), "hi": finite_or_none(hi), "n_pos": int(sel.size),
                    "auc": auc(neg, sel)})
    return out


def _binned_mean(x: np.ndarray, y: np.ndarray, edges: Sequence[float]) -> list[float | None]:
    """Mean of finite ``y`` in half-open bins of ``x`` (None for a bin without values)."""
    e = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(e, x, side="right") - 1
    ok = (idx >= 0) & (idx < e.size - 1) & np.isfinite(x) & np.isfinite(y)
    nb = e.size - 1
    n = np.bincount(idx[ok], minlength=nb)
    tot = np.bincount(idx[ok], weights=y[ok], minlength=nb)
    return [float(t / c) if c else None for t, c in zip(tot, n, strict=True)]


def _score_hist(groups: dict[str, np.ndarray]) -> dict:
    edges = np.linspace(0.0, 1.0, _HIST_BINS + 1)
    return {"edges": edges.tolist(),
            "counts": {g: np.histogram(s, bins=edges)[0].tolist() for g, s in groups.items()}}


def arm_metrics_kwargs(config, *, seed: int) -> dict:
    """Keyword arguments of :func:`compute_arm_metrics` from an ``EvaluateConfig`` and the run
    seed (the bootstrap seed is ``seed + config.bootstrap_seed_offset``)."""
    return {
        "fprs": tuple(config.fprs), "n_boot": config.n_bootstrap,
        "seed": int(seed) + config.bootstrap_seed_offset, "inject_mode": config.inject_mode,
        "conf": config.conf, "tpr_n_false_positives": config.tpr_n_false_positives,
        "spearman_tiers": tuple(config.spearman_tiers), "ring_threshold": config.ring_threshold,
        "saturation_high": config.saturation_high, "saturation_low": config.saturation_low,
        "bins": config.bins.model_dump(),
        "bright_arc_snr": config.bright_arc_snr,
        "reweight_quantity": config.reweight_quantity,
        "reweight_n_bins": config.reweight_n_bins,
    }


_DEFAULT_BINS = {
    "theta_e_over_psf": [0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 100.0],
    "arc_snr": [0.0, 0.8, 2.0, 8.0, 20.0, 1.0e6],
    "psfdepth_r": [20.0, 23.0, 23.5, 24.0, 24.5, 25.0, 30.0],
}


def compute_arm_metrics(
    df: pd.DataFrame,
    *,
    fprs: Sequence[float] = (1e-2, 1e-3),
    n_boot: int = 1000,
    seed: int = 0,
    inject_mode: str = "calibrated",
    conf: float = 0.95,
    tpr_n_false_positives: int = 10,
    spearman_tiers: Sequence[str] = ("A",),
    ring_threshold: float = 0.5,
    saturation_high: float = 0.999,
    saturation_low: float = 0.001,
    bins: dict | None = None,
    bright_arc_snr: float = 8.0,
    reweight_quantity: str = "arc_snr",
    reweight_n_bins: int = 8,
) -> dict:
    """All metrics of one arm, JSON-serialisable (undefined values are ``None``, never NaN).

    Parameters
    ----------
    df : DataFrame
        The arm's scores table (see :func:`validate_scores`).
    fprs : sequence of float
        Operating points (false-positive rates); the first is primary (completeness maps, and
        the Tier-A/stress recall the decision tree reads at 0.01 by default).
    n_boot : int
        Bootstrap replicates.
    seed : int
        Bootstrap seed (streams are keyed by metric name).
    inject_mode : str
        Brightness mode of the positive injections ("uncalibrated", "calibrated" or "any").
    conf : float
        Confidence level of all intervals.
    tpr_n_false_positives : int
        N of TPR_N (``tpr10`` key is written whatever N, and ``tpr_n_false_positives`` says N).
    spearman_tiers : sequence of str
        Anchor tiers used for Spearman rho of score vs theta_E/psfsize_r.
    ring_threshold : float
        p_lens threshold of ``ring_frac_above_<t>``.
    saturation_high, saturation_low : float
        Saturation thresholds.
    bins : dict, optional
        Edges ``{"theta_e_over_psf", "arc_snr", "psfdepth_r"}`` (defaults as ``EvaluateConfig``).
    bright_arc_snr : float
        ``auc_arc_snr_ge`` is the AUC of held-out injections with ``arc_snr >=`` this.
    reweight_quantity : {"arc_snr", "snr_opt", "theta_e"}
        Quantity whose Tier-A distribution the injection recall is reweighted to
        (``injection_recall_reweighted_to_tier_a_at_fpr_A``).
    reweight_n_bins : int
        Number of Tier-A quantile bins of that reweighting.

    Returns
    -------
    dict
        Keys (A = each FPR tag, e.g. "0.01"): ``auc`` (+ ``auc_bootstrap``), ``n_negatives``,
        ``n_injections``, ``recall_at_fpr_A`` (+ ``_wilson``, ``_bootstrap``),
        ``threshold_at_fpr_A``, ``n_false_positives_at_fpr_A``, ``n_negatives_at_threshold``
        (N used for the thresholds), ``tpr0``, ``tpr10`` (+ intervals, thresholds),
        ``tier_a_recall_at_fpr_A`` (+ intervals), ``tier_a_n``, ``stress_recall_at_fpr_A``,
        ``stress_n``, ``ring_n``, ``ring_median_score``, ``ring_frac_above_<t>`` (+ Wilson),
        ``spearman_score_vs_thetae_over_psf`` (+ ``_ci``, ``_n``), ``completeness``,
        ``stratified_auc``, ``saturation``, ``roc``, ``score_hist``, ``definitions``;
        the physical limits ``limit_recall_at_fpr_A``, ``tier_a_limit_recall_at_fpr_A``,
        ``stress_limit_recall_at_fpr_A`` (mean matched-filter recall, see
        :mod:`gen5dask.evaluate.limits`; None without ``snr_opt``) with ``_n`` counts and the
        ratios ``recall_over_limit_at_fpr_A``, ``tier_a_recall_over_limit_at_fpr_A``;
        ``injection_recall_reweighted_to_tier_a_at_fpr_A`` (+ ``_bootstrap``, ``_coverage``);
        ``auc_arc_snr_ge`` (+ ``_bootstrap``, ``_n``, ``bright_arc_snr``).
    """
    d = validate_scores(df)
    if not fprs:
        msg = "compute_arm_metrics: fprs is empty"
        raise ValueError(msg)
    b = dict(_DEFAULT_BINS)
    if bins:
        unknown = sorted(set(bins) - set(_DEFAULT_BINS))
        if unknown:
            msg = f"compute_arm_metrics: unknown bins key(s) {unknown}"
            raise ValueError(msg)
        b.update(bins)
    negs = evaluation_negatives(d)
    inj = positives(d, "injection", inject_mode=inject_mode)
    tier_a = positives(d, "tier_a")
    stress = positives(d, "stress")
    rings = d.loc[d["kind"] == "ring"]
    neg = negs["score"].to_numpy(np.float64)
    pos = inj["score"].to_numpy(np.float64)
    sa = tier_a["score"].to_numpy(np.float64)
    ss = stress["score"].to_numpy(np.float64)
    m: dict = {
        "n_negatives": int(neg.size),
        "n_negatives_at_threshold": int(neg.size),
        "n_negatives_control": int((negs["kind"] == "control").sum()),
        "n_negatives_hard": int((negs["kind"] == "hard_negative").sum()),
        "n_injections": int(pos.size),
        "inject_mode": inject_mode,
        "fprs": [float(f) for f in fprs],
        "conf": conf,
        "tier_a_n": int(sa.size),
        "stress_n": int(ss.size),
    }
    m["auc"] = auc(neg, pos)
    m["auc_bootstrap"] = list(auc_bootstrap_ci(neg, pos, n_boot=n_boot, seed=seed, conf=conf))

    def _recall(prefix: str, p: np.ndarray, op: dict, tag: str, **kw) -> None:
        k, n, r = recall_at_threshold(p, op["threshold"])
        name = f"{prefix}recall_at_fpr_{tag}" if tag else prefix
        m[name] = r
        m[f"{name}_k"] = k
        m[f"{name}_wilson"] = list(wilson_interval(k, n, conf))
        m[f"{name}_bootstrap"] = list(
            recall_at_fpr_bootstrap_ci(neg, p, n_boot=n_boot, seed=seed, conf=conf, name=name,
                                       **kw))

    if reweight_quantity not in ("arc_snr", "snr_opt", "theta_e"):
        msg = f"compute_arm_metrics: reweight_quantity {reweight_quantity!r} not supported"
        raise ValueError(msg)
    rw_pos = inj[reweight_quantity].to_numpy(np.float64)
    rw_target = tier_a[reweight_quantity].to_numpy(np.float64)
    rw_edges = reweight_bins(rw_target, reweight_n_bins)
    m["reweight"] = {"quantity": reweight_quantity,
                     "edges": edges_to_json(rw_edges),
                     "n_target_with_value": int(np.isfinite(rw_target).sum())}
    populations = {"": inj, "tier_a_": tier_a, "stress_": stress}
    for fpr in fprs:
        tag = fpr_tag(fpr)
        op = operating_point(neg, fpr)
        m[f"threshold_at_fpr_{tag}"] = op["threshold"]
        m[f"n_false_positives_at_fpr_{tag}"] = op["n_false_positives"]
        m[f"k_at_fpr_{tag}"] = op["k"]
        _recall("", pos, op, tag, fpr=fpr)
        _recall("tier_a_", sa, op, tag, fpr=fpr)
        _recall("stress_", ss, op, tag, fpr=fpr)
        for prefix, rows in populations.items():
            lim, n_lim, _ = limit_recall(rows["snr_opt"].to_numpy(np.float64), fpr)
            m[f"{prefix}limit_recall_at_fpr_{tag}"] = lim
            m[f"{prefix}limit_recall_at_fpr_{tag}_n"] = n_lim
            rec = m[f"{prefix}recall_at_fpr_{tag}"]
            m[f"{prefix}recall_over_limit_at_fpr_{tag}"] = (
                rec / lim if rec is not None and lim else None)
        if np.isfinite(rw_target).any():
            rw = reweighted_recall(pos, rw_pos, rw_target, op["threshold"], rw_edges)
            name = f"injection_recall_reweighted_to_tier_a_at_fpr_{tag}"
            m[name] = rw["recall"]
            m[f"{name}_coverage"] = rw["coverage"]
            m[f"{name}_bootstrap"] = list(reweighted_recall_bootstrap_ci(
                neg, pos, rw_pos, rw_target, op["k"], rw_edges, n_boot=n_boot, seed=seed,
                conf=conf, name=name))
    for key, kfp in (("tpr0", 0), ("tpr10", int(tpr_n_false_positives))):
        op = operating_point_k(neg, kfp)
        m[f"threshold_{key}"] = op["threshold"]
        _recall(key, pos, op, "", k=kfp)
    m["tpr_n_false_positives"] = int(tpr_n_false_positives)

    # synthetic rings
    rs = rings["score"].to_numpy(np.float64)
    rt = f"{ring_threshold:g}"
    m["ring_n"] = int(rs.size)
    m["ring_median_score"] = float(np.median(rs)) if rs.size else None
    k_ring = int(np.count_nonzero(rs > ring_threshold))
    m[f"ring_frac_above_{rt}"] = k_ring / rs.size if rs.size else None
    m[f"ring_frac_above_{rt}_wilson"] = list(wilson_interval(k_ring, rs.size, conf))

    # Spearman rho of score vs theta_E/PSF on anchors of the chosen tiers
    anc = d.loc[(d["kind"] == "anchor") & d["tier"].isin(list(spearman_tiers))]
    x = (anc["theta_e"].to_numpy(np.float64) / anc["psfsize_r"].to_numpy(np.float64))
    y = anc["score"].to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m["spearman_score_vs_thetae_over_psf"] = _spearman(y, x)
    m["spearman_score_vs_thetae_over_psf_n"] = int(x.size)
    m["spearman_score_vs_thetae_over_psf_ci"] = list(bootstrap_ci(
        _spearman, y, x, n_boot=n_boot, seed=seed, conf=conf, paired=True,
        name="spearman_score_vs_thetae_over_psf")) if x.size >= 3 else [None, None]
    m["spearman_tiers"] = list(spearman_tiers)

    # selection function at the primary operating point
    thr = m[f"threshold_at_fpr_{fpr_tag(fprs[0])}"]
    passed = pos > thr if not math.isnan(thr) else np.zeros(pos.size, bool)
    te_psf = inj["theta_e"].to_numpy(np.float64) / inj["psfsize_r"].to_numpy(np.float64)
    snr = inj["arc_snr"].to_numpy(np.float64)
    depth = inj["psfdepth_r"].to_numpy(np.float64)
    m["completeness"] = {
        "fpr": float(fprs[0]),
        "threshold": thr,
        "theta_e_over_psf": completeness_1d(te_psf, passed, b["theta_e_over_psf"], conf=conf,
                                            name="theta_e_over_psf"),
        "arc_snr": completeness_1d(snr, passed, b["arc_snr"], conf=conf, name="arc_snr"),
        "psfdepth_r": completeness_1d(depth, passed, b["psfdepth_r"], conf=conf,
                                      name="psfdepth_r"),
        "theta_e_over_psf_x_arc_snr": completeness_2d(
            te_psf, snr, passed, b["theta_e_over_psf"], b["arc_snr"], conf=conf,
            x_name="theta_e_over_psf", y_name="arc_snr"),
        "theta_e_over_psf_x_psfdepth_r": completeness_2d(
            te_psf, depth, passed, b["theta_e_over_psf"], b["psfdepth_r"], conf=conf,
            x_name="theta_e_over_psf", y_name="psfdepth_r"),
    }
    lim_each = matched_filter_recall(inj["snr_opt"].to_numpy(np.float64), float(fprs[0]))
    for axis, values in (("theta_e_over_psf", te_psf), ("arc_snr", snr), ("psfdepth_r", depth)):
        m["completeness"][axis]["limit"] = _binned_mean(values, lim_each, b[axis])
    bright = snr >= bright_arc_snr
    m["bright_arc_snr"] = float(bright_arc_snr)
    m["auc_arc_snr_ge"] = auc(neg, pos[bright])
    m["auc_arc_snr_ge_n"] = int(bright.sum())
    m["auc_arc_snr_ge_bootstrap"] = list(auc_bootstrap_ci(
        neg, pos[bright], n_boot=n_boot, seed=seed, conf=conf, name="auc_arc_snr_ge"))
    m["stratified_auc"] = {
        "arc_snr": _stratified_auc(neg, pos, snr, b["arc_snr"]),
        "theta_e_over_psf": _stratified_auc(neg, pos, te_psf, b["theta_e_over_psf"]),
        "edges": {k: edges_to_json(v) for k, v in b.items()},
    }
    groups = {
        "negatives_control": negs.loc[negs["kind"] == "control", "score"].to_numpy(),
        "negatives_hard": negs.loc[negs["kind"] == "hard_negative", "score"].to_numpy(),
        "injections": pos, "tier_a": sa, "stress": ss, "rings": rs,
    }
    m["saturation"] = {g: saturation(s, high=saturation_high, low=saturation_low)
                       for g, s in groups.items()}
    m["saturation"]["thresholds"] = {"high": saturation_high, "low": saturation_low}
    m["roc"] = _roc_points(neg, pos)
    m["score_hist"] = _score_hist(groups)
    m["definitions"] = {
        "negatives": "test-split controls + hard negatives (test split or eval_only) at their "
                     "natural mix",
        "positives": f"test-split injections with inject_mode={inject_mode!r}",
        "tier_a": "anchors with tier 'A', all regions",
        "stress": "kind 'stress', all regions",
        "operating_point": "k=floor(fpr*N); called a lens when score > (k+1)-th highest "
                           "negative score (the threshold)",
        "tpr10": f"recall at the threshold leaving <= {tpr_n_false_positives} negatives above",
        "limit": "matched-filter recall Phi(snr_opt - Phi^-1(1 - fpr)), snr_opt = "
                 "sqrt(sum_bands sum_pixels arc^2 invvar) over good pixels, averaged over the "
                 "population (samples without a truth arc left out)",
        "reweighted": f"held-out injection recall with Tier-A fractions per Tier-A quantile bin "
                      f"of {reweight_quantity} ({reweight_n_bins} bins)",
        "bootstrap": f"percentile, {n_boot} replicates, seed {seed}, negatives and positives "
                     "resampled independently",
    }
    return to_jsonable(m)
