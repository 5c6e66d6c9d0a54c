"""Gates (DESIGN §8): automatic checks that block ``train`` unless explicitly overridden.

A gate is a dict ``{name, passed, blocking, value, threshold, detail}``: ``passed`` is True or
False. A gate that cannot be evaluated (an input is missing, an import fails) is never silent:
it fails, blocking, with the reason in ``detail`` (:func:`not_evaluated`); ``gates.override``
is the explicit way past it. ``gen5dask audit`` writes
the list to ``cfg.layout.gates_json``; :func:`check_gates` is what ``train`` calls.

The evaluators here are pure functions of small inputs (tables, numbers, callables) so each can
be tested by planting the failure it guards against.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GATE_NAMES: tuple[str, ...] = (
    "anchor_coordinates",
    "psf_convolution",
    "null_injection",
    "core_only_auc",
    "split_regions_disjoint",
    "split_hosts_disjoint",
    "split_near_duplicates",
    "split_region_cap",
    "finite_pixels",
    "psf_positive",
    "bandset_consistent",
    "class_balance_conditions",
    "metadata_leakage",
    "loader_once_per_epoch",
    "metric_names",
)


def gate(name: str, passed: bool, *, value: Any = None, threshold: Any = None,
         detail: Any = "", blocking: bool = True) -> dict:
    """One gate record; ``passed`` must be a bool (use :func:`not_evaluated` otherwise)."""
    if name not in GATE_NAMES:
        msg = f"unknown gate {name!r}; known: {list(GATE_NAMES)}"
        raise ValueError(msg)
    if passed is None:
        msg = f"gate {name!r}: passed must be True or False; use not_evaluated(name, why)"
        raise ValueError(msg)
    from gen5dask.evaluate.stats import to_jsonable

    return {
        "name": name,
        "passed": bool(passed),
        "blocking": bool(blocking),
        "value": to_jsonable(value),
        "threshold": to_jsonable(threshold),
        "detail": to_jsonable(detail),
    }


def not_evaluated(name: str, why: str) -> dict:
    """A gate that could not be evaluated: a blocking failure whose detail gives the reason."""
    return gate(name, False, detail=f"not evaluated: {why}", blocking=True)


def apply_blocking(gates: Sequence[dict], non_blocking: Iterable[str]) -> list[dict]:
    """Copy of ``gates`` with ``blocking`` False for the names in ``non_blocking``."""
    nb = set(non_blocking)
    unknown = sorted(nb - set(GATE_NAMES))
    if unknown:
        msg = f"gates.non_blocking: unknown gate name(s) {unknown}; known: {list(GATE_NAMES)}"
        raise ValueError(msg)
    return [{**g, "blocking": bool(g["blocking"]) and g["name"] not in nb} for g in gates]


def load_gates(path: str | Path) -> list[dict]:
    """Read a gates JSON file (a list of gate dicts); malformed files raise ``ValueError``."""
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, list) or not all(isinstance(g, dict) and "name" in g for g in data):
        msg = f"{path}: expected a JSON list of gates ({{name, passed, blocking, ...}})"
        raise ValueError(msg)
    return data


def blocking_failures(gates: Sequence[dict], override: Iterable[str] = ()) -> list[str]:
    """Names of blocking gates that failed (passed is False) and are not in ``override``."""
    ov = set(override)
    return [g["name"] for g in gates
            if g.get("blocking") and g.get("passed") is False and g["name"] not in ov]


def check_gates(cfg) -> list[str]:
    """Blocking failures of ``cfg.layout.gates_json`` not overridden by ``cfg.gates.override``.

    Returns a list of gate names (empty: training may start). When the gates file is absent
    (audit not run) a warning is issued and the list is empty. Override names that are not
    gates raise ``ValueError``; overrides of gates that passed are reported in a warning.
    """
    path = Path(cfg.layout.gates_json)
    override = list(cfg.gates.override)
    unknown = sorted(set(override) - set(GATE_NAMES))
    if unknown:
        msg = f"gates.override: unknown gate name(s) {unknown}; known: {list(GATE_NAMES)}"
        raise ValueError(msg)
    if not path.exists():
        warnings.warn(f"{path} not found: gates not checked (run `gen5dask audit` first)",
                      stacklevel=2)
        return []
    gates = load_gates(path)
    failed_all = set(blocking_failures(gates))
    used = sorted(set(override) & failed_all)
    if used:
        warnings.warn(f"blocking gate(s) overridden by gates.override: {used}", stacklevel=2)
    return blocking_failures(gates, override)


def failure_message(failures: Sequence[str], gates_json: str | Path) -> str:
    """Message for a refusal to train on blocking failures."""
    return (
        f"blocking gate(s) failed: {', '.join(failures)} (see {gates_json}); fix the inputs or "
        f"rerun with --set gates.override=[{','.join(failures)}]"
    )


# ---------------------------------------------------------------------------------- evaluators

_SEP_COLUMNS = ("match_sep_arcsec", "sep_arcsec", "separation_arcsec", "match_sep")
_CENTRE_COLUMNS = ("centre_source", "center_source", "has_centre_source", "centre_ok",
                   "center_ok", "central_source")


def _truthy(series: pd.Series) -> np.ndarray:
    s = series
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(bool)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(np.float64) > 0
    return s.astype(str).str.strip().str.lower().isin(["true", "1", "yes", "y", "ok"]).to_numpy()


def anchor_coordinates_gate(accepted_csv: str | Path, rejected_csv: str | Path | None = None, *,
                            max_sep_arcsec: float) -> dict:
    """Every accepted anchor whose coordinates were typed (``coordinates_typed``) matched its
    reference within ``max_sep_arcsec``, and every accepted anchor has a source at the centre.
    ``value`` = n rejected / n accepted. Missing file -> failed (not evaluated)."""
    name = "anchor_coordinates"
    acc = Path(accepted_csv)
    if not acc.exists():
        return not_evaluated(name, f"{acc} not found (anchors stage not run)")
    df = pd.read_csv(acc)
    n_acc = len(df)
    n_rej = 0
    if rejected_csv is not None and Path(rejected_csv).exists():
        n_rej = len(pd.read_csv(rejected_csv))
    sep_col = next((c for c in _SEP_COLUMNS if c in df.columns), None)
    ctr_col = next((c for c in _CENTRE_COLUMNS if c in df.columns), None)
    if sep_col is None and ctr_col is None:
        return not_evaluated(
            name, f"{acc} has neither a separation column {list(_SEP_COLUMNS)} nor a centre "
            f"column {list(_CENTRE_COLUMNS)}")
    bad = np.zeros(n_acc, dtype=bool)
    reasons = []
    if sep_col is not None:
        sep = df[sep_col].to_numpy(np.float64)
        off = ~(np.isfinite(sep) & (sep <= max_sep_arcsec))
        if "coordinates_typed" in df.columns:
            # only coordinates that came from a list are validated against the reference;
            # positions taken from the reference itself (or survey truth) have no separation
            off &= _truthy(df["coordinates_typed"])
        bad |= off
        if off.any():
            reasons.append(f"{int(off.sum())} accepted with {sep_col} > {max_sep_arcsec} or NaN")
    if ctr_col is not None:
        no_ctr = ~_truthy(df[ctr_col])
        bad |= no_ctr
        if no_ctr.any():
            reasons.append(f"{int(no_ctr.sum())} accepted without a centre source ({ctr_col})")
    id_col = next((c for c in ("id", "name", "sample") if c in df.columns), None)
    offenders = df.loc[bad, id_col].astype(str).tolist()[:20] if id_col else []
    return gate(
        name, not bad.any(), value=n_rej / n_acc if n_acc else None, threshold=max_sep_arcsec,
        detail={"n_accepted": n_acc, "n_rejected": n_rej, "n_off_target_accepted": int(bad.sum()),
                "reasons": reasons, "offenders": offenders, "columns": [sep_col, ctr_col]},
    )


def psf_convolution_gate(*, fwhm_pix: Sequence[float], centroid_tol_pix: float, flux_tol: float,
                         moffat_kernel: Callable | None = None,
                         convolve: Callable | None = None) -> dict:
    """Self-test: a centred point source convolved with Moffat kernels keeps its centroid
    (shift < ``centroid_tol_pix`` pixels) and flux (relative change < ``flux_tol``).

    ``moffat_kernel(fwhm_pix, beta, size)`` and ``convolve(image2d, kernel2d)`` default to
    :mod:`gen5dask.kernels.psf`.
    """
    name = "psf_convolution"
    if moffat_kernel is None or convolve is None:
        from gen5dask.kernels import psf

        moffat_kernel = moffat_kernel or psf.moffat_kernel
        convolve = convolve or psf.convolve
    worst_shift, worst_flux = 0.0, 0.0
    cases = []
    for f in fwhm_pix:
        ker = np.asarray(moffat_kernel(float(f), 3.5, None))
        size = ker.shape[0] + 2 * (ker.shape[0] // 2) + 2
        size += 1 - size % 2
        img = np.zeros((size, size))
        c = size // 2
        img[c, c] = 1.0
        out = np.asarray(convolve(img, ker), dtype=np.float64)
        tot = out.sum()
        yy, xx = np.mgrid[:size, :size]
        shift = float(np.hypot((out * xx).sum() / tot - c, (out * yy).sum() / tot - c)) \
            if tot != 0 else float("inf")
        dflux = abs(tot - 1.0)
        worst_shift, worst_flux = max(worst_shift, shift), max(worst_flux, dflux)
        cases.append({"fwhm_pix": float(f), "centroid_shift_pix": shift, "flux_rel_err": dflux})
    passed = worst_shift < centroid_tol_pix and worst_flux < flux_tol
    return gate(name, passed, value={"centroid_shift_pix": worst_shift, "flux_rel_err": worst_flux},
                threshold={"centroid_tol_pix": centroid_tol_pix, "flux_tol": flux_tol},
                detail=cases)


def split_gates(rows: pd.DataFrame, *, host_store: str | None, dup_radius_arcsec: float,
                max_region_frac: float, min_test_regions: int = 2) -> list[dict]:
    """The four split gates from a table of every store's rows.

    ``rows`` has columns ``store, sample, ra, dec, host_sample, region, split``; ``host_store``
    names the store whose ``sample`` the ``host_sample`` ids refer to.
    """
    names = ("split_regions_disjoint", "split_hosts_disjoint", "split_near_duplicates",
             "split_region_cap")
    if rows.empty or not (rows["split"].astype(str) != "").any():
        return [gate(n, False, detail="no split assigned (run `gen5dask split`)") for n in names]
    split = rows["split"].astype(str).to_numpy()
    assigned = split != ""
    out = []
    # 1. regions
    r = rows.loc[assigned, ["region", "split"]]
    nsplit = r.groupby("region")["split"].nunique()
    leaky = nsplit[nsplit > 1].index.tolist()
    unreg = int((rows.loc[assigned, "region"] < 0).sum())
    test_regions = r.loc[r["split"] == "test", "region"].nunique()
    ok = not leaky and unreg == 0 and test_regions >= min_test_regions
    out.append(gate(names[0], ok, value=len(leaky), threshold=0, detail={
        "regions_in_several_splits": leaky[:50], "assigned_without_region": unreg,
        "n_test_regions": int(test_regions), "min_test_regions": min_test_regions,
        "n_unassigned_rows": int((~assigned).sum())}))
    # 2. hosts
    hs = rows["host_sample"].to_numpy(np.int64)
    key_host = np.where(hs >= 0, hs, -1)
    if host_store is not None:
        is_host = (rows["store"] == host_store).to_numpy() & (hs < 0)
        key_host = np.where(is_host, rows["sample"].to_numpy(np.int64), key_host)
    h = pd.DataFrame({"h": key_host, "split": split})[(key_host >= 0) & assigned]
    hsplit = h.groupby("h")["split"].nunique()
    bad_hosts = hsplit[hsplit > 1].index.tolist()
    out.append(gate(names[1], not bad_hosts, value=len(bad_hosts), threshold=0,
                    detail={"hosts_in_several_splits": bad_hosts[:50],
                            "n_hosts": int(hsplit.size)}))
    # 3. near duplicates across splits
    ra = rows.loc[assigned, "ra"].to_numpy(np.float64)
    dec = rows.loc[assigned, "dec"].to_numpy(np.float64)
    sp = split[assigned]
    pos = np.stack([ra, dec], axis=1)
    upos, uinv = np.unique(pos, axis=0, return_inverse=True)
    uinv = uinv.ravel()
    # split set per unique position: identical positions in two splits are a failure too
    bits = np.zeros(upos.shape[0], dtype=np.int64)
    code = {"train": 1, "val": 2, "test": 4}
    np.bitwise_or.at(bits, uinv, np.asarray([code.get(s, 8) for s in sp]))
    n_pairs = int(np.sum([bin(b).count("1") > 1 for b in bits]))
    examples = []
    if dup_radius_arcsec > 0 and upos.shape[0] > 1:
        import astropy.units as u
        from astropy.coordinates import SkyCoord, search_around_sky

        c = SkyCoord(upos[:, 0] * u.deg, upos[:, 1] * u.deg)
        i1, i2, d2, _ = search_around_sky(c, c, dup_radius_arcsec * u.arcsec)
        keep = (i1 < i2) & (bits[i1] != bits[i2])
        n_pairs += int(keep.sum())
        examples = [[float(upos[a, 0]), float(upos[a, 1]), float(upos[b, 0]), float(upos[b, 1])]
                    for a, b in zip(i1[keep][:10], i2[keep][:10], strict=True)]
    out.append(gate(names[2], n_pairs == 0, value=n_pairs, threshold=dup_radius_arcsec,
                    detail={"pairs_across_splits": examples}))
    # 4. size cap
    counts = rows.loc[assigned & (rows["region"] >= 0).to_numpy(), "region"].value_counts()
    share = counts / max(int(assigned.sum()), 1)
    big = share[share > max_region_frac]
    out.append(gate(names[3], big.empty, value=float(share.max()) if len(share) else None,
                    threshold=max_region_frac,
                    detail={"regions_over_cap": {str(k): float(v) for k, v in big.items()},
                            "n_regions": int(counts.size)}))
    return out


def core_only_gate(results: Mapping[str, dict], *, mode: str, max_auc: float) -> dict:
    """Gate on the core-only classifier AUC of injection mode ``mode`` (all modes in detail).

    ``results`` maps inject mode -> ``{"auc": float | None, ...}``.
    """
    name = "core_only_auc"
    if not results:
        return not_evaluated(name, "no injections and controls to compare")
    use = mode if mode in results else None
    if use is None or results[use].get("auc") is None:
        return not_evaluated(name, f"no AUC for inject mode {mode!r} (have {sorted(results)})")
    auc = float(results[use]["auc"])
    return gate(name, auc <= max_auc, value=auc, threshold=max_auc,
                detail={"mode": use, "by_mode": dict(results)})


def leakage_gate(aucs: Mapping[str, float | None], *, max_dev: float) -> dict:
    """Flag any metadata column whose single-column AUC for the label is beyond 0.5 +- max_dev."""
    name = "metadata_leakage"
    valid = {k: v for k, v in aucs.items() if v is not None and np.isfinite(v)}
    if not valid:
        return not_evaluated(name, "no metadata column with both classes")
    flagged = {k: v for k, v in valid.items() if abs(v - 0.5) > max_dev}
    worst = max(valid, key=lambda k: abs(valid[k] - 0.5))
    return gate(name, not flagged, value={"column": worst, "auc": valid[worst]},
                threshold=max_dev, detail={"flagged": flagged, "auc": dict(aucs)})


def class_balance_gate(summaries: Mapping[str, dict], *, max_abs_delta: float) -> dict:
    """Flag quantities whose classes differ by |Cliff's delta| > ``max_abs_delta``.

    ``summaries`` maps quantity -> :func:`gen5dask.evaluate.stats.effect_size_summary` output.
    """
    name = "class_balance_conditions"
    flagged, worst, worst_q = {}, -1.0, None
    for q, s in summaries.items():
        for pair in s.get("pairs", []):
            d = pair.get("cliffs_delta")
            if d is None:
                continue
            if abs(d) > worst:
                worst, worst_q = abs(d), q
            if abs(d) > max_abs_delta:
                flagged[q] = {"a": pair["a"], "b": pair["b"], "cliffs_delta": d,
                              "ks_p": pair.get("ks_p")}
    if worst_q is None:
        return not_evaluated(name, "fewer than two classes with data")
    return gate(name, not flagged, value={"quantity": worst_q, "abs_cliffs_delta": worst},
                threshold=max_abs_delta, detail={"flagged": flagged})


def count_gate(name: str, counts: Mapping[str, int], *, what: str) -> dict:
    """Pass when every store's count of offending samples is 0 (``finite_pixels``,
    ``psf_positive``)."""
    total = int(sum(counts.values()))
    if not counts:
        return not_evaluated(name, "no store to check")
    return gate(name, total == 0, value=total, threshold=0,
                detail={"by_store": dict(counts), "what": what})


def bandset_gate(store_bands: Mapping[str, Sequence[str]], missing: Mapping[str, int],
                 n_samples: Mapping[str, int], *, expected: Sequence[str],
                 max_missing_frac: float) -> dict:
    """Every store has the configured band set, and at most ``max_missing_frac`` of samples
    have a band without data (all invvar 0)."""
    name = "bandset_consistent"
    if not store_bands:
        return not_evaluated(name, "no store to check")
    wrong = {k: list(v) for k, v in store_bands.items() if list(v) != list(expected)}
    n = max(int(sum(n_samples.values())), 1)
    frac = float(sum(missing.values())) / n
    ok = not wrong and frac <= max_missing_frac
    return gate(name, ok, value=frac, threshold=max_missing_frac,
                detail={"expected": list(expected), "stores_with_other_bands": wrong,
                        "samples_missing_a_band": dict(missing)})


def known_metric_names(fprs: Sequence[float]) -> list[str]:
    """Exact names of the selection and headline metrics the evaluation and trainer produce."""
    from gen5dask.evaluate.metrics import fpr_tag

    names = {"auc", "val_auc", "val_loss", "tpr0", "tpr10"}
    for f in fprs:
        t = fpr_tag(f)
        names |= {f"recall_at_fpr_{t}", f"tier_a_recall_at_fpr_{t}", f"stress_recall_at_fpr_{t}",
                  f"val_recall_at_fpr_{t}"}
    return sorted(names)


def metric_names_gate(used: Mapping[str, str], known: Sequence[str]) -> dict:
    """Every configured metric name (``where -> name``) is one of the exact ``known`` names."""
    name = "metric_names"
    if not used:
        return not_evaluated(name, "no metric name configured")
    bad = {k: v for k, v in used.items() if v not in set(known)}
    return gate(name, not bad, value=dict(used), threshold=None,
                detail={"unknown": bad, "known": list(known)})


def loader_once_gate(seen: np.ndarray, expected: np.ndarray, *, num_workers: int) -> dict:
    """Every expected sample id appears exactly once among the ids seen in one epoch."""
    name = "loader_once_per_epoch"
    seen = np.asarray(seen, dtype=np.int64)
    expected = np.asarray(expected, dtype=np.int64)
    ids, counts = np.unique(seen, return_counts=True)
    repeated = ids[counts > 1]
    missing = np.setdiff1d(expected, ids)
    extra = np.setdiff1d(ids, expected)
    ok = repeated.size == 0 and missing.size == 0 and extra.size == 0
    return gate(name, ok, value=float(seen.size / max(expected.size, 1)), threshold=1.0,
                detail={"n_expected": int(expected.size), "n_seen": int(seen.size),
                        "num_workers": num_workers, "repeated": repeated[:20].tolist(),
                        "max_repeats": int(counts.max()) if counts.size else 0,
                        "missing": missing[:20].tolist(), "unexpected": extra[:20].tolist()})


__all__ = [
    "GATE_NAMES",
    "anchor_coordinates_gate",
    "apply_blocking",
    "bandset_gate",
    "blocking_failures",
    "check_gates",
    "class_balance_gate",
    "core_only_gate",
    "count_gate",
    "failure_message",
    "gate",
    "known_metric_names",
    "leakage_gate",
    "load_gates",
    "loader_once_gate",
    "metric_names_gate",
    "not_evaluated",
    "psf_convolution_gate",
    "split_gates",
]
