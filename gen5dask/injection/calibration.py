"""Calibration bookkeeping: the target of calibrated injections and what was achieved.

``calibration.json`` (written by ``calibrate``) holds the target arc_snr law; :func:`read_target`
reads it back, :func:`calibration_summary` measures the achieved fractions of ``train.zarr``
against it and :func:`record_achieved` (called by ``inject`` once its store is complete) writes
them into the file and redraws ``target_vs_achieved.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gen5dask.injection.ids import ID_STRIDE
from gen5dask.injection.laws import (
    MODE_CODES,
    ColourLaw,
    Laws,
    TargetDistribution,
    draw_injection_params,
)
from gen5dask.store import is_complete, read_table
from gen5dask.store.schema import QUALITY


def read_target(path: Path) -> tuple[TargetDistribution, str]:
    """Target law and its source (``plan`` / ``anchors``) of a ``calibration.json`` (files
    written before ``quantity`` existed calibrated ``arc_snr``)."""
    data = json.loads(Path(path).read_text())
    try:
        return target_of(data), data["source"]
    except (KeyError, ValueError) as exc:
        msg = f"{path}: invalid calibration target ({exc}); rerun `gen5dask calibrate`"
        raise ValueError(msg) from None


def target_of(data: dict) -> TargetDistribution:
    """The :class:`TargetDistribution` of a ``calibration.json`` dict."""
    col = (data.get("colours") or {}).get("law")
    return TargetDistribution(data["bins"], data["target_fractions"],
                              data.get("quantity", "arc_snr"),
                              ColourLaw(**col) if col else None)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=json_default))
    os.replace(tmp, path)


def json_default(o: Any):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    msg = f"not JSON serialisable: {type(o).__name__}"
    raise TypeError(msg)


def empty_achieved() -> dict[str, Any]:
    """The achieved-fraction keys of ``calibration.json`` before ``inject`` has run."""
    return {
        "n": 0,
        "achieved_fractions": None,
        "n_below_range": 0,
        "n_uncalibrated": 0,
        "achieved_fractions_uncalibrated": None,
        "n_below_range_uncalibrated": 0,
        "bound_hits": {"bright": 0, "faint": 0},
        "unattainable": 0,
    }


def calibration_summary(
    train_path: Path, *, target: TargetDistribution, laws: Laws, seed: int
) -> dict:
    """Achieved fractions of the calibrated quantity (``target.quantity``, e.g. ``arc_snr``)
    of ``train.zarr`` against the target.

    Returns ``n`` (injections with arc_snr >= bins[0]), ``achieved_fractions``,
    ``n_below_range`` (arc_snr < bins[0]; left out of the fractions), the same three with
    suffix ``_uncalibrated`` for the uncalibrated mode, ``bound_hits`` ``{"bright", "faint"}`` and
    ``unattainable``; fractions are None when a mode is absent or the store is incomplete.
    """
    out = empty_achieved()
    path = Path(train_path)
    if not is_complete(path):
        return out
    q_name = target.quantity
    tab = read_table(path, ["sample", "host_sample", "kind", "inject_mode", "quality", q_name])
    inj = tab["kind"].to_numpy() == "injection"
    mode = tab["inject_mode"].to_numpy()
    cal = inj & (mode == "calibrated")
    unc = inj & (mode == "uncalibrated")
    snr = tab[q_name].to_numpy(np.float64)
    if cal.any():
        fr, n, below = target.fractions_of(snr[cal])
        out["n"], out["achieved_fractions"], out["n_below_range"] = n, fr.tolist(), below
        q = tab["quality"].to_numpy()[cal]
        out["bound_hits"] = {
            "bright": int((q == "bound_hit_bright").sum()),
            "faint": int((q == "bound_hit_faint").sum()),
        }
        code = tab["sample"].to_numpy(np.int64)[cal] % ID_STRIDE
        par = draw_injection_params(
            laws,
            seed=seed,
            host_ids=tab["host_sample"].to_numpy(np.int64)[cal],
            replicates=(code - 2) // 2,
            modes=np.full(code.size, MODE_CODES["calibrated"]),
            target=target,
        )
        ok = q == QUALITY[0]
        miss = np.abs(snr[cal] / par["target_arc_snr"] - 1.0) > 1e-4
        out["unattainable"] = int((ok & miss).sum())
    if unc.any():
        fr, n, below = target.fractions_of(snr[unc])
        out["n_uncalibrated"], out["achieved_fractions_uncalibrated"] = n, fr.tolist()
        out["n_below_range_uncalibrated"] = below
    return out


def plot_calibration(data: dict, path: Path) -> Path:
    """Bar chart of target vs achieved arc_snr fractions (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    bins = data["bins"]
    labels = [f"{bins[i]:g}-{bins[i + 1]:g}" for i in range(len(bins) - 1)]
    x = np.arange(len(labels))
    series = [("target", data["target_fractions"])]
    if data.get("achieved_fractions") is not None:
        series.append((f"calibrated (n={data['n']})", data["achieved_fractions"]))
    if data.get("achieved_fractions_uncalibrated") is not None:
        series.append(
            (f"uncalibrated (n={data['n_uncalibrated']})", data["achieved_fractions_uncalibrated"])
        )
    w = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, (name, vals) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * w, vals, w, label=name)
    ax.set_xticks(x, labels)
    quantity = data.get("quantity", "arc_snr")
    kind = "peak pixel" if quantity == "arc_snr_peak" else "integrated"
    ax.set_xlabel(f"{quantity} bin ({kind}, r band)")
    ax.set_ylabel("fraction")
    ax.set_title(f"{quantity} target ({data['source']}) vs achieved")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def record_achieved(
    path: Path,
    *,
    train_path: Path,
    laws: Laws,
    seed: int,
    target: TargetDistribution,
    source: str,
    plot_path: Path | None,
) -> dict:
    """Update ``calibration.json`` at ``path`` (created from ``target`` if absent) with the
    achieved fractions of ``train.zarr``; redraw the plot at ``plot_path`` (None: no plot).
    Returns the JSON dict."""
    path = Path(path)
    if path.exists():
        data = json.loads(path.read_text())
        target = target_of(data)
    else:
        data = {
            "bins": list(target.bins),
            "target_fractions": list(target.fractions),
            "quantity": target.quantity,
            "source": source,
            "implied_src_dmag": None,
        }
    data.update(calibration_summary(train_path, target=target, laws=laws, seed=seed))
    write_json(path, data)
    if plot_path is not None:
        plot_calibration(data, plot_path)
    return data


__all__ = [
    "empty_achieved",
    "calibration_summary",
    "json_default",
    "plot_calibration",
    "read_target",
    "record_achieved",
    "target_of",
    "write_json",
]
