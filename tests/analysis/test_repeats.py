"""Statistics of repeated runs (analysis/repeats.py): exact values, t intervals, Welch's t-test.

Expected values are computed here from scipy's distributions directly (t.ppf, t.sf with
the Welch-Satterthwaite degrees of freedom), not taken from the code under test."""

import math
import statistics

import pytest
from scipy import stats as sps

from analysis.repeats import differ, group_stats, interval, quantity_stats, welch


def test_interval_is_the_t_interval():
    xs = [0.12, 0.15, 0.11, 0.19, 0.14, 0.13]
    n, m, sd = len(xs), statistics.fmean(xs), statistics.stdev(xs)
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    iv = interval(xs)
    assert iv.n == n and iv.mean == pytest.approx(m) and iv.sd == pytest.approx(sd)
    assert iv.lo == pytest.approx(m - half) and iv.hi == pytest.approx(m + half)
    assert iv.half_width == pytest.approx(half)


def test_interval_of_one_value_and_of_no_spread():
    one = interval([3.0])
    assert one.mean == 3.0 and one.sd is None and one.lo is None and one.half_width is None
    flat = interval([2.0, 2.0, 2.0])
    assert (flat.lo, flat.hi, flat.sd) == (2.0, 2.0, 0.0)


def test_exact_quantity_all_equal():
    qs = quantity_stats("deliveries", [200, 200, 200], [200, 200, 200])
    assert qs.kind == "exact" and qs.exact == 200 and qs.failures == () and qs.interval is None
    assert qs.text() == "200 exact"


def test_exact_quantity_with_a_repeat_that_differs_fails_loudly():
    qs = quantity_stats("deliveries", [200, 199, 200], [200, 200, 200], labels=["a", "b", "c"])
    assert qs.kind == "exact" and qs.exact == 200
    assert qs.failures == ("b: deliveries 199 != exact 200",)
    assert "FAILED" in qs.text()


def test_exact_predictions_that_vary_by_seed_give_an_interval_checked_run_by_run():
    qs = quantity_stats("deliveries", [100, 120, 110], [100, 120, 111])
    assert qs.kind == "interval" and qs.per_run_exact
    assert qs.failures == ("repeat 3: deliveries 110 != exact 111",)
    assert qs.interval.mean == pytest.approx(110)


def test_no_prediction_gives_an_interval_and_missing_values_are_left_out():
    qs = quantity_stats("time_to_quiescence", [0.1, None, 0.3], [None, None, None])
    assert qs.kind == "interval" and qs.values == (0.1, 0.3) and not qs.failures
    assert quantity_stats("missing_deliveries", [None, None], [None, None]).kind == "none"


def test_group_stats_takes_exact_values_from_each_row():
    rows = [{"deliveries": 40, "bytes": 1040, "time_to_quiescence": t, "exact": {"deliveries": 40, "bytes": 1040}}
            for t in (0.05, 0.07)]
    g = group_stats(rows)
    assert list(g) == ["deliveries", "bytes", "time_to_quiescence"]
    assert g["deliveries"].kind == g["bytes"].kind == "exact" and g["time_to_quiescence"].kind == "interval"


def _welch_p(a, b):
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * sps.t.sf(abs(t), df)


def test_welch_matches_the_textbook_formula():
    a, b = [1.0, 1.2, 0.9, 1.1, 1.05], [1.6, 1.4, 1.7, 1.5, 1.9, 1.55]
    significant, p, _ = welch(a, b)
    assert p == pytest.approx(_welch_p(a, b)) and p < 0.05 and significant
    c = [1.02, 1.15, 0.95, 1.08]
    significant, p, _ = welch(a, c)
    assert p == pytest.approx(_welch_p(a, c)) and p > 0.05 and not significant


def test_welch_edge_cases():
    assert welch([1.0], [1.0, 2.0])[0] is None  # too few runs
    assert welch([2.0, 2.0], [2.0, 2.0])[:2] == (False, None)  # no spread, same value
    assert welch([2.0, 2.0], [3.0, 3.0])[:2] == (True, None)  # no spread, different values


def test_exact_quantities_are_compared_exactly():
    a = quantity_stats("deliveries", [200, 200], [200, 200])
    b = quantity_stats("deliveries", [201, 201], [201, 201])
    assert differ(a, b).test == "exact" and differ(a, b).differ and not differ(a, a).differ
    x = quantity_stats("time_to_quiescence", [0.1, 0.2, 0.15], [None] * 3)
    d = differ(a, x)  # exact against an interval: Welch on the values
    assert d.test == "welch"
