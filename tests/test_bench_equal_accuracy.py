"""bench_kernels.py's equal-accuracy selection (scripts/equal_accuracy.py) on synthetic sweeps."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "equal_accuracy.py"
_SPEC = importlib.util.spec_from_file_location("equal_accuracy", _PATH)
ea = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ea)

# (supersampling, ms per stamp, flux error): error falls and time rises with supersampling
SWEEP = [(3, 25.0, 0.011), (5, 60.0, 0.0040), (7, 110.0, 0.0018), (9, 190.0, 0.0011)]


def test_cheapest_setting_at_least_as_accurate_is_chosen():
    out = ea.equal_accuracy_speedup(SWEEP, ours_ms=2.5, ours_error=0.002)
    assert out["setting"] == 7  # 5 is cheaper but less accurate; 9 is accurate but dearer
    assert out["speedup"] == pytest.approx(110.0 / 2.5)
    assert out["is_lower_bound"] is False
    assert out["flux_error"] == 0.0018 and out["ms_per_stamp"] == 110.0


def test_equal_error_counts_as_equal_accuracy():
    out = ea.equal_accuracy_speedup(SWEEP, ours_ms=2.0, ours_error=0.0040)
    assert out["setting"] == 5 and out["is_lower_bound"] is False
    assert out["speedup"] == pytest.approx(30.0)


def test_no_setting_reaches_ours_gives_lower_bound_vs_most_accurate():
    out = ea.equal_accuracy_speedup(SWEEP, ours_ms=2.5, ours_error=0.0005)
    assert out["setting"] == 9 and out["is_lower_bound"] is True
    assert out["speedup"] == pytest.approx(190.0 / 2.5)


def test_cheapest_by_measured_time_and_row_order_irrelevant():
    # a noisy sweep: 11 timed cheaper than 9 and both accurate enough -> 11
    rows = [(11, 180.0, 0.0009), (3, 25.0, 0.011), (9, 190.0, 0.0010)]
    out = ea.equal_accuracy_speedup(rows, ours_ms=2.0, ours_error=0.001)
    assert out["setting"] == 11 and out["speedup"] == pytest.approx(90.0)
    # non-monotone accuracy: the most accurate (7), not the largest factor, is the bound
    rows = [(9, 190.0, 0.0015), (7, 110.0, 0.0012), (3, 25.0, 0.011)]
    out = ea.equal_accuracy_speedup(rows, ours_ms=2.0, ours_error=0.001)
    assert out["setting"] == 7 and out["is_lower_bound"] is True


def test_reverse_selection_of_our_coarser_setting():
    ours = [(1.0, 2.5, 0.002), (2.0, 2.0, 0.005), (4.0, 1.7, 0.009), (8.0, 1.3, 0.03)]
    (ts, ms, err), short = ea.cheapest_at_accuracy(ours, max_error=0.011)
    assert (ts, ms, err, short) == (4.0, 1.7, 0.009, False)


@pytest.mark.parametrize(
    ("rows", "ours_ms", "ours_err", "match"),
    [
        ([], 2.0, 0.001, "no rows"),
        ([(3, float("nan"), 0.01)], 2.0, 0.001, "setting 3: ms_per_stamp"),
        ([(3, 25.0, -0.1)], 2.0, 0.001, "setting 3: flux_error"),
        ([(3, 25.0)], 2.0, 0.001, "must be \\(setting"),
        (SWEEP, 0.0, 0.001, "'ours': ms_per_stamp"),
        (SWEEP, 2.0, float("inf"), "'ours': flux_error"),
    ],
)
def test_bad_input_is_named(rows, ours_ms, ours_err, match):
    with pytest.raises(ValueError, match=match):
        ea.equal_accuracy_speedup(rows, ours_ms, ours_err)
