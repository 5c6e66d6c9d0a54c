"""Equal-accuracy speed comparison of two renderers from a sweep of accuracy settings.

Pure functions used by ``bench_kernels.py``: given rows ``(setting, ms_per_stamp,
flux_error)`` measured for one code (e.g. lenstronomy supersampling factors) and the time and
flux error of the other, pick the cheapest setting at least as accurate and form the time
ratio. Errors are dimensionless (max relative total-flux error against one shared reference);
times are in ms per stamp.
"""

from __future__ import annotations

import math


def _check_row(row) -> tuple:
    if len(row) != 3:
        msg = f"sweep row {row!r} must be (setting, ms_per_stamp, flux_error)"
        raise ValueError(msg)
    setting, ms, err = row
    if not (math.isfinite(ms) and ms > 0):
        msg = f"sweep row for setting {setting!r}: ms_per_stamp={ms!r} must be finite and > 0"
        raise ValueError(msg)
    if not (math.isfinite(err) and err >= 0):
        msg = f"sweep row for setting {setting!r}: flux_error={err!r} must be finite and >= 0"
        raise ValueError(msg)
    return setting, float(ms), float(err)


def cheapest_at_accuracy(rows, max_error: float) -> tuple[tuple, bool]:
    """The cheapest row with ``flux_error <= max_error``, and ``False``; if no row reaches
    ``max_error``, the most accurate row (the cheaper one on a tie) and ``True``.

    ``True`` means the selected row is *less* accurate than asked for: a time ratio against it
    is a lower bound on the equal-accuracy ratio, provided the swept code's cost does not fall
    as its accuracy rises (supersampling only adds work).
    """
    checked = [_check_row(r) for r in rows]
    if not checked:
        msg = "the sweep has no rows"
        raise ValueError(msg)
    if not (math.isfinite(max_error) and max_error >= 0):
        msg = f"max_error={max_error!r} must be finite and >= 0"
        raise ValueError(msg)
    ok = [r for r in checked if r[2] <= max_error]
    if ok:
        return min(ok, key=lambda r: (r[1], r[2])), False
    return min(checked, key=lambda r: (r[2], r[1])), True


def equal_accuracy_speedup(rows, ours_ms: float, ours_error: float) -> dict:
    """How much faster we are than the swept code at equal (or better, for us) accuracy.

    ``rows``: ``(setting, ms_per_stamp, flux_error)`` of the other code; ``ours_ms`` and
    ``ours_error``: our time and flux error on the same stamps against the same reference.
    Returns ``{"setting", "ms_per_stamp", "flux_error", "speedup", "is_lower_bound"}`` where
    ``speedup = ms_per_stamp / ours_ms`` for the cheapest setting with
    ``flux_error <= ours_error`` (``is_lower_bound`` false), else for the most accurate setting
    of the sweep (``is_lower_bound`` true).
    """
    _check_row(("ours", ours_ms, ours_error))
    (setting, ms, err), lower = cheapest_at_accuracy(rows, ours_error)
    return {"setting": setting, "ms_per_stamp": ms, "flux_error": err,
            "speedup": ms / float(ours_ms), "is_lower_bound": lower}
