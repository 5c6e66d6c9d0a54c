"""Figures of the evaluation, as PNG bytes (optionally also saved to a path).

Built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state, no display, safe on
workers and in threads). Every function takes the JSON-ready dicts of :mod:`metrics` /
:mod:`selection` (or plain arrays) and returns the PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "brightness_png",
    "calibration_png",
    "completeness_1d_png",
    "completeness_2d_png",
    "roc_png",
    "score_hist_png",
    "realism_png",
    "training_curves_png",
]

_DPI = 90


def _new(w: float, h: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _png(fig: Figure, path: str | Path | None, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return data


def _edges(e: Sequence[float | None]) -> np.ndarray:
    return np.array([np.inf if v is None else float(v) for v in e])


def _bin_labels(e: Sequence[float | None]) -> list[str]:
    ed = _edges(e)
    return [f"{lo:g}-{hi:g}" if math.isfinite(hi) and hi < 1e4 else f">={lo:g}"
            for lo, hi in zip(ed[:-1], ed[1:], strict=True)]


def roc_png(rocs: Mapping[str, dict | None], *, fprs: Sequence[float] = (1e-2, 1e-3),
            path: str | Path | None = None, dpi: int = _DPI) -> bytes:
    """ROC curves (log FPR axis) of several arms.

    Parameters
    ----------
    rocs : mapping
        ``{arm: {"fpr": [...], "tpr": [...]}}`` (the ``roc`` key of the arm metrics); ``None``
        entries are skipped.
    fprs : sequence of float
        Operating points marked as vertical lines.
    path : path, optional
        Also write the PNG there.
    dpi : int
        Resolution.
    """
    fig, (ax,) = _new(5.5, 4.2)
    lo = 1.0
    for arm, r in rocs.items():
        if not r:
            continue
        f = np.asarray(r["fpr"], float)
        t = np.asarray(r["tpr"], float)
        pos = f > 0
        if pos.any():
            lo = min(lo, f[pos].min())
        ax.step(np.clip(f, 1e-6, 1), t, where="post", label=arm)
    for a in fprs:
        ax.axvline(a, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(max(lo * 0.5, 1e-6), 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (evaluation negatives)")
    ax.set_ylabel("recall (held-out injections)")
    ax.set_title("ROC")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    return _png(fig, path, dpi)


def score_hist_png(score_hist: dict, *, title: str = "score distributions",
                   path: str | Path | None = None, dpi: int = _DPI) -> bytes:
    """Normalised histograms of p_lens per group (``score_hist`` key of the arm metrics)."""
    fig, (ax,) = _new(5.5, 4.0)
    e = np.asarray(score_hist["edges"], float)
    for g, c in score_hist["counts"].items():
        c = np.asarray(c, float)
        if c.sum() > 0:
            ax.stairs(c / c.sum(), e, label=f"{g} (n={int(c.sum())})")
    ax.set_yscale("log")
    ax.set_xlabel("p_lens")
    ax.set_ylabel("fraction per bin")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _png(fig, path, dpi)


def completeness_1d_png(curves: Mapping[str, dict], *, title: str = "completeness",
                        path: str | Path | None = None, dpi: int = _DPI) -> bytes:
    """One panel per quantity: completeness per bin with Wilson error bars and counts.

    Parameters
    ----------
    curves : mapping
        ``{label: completeness_1d(...) dict}`` — e.g. the ``theta_e_over_psf``, ``arc_snr`` and
        ``psfdepth_r`` entries of ``metrics["completeness"]``; a ``limit`` list (mean
        matched-filter recall per bin) is drawn dashed beside the measured completeness.
    """
    items = list(curves.items())
    fig, axes = _new(4.0 * max(len(items), 1), 3.6, max(len(items), 1))
    for ax, (label, c) in zip(axes, items, strict=False):
        labels = _bin_labels(c["edges"])
        x = np.arange(len(labels))
        comp = np.array([np.nan if v is None else v for v in c["completeness"]], float)
        lo = np.array([np.nan if v is None else v for v in c["lo"]], float)
        hi = np.array([np.nan if v is None else v for v in c["hi"]], float)
        yerr = np.clip([comp - lo, hi - comp], 0.0, None)  # guard rounding at p = 0 or 1
        ax.errorbar(x, comp, yerr=yerr, fmt="o-", capsize=3, label="measured")
        if c.get("limit") is not None:
            lim = np.array([np.nan if v is None else v for v in c["limit"]], float)
            ax.plot(x, lim, "k--", marker="_", label="matched-filter limit")
            ax.legend(fontsize=7, loc="lower right")
        ticks = [f"{lab}\nn={n}" for lab, n in zip(labels, c["n"], strict=True)]
        ax.set_xticks(x, ticks, rotation=30, fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(c.get("quantity", label))
        ax.set_ylabel("completeness")
        ax.set_title(label, fontsize=9)
    fig.suptitle(title)
    return _png(fig, path, dpi)


def completeness_2d_png(cmap: dict, *, title: str | None = None,
                        path: str | Path | None = None, dpi: int = _DPI) -> bytes:
    """Completeness map with every cell annotated ``k/n`` and its Wilson interval."""
    comp = np.array([[np.nan if v is None else v for v in row] for row in cmap["completeness"]],
                    float)
    nx, ny = comp.shape
    fig, (ax,) = _new(1.3 + 1.1 * nx, 1.2 + 0.7 * ny)
    im = ax.imshow(comp.T, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(nx):
        for j in range(ny):
            n, k = cmap["n"][i][j], cmap["k"][i][j]
            lo, hi = cmap["lo"][i][j], cmap["hi"][i][j]
            txt = f"{k}/{n}" + (f"\n[{lo:.2f},{hi:.2f}]" if n else "")
            c = comp[i, j]
            ax.text(i, j, txt, ha="center", va="center", fontsize=6,
                    color="k" if (np.isfinite(c) and c > 0.6) else "w")
    ax.set_xticks(range(nx), _bin_labels(cmap["x_edges"]), rotation=30, fontsize=7)
    ax.set_yticks(range(ny), _bin_labels(cmap["y_edges"]), fontsize=7)
    ax.set_xlabel(cmap["x"])
    ax.set_ylabel(cmap["y"])
    ax.set_title(title or f"completeness: {cmap['x']} x {cmap['y']}", fontsize=9)
    fig.colorbar(im, ax=ax, label="completeness")
    return _png(fig, path, dpi)


def training_curves_png(records: Sequence[dict], *, title: str = "training",
                        path: str | Path | None = None, dpi: int = _DPI) -> bytes:
    """Loss, validation AUC, learning rate and throughput per epoch.

    Parameters
    ----------
    records : sequence of dict
        Log records with ``epoch`` and any of ``train_loss, val_loss, val_auc, lr,
        samples_per_s`` (missing keys leave their panel empty).
    """
    fig, axes = _new(13, 3.2, 4)

    def series(key):
        pts = [(r["epoch"], r[key]) for r in records
               if r.get(key) is not None and r.get("epoch") is not None]
        return (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float))

    for key in ("train_loss", "val_loss"):
        x, y = series(key)
        if x.size:
            axes[0].plot(x, y, "o-", ms=3, label=key)
    axes[0].set_ylabel("loss")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    for ax, key, lab in ((axes[1], "val_auc", "validation AUC"), (axes[2], "lr", "learning rate"),
                         (axes[3], "samples_per_s", "samples / s")):
        x, y = series(key)
        if x.size:
            ax.plot(x, y, "o-", ms=3)
        ax.set_ylabel(lab)
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    return _png(fig, path, dpi)


def calibration_png(calib: dict, *, path: str | Path | None = None, dpi: int = _DPI) -> bytes:
    """Target vs achieved fractions per bin of the calibrated quantity (``calibration.json``:
    ``bins`` edges, ``target_fractions``, ``achieved_fractions`` (None before ``inject``: the
    target alone), optional ``n`` and ``quantity``). Where ``proxy_relation`` carries them, the
    target's 95 % bootstrap interval (``deconvolution.fractions_interval``) is drawn as error
    bars and the anchors' true fractions (``recovery.fractions_true_open``, mock anchors) as
    markers."""
    labels = _bin_labels(calib["bins"])
    tgt = np.asarray(calib["target_fractions"], float)
    achieved = calib.get("achieved_fractions")
    ach = np.asarray(tgt if achieved is None else achieved, float)
    if not (len(labels) == tgt.size == ach.size):
        msg = (f"calibration: {len(labels)} bins but {tgt.size} target and {ach.size} achieved "
               "fractions")
        raise ValueError(msg)
    rel = calib.get("proxy_relation") or {}
    iv = (rel.get("deconvolution") or {}).get("fractions_interval") or {}
    true = (rel.get("recovery") or {}).get("fractions_true_open")
    fig, (ax,) = _new(5.5, 3.8)
    x = np.arange(len(labels))
    xt = x if achieved is None else x - 0.2
    if achieved is None:
        ax.bar(x, tgt, 0.6, label="target (inject not run)")
    else:
        ax.bar(xt, tgt, 0.4, label="target")
        ax.bar(x + 0.2, ach, 0.4, label=f"achieved (n={calib.get('n', '?')})")
    lo, hi = iv.get("2.5"), iv.get("97.5")
    if lo is not None and hi is not None and len(lo) == len(hi) == tgt.size:
        err = np.vstack([np.clip(tgt - np.asarray(lo, float), 0, None),
                         np.clip(np.asarray(hi, float) - tgt, 0, None)])
        ax.errorbar(xt, tgt, yerr=err, fmt="none", ecolor="k", capsize=3,
                    label="target, 95 % bootstrap")
    if true is not None and len(true) == tgt.size:
        ax.plot(xt, true, "kD", ms=5, label="anchors' true fraction")
    ax.set_xticks(x, labels)
    ax.set_xlabel(f"{calib.get('quantity', 'arc_snr')} bin")
    ax.set_ylabel("fraction of injections")
    ax.set_title("injection brightness calibration")
    ax.legend(fontsize=8)
    return _png(fig, path, dpi)


def brightness_png(populations: Mapping[str, Sequence[float]], *,
                   quantity: str = "core brightness (nanomaggies)",
                   path: str | Path | None = None, dpi: int = _DPI) -> bytes:
    """Histograms (log-spaced bins where all values are positive) of one quantity per
    population, with each median marked."""
    fig, (ax,) = _new(5.5, 3.8)
    arrs = {k: np.asarray(v, float) for k, v in populations.items()}
    arrs = {k: v[np.isfinite(v)] for k, v in arrs.items()}
    allv = np.concatenate([v for v in arrs.values() if v.size] or [np.zeros(0)])
    if allv.size:
        if allv.min() > 0 and allv.max() > allv.min():
            edges = np.geomspace(allv.min(), allv.max(), 40)
            ax.set_xscale("log")
        else:
            edges = np.linspace(allv.min(), allv.max() + 1e-12, 40)
        for k, v in arrs.items():
            if v.size:
                line = ax.hist(v, bins=edges, histtype="step", density=True,
                               label=f"{k} (n={v.size})")[2][0]
                ax.axvline(np.median(v), color=line.get_edgecolor(), ls="--", lw=1)
        ax.legend(fontsize=7)
    ax.set_xlabel(quantity)
    ax.set_ylabel("density")
    ax.set_title("brightness populations (dashed: medians)")
    return _png(fig, path, dpi)


def realism_png(probes: Mapping[str, dict | None], *, path: str | Path | None = None,
                dpi: int = _DPI) -> bytes:
    """One panel per arm: the two leading principal components of the standardised embeddings,
    Tier-A anchors over held-out calibrated injections, with the probe's cross-validated AUC."""
    items = [(a, p) for a, p in probes.items() if p and p.get("pca2")]
    fig, axes = _new(3.8 * max(len(items), 1), 3.6, max(len(items), 1))
    for ax, (arm, p) in zip(axes, items, strict=False):
        pc = p["pca2"]
        inj = np.asarray(pc["injection"], float).reshape(-1, 2)
        anc = np.asarray(pc["anchor"], float).reshape(-1, 2)
        ax.scatter(inj[:, 0], inj[:, 1], s=5, alpha=0.4, c="tab:blue", label="injections")
        ax.scatter(anc[:, 0], anc[:, 1], s=9, alpha=0.8, c="tab:red", label="Tier-A anchors")
        ex = pc.get("explained") or [np.nan, np.nan]
        ax.set_xlabel(f"PC1 ({100 * ex[0]:.0f}%)")
        ax.set_ylabel(f"PC2 ({100 * ex[1]:.0f}%)")
        a = p.get("auc")
        ax.set_title(f"{arm}: probe AUC {'n/a' if a is None else f'{a:.3f}'}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("realism probe: penultimate embeddings")
    return _png(fig, path, dpi)
