"""Small-sample statistics shared by the evaluation and the audit (DESIGN §7).

Everything here is a pure function of numpy arrays and returns plain Python numbers, lists and
dicts that serialise to JSON (undefined values are ``None``, never NaN).

Random resampling is keyed (DESIGN §5): a bootstrap draws from
``gen5dask.kernels.rng.generator(seed, "evaluate/bootstrap/<name>", 0)``, so the same seed and
name give the same interval on any machine, and two different statistics never share a stream.

What scipy does as well is taken from scipy: BCa bootstrap intervals
(``scipy.stats.bootstrap``, ``bootstrap_ci(..., method="BCa")``) and permutation p-values of the
k-sample Anderson-Darling test (``scipy.stats.anderson_ksamp(method=PermutationMethod)``, which,
unlike the tabulated p-value, is not capped to [0.001, 0.25]). Hand-written and kept: the Wilson
interval (closed form), Cliff's delta (O(n log n) by ``searchsorted``; scipy has none) and the
percentile bootstrap, which drops non-finite replicates (a rank correlation of a resample with
one distinct value) where ``scipy.stats.bootstrap`` returns a NaN interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _st

from gen5dask.kernels.rng import generator

__all__ = [
    "ad_permutation_test",
    "bootstrap_ci",
    "bootstrap_rng",
    "group_summary",
    "cliffs_delta",
    "compare_populations",
    "effect_size_summary",
    "finite_or_none",
    "to_jsonable",
    "wilson_interval",
]


def finite_or_none(x: float | None) -> float | None:
    """``float(x)`` if finite, else ``None`` (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def to_jsonable(obj):
    """Deep copy of ``obj`` with numpy scalars/arrays as Python numbers/lists, tuples as lists,
    and every NaN or infinity replaced by ``None`` (``json.dumps(..., allow_nan=False)`` works).
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return finite_or_none(obj)
    return obj


def bootstrap_rng(seed: int, name: str) -> np.random.Generator:
    """Keyed generator for the bootstrap of statistic ``name`` (DESIGN §5)."""
    return generator(int(seed), f"evaluate/bootstrap/{name}", 0)


def wilson_interval(k: int, n: int, conf: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    k : int
        Successes (0 <= k <= n).
    n : int
        Trials. ``n == 0`` gives ``(None, None)``.
    conf : float
        Two-sided confidence level in (0, 1).

    Returns
    -------
    (lo, hi) : tuple of float or None
        ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``p = k/n`` and
        ``z`` the ``(1+conf)/2`` normal quantile (Wilson 1927), clipped to [0, 1].
    """
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        msg = f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}"
        raise ValueError(msg)
    if not 0.0 < conf < 1.0:
        msg = f"wilson_interval: conf must be in (0, 1), got {conf}"
        raise ValueError(msg)
    if n == 0:
        return None, None
    z = float(_st.norm.ppf(0.5 + conf / 2.0))
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # exact limits at the boundaries (centre - half is 0 only up to rounding when k = 0)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def bootstrap_ci(
    func: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int,
    seed: int,
    conf: float = 0.95,
    paired: bool = True,
    name: str = "statistic",
    method: str = "percentile",
) -> tuple[float | None, float | None]:
    """Bootstrap interval of ``func(*arrays)`` (percentile, or BCa through scipy).

    Parameters
    ----------
    func : callable
        Statistic of the (resampled) arrays, returning a float; NaN replicates are dropped.
    *arrays : array_like
        Samples. With ``paired=True`` they must have one length and are resampled with the same
        row indices (e.g. score and theta_E/PSF of the same anchors); with ``paired=False`` each
        is resampled independently (e.g. two populations).
    n_boot : int
        Number of replicates (> 0).
    seed : int
        Run seed; the stream is keyed by (seed, ``name``).
    conf : float
        Two-sided confidence level.
    paired : bool
        See ``arrays``.
    name : str
        Name of the statistic, used to key the random stream.
    method : {"percentile", "BCa"}
        ``percentile`` (default; hand-written, non-finite replicates dropped) or ``BCa``
        (bias-corrected and accelerated, ``scipy.stats.bootstrap`` with the same keyed stream;
        second-order accurate for smooth statistics, NaN-free statistics only).

    Returns
    -------
    (lo, hi) : tuple of float or None
        ``(1-conf)/2`` and ``(1+conf)/2`` percentiles of the replicates (``percentile``) or the
        BCa limits; ``(None, None)`` when an array is empty or fewer than two replicates are
        finite (``percentile``) or the BCa interval is undefined.
    """
    if n_boot <= 0:
        msg = f"bootstrap_ci: n_boot must be > 0, got {n_boot}"
        raise ValueError(msg)
    arrs = [np.asarray(a) for a in arrays]
    if not arrs or any(a.shape[0] == 0 for a in arrs):
        return None, None
    if paired and len({a.shape[0] for a in arrs}) != 1:
        msg = f"bootstrap_ci({name}): paired arrays differ in length: {[len(a) for a in arrs]}"
        raise ValueError(msg)
    rng = bootstrap_rng(seed, name)
    if method == "BCa":
        return _bca_interval(func, arrs, n_boot=n_boot, rng=rng, conf=conf, paired=paired)
    if method != "percentile":
        msg = f"bootstrap_ci: method must be 'percentile' or 'BCa', got {method!r}"
        raise ValueError(msg)
    reps = np.empty(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(n_boot):
            if paired:
                idx = rng.integers(0, arrs[0].shape[0], arrs[0].shape[0])
                reps[b] = func(*(a[idx] for a in arrs))
            else:
                reps[b] = func(*(a[rng.integers(0, a.shape[0], a.shape[0])] for a in arrs))
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return None, None
    lo, hi = np.quantile(reps, [0.5 - conf / 2.0, 0.5 + conf / 2.0])
    return float(lo), float(hi)


def _bca_interval(func, arrs, *, n_boot: int, rng, conf: float, paired: bool):
    if any(a.shape[0] < 2 for a in arrs):  # the jackknife (acceleration) needs two points
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate distributions: reported as None below
        res = _st.bootstrap(
            tuple(arrs), lambda *xs: func(*xs), n_resamples=n_boot, confidence_level=conf,
            method="BCa", paired=paired, vectorized=False, rng=rng,
        )
    lo, hi = res.confidence_interval
    return finite_or_none(lo), finite_or_none(hi)


def ad_permutation_test(
    a: np.ndarray, b: np.ndarray, *, n_resamples: int, seed: int, name: str = "ad"
) -> tuple[float | None, float | None]:
    """k-sample Anderson-Darling statistic and its permutation p-value (``(k+1)/(n+1)``, never
    capped), keyed by (seed, ``name``): ``scipy.stats.anderson_ksamp`` with a
    ``PermutationMethod``."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0 or np.unique(np.concatenate([a, b])).size < 2:
        return None, None
    perm = _st.PermutationMethod(n_resamples=int(n_resamples), rng=bootstrap_rng(seed, name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's notes on ties; the statistic handles them
        ad = _st.anderson_ksamp([a, b], method=perm)
    return finite_or_none(ad.statistic), finite_or_none(ad.pvalue)


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cliff's delta ``P(a > b) - P(a < b)`` over all pairs, in O((n+m) log(n+m)).

    Computed from sorted ``b`` with ``searchsorted`` (ties count as neither); equal to the
    brute-force pairwise definition. ``a`` is sorted too, so the searches walk ``b`` in order
    (at 10^7 samples random-access searches were most of the audit's class balance); the
    integer counts, hence the result, do not depend on it. ``None`` if either sample is empty.
    """
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        return None
    less = np.searchsorted(b, a, side="left")  # b strictly below each a
    greater = b.size - np.searchsorted(b, a, side="right")  # b strictly above each a
    return float((less.sum() - greater.sum()) / (a.size * b.size))


def _median_iqr(x: np.ndarray) -> tuple[float | None, float | None]:
    if x.size == 0:
        return None, None
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    return finite_or_none(q50), finite_or_none(q75 - q25)


def _median_ratio(a: np.ndarray, b: np.ndarray) -> float:
    mb = np.median(b)
    return float(np.median(a) / mb) if mb != 0 else float("nan")


def compare_populations(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    conf: float = 0.95,
    name: str = "populations",
) -> dict:
    """Compare two populations of a scalar (e.g. core brightness, nanomaggies).

    Parameters
    ----------
    a, b : array_like
        The two samples; non-finite values are dropped.
    n_boot : int
        Bootstrap replicates for the median-ratio interval (populations resampled independently).
    seed : int
        Run seed (the stream is keyed by ``name``).
    conf : float
        Confidence level of the interval.
    name : str
        Names the comparison (keys the random stream).

    Returns
    -------
    dict
        ``n_a, n_b, median_a, iqr_a, median_b, iqr_b, median_ratio`` (median a / median b),
        ``median_ratio_ci`` [lo, hi], ``ks_stat, ks_p`` (two-sample Kolmogorov–Smirnov),
        ``ad_stat, ad_p`` (k-sample Anderson–Darling with a permutation p-value from ``n_boot``
        resamples, so ``ad_p >= 1 / (n_boot + 1)``; :func:`ad_permutation_test`),
        ``cliffs_delta`` (P(a>b) - P(a<b)). Undefined entries are ``None``.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    med_a, iqr_a = _median_iqr(a)
    med_b, iqr_b = _median_iqr(b)
    out: dict = {
        "n_a": int(a.size),
        "n_b": int(b.size),
        "median_a": med_a,
        "iqr_a": iqr_a,
        "median_b": med_b,
        "iqr_b": iqr_b,
        "median_ratio": None,
        "median_ratio_ci": [None, None],
        "ks_stat": None,
        "ks_p": None,
        "ad_stat": None,
        "ad_p": None,
        "cliffs_delta": cliffs_delta(a, b),
    }
    if a.size == 0 or b.size == 0:
        return out
    out["median_ratio"] = finite_or_none(_median_ratio(a, b))
    lo, hi = bootstrap_ci(
        _median_ratio, a, b, n_boot=n_boot, seed=seed, conf=conf, paired=False,
        name=f"{name}/median_ratio",
    )
    out["median_ratio_ci"] = [lo, hi]
    ks = _st.ks_2samp(a, b)
    out["ks_stat"], out["ks_p"] = finite_or_none(ks.statistic), finite_or_none(ks.pvalue)
    out["ad_stat"], out["ad_p"] = ad_permutation_test(
        a, b, n_resamples=n_boot, seed=seed, name=f"{name}/ad_permutation"
    )
    return out


def effect_size_summary(values: np.ndarray, labels: Sequence) -> dict:
    """Per-class summary of one quantity and pairwise effect sizes between classes.

    Parameters
    ----------
    values : array_like
        The quantity (any unit), one per sample; non-finite values are dropped.
    labels : array_like
        Class of each sample (e.g. ``kind`` or ``label``), same length as ``values``.

    Returns
    -------
    dict
        ``{"classes": {cls: {n, mean, median, iqr}}, "pairs": [{a, b, cliffs_delta, ks_stat,
        ks_p}, ...]}`` with classes in sorted order and one pair per unordered class pair.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if values.shape != labels.shape:
        msg = f"effect_size_summary: values {values.shape} and labels {labels.shape} differ"
        raise ValueError(msg)
    ok = np.isfinite(values)
    values, labels = values[ok], labels[ok]
    names, code = np.unique(labels.astype(str), return_inverse=True)  # sorted, as sorted(set)
    code = code.ravel()
    classes = [str(c) for c in names]
    return group_summary({c: values[code == i] for i, c in enumerate(classes)})


def group_summary(groups: dict, *, delta=None) -> dict:
    """Per-class ``n``/mean/median/IQR and, for every pair of classes (in ``groups`` order),
    Cliff's delta (``delta``, default :func:`cliffs_delta`) and the two-sample KS test."""
    delta = cliffs_delta if delta is None else delta
    out: dict = {"classes": {}, "pairs": []}
    for c, x in groups.items():
        med, iqr = _median_iqr(x)
        out["classes"][c] = {"n": int(x.size), "mean": finite_or_none(x.mean()),
                             "median": med, "iqr": iqr}
    classes = list(groups)
    for i, ca in enumerate(classes):
        for cb in classes[i + 1:]:
            xa, xb = groups[ca], groups[cb]
            ks = _st.ks_2samp(xa, xb)
            out["pairs"].append({
                "a": ca, "b": cb, "cliffs_delta": delta(xa, xb),
                "ks_stat": finite_or_none(ks.statistic), "ks_p": finite_or_none(ks.pvalue),
            })
    return out
