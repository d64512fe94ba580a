"""Statistics of repeated runs: exact values, t intervals and Welch's t-test.

A *group* is K runs of one configuration (``p2p run --repeat K``, one cell of
``p2p sweep --repeat K``). Each run is a row: a mapping of quantity -> observed value,
plus ``exact`` (quantity -> the run's exact prediction, when it has one).

Per quantity of a group:

- **exact**: every run has an exact prediction and they are all the same value (v1
  counts, flood deliveries): every run must equal it. A run that differs is a failure,
  named in ``failures``; the value is not averaged away.
- **interval**: otherwise the mean, the sample standard deviation and a 95 % t interval
  (``scipy.stats.t.interval``, K - 1 degrees of freedom). Runs whose exact predictions
  differ from run to run (gossip with a different seed each repeat) are each checked
  against their own prediction (failures as above), and the quantity is summarised
  as an interval over the seeds.

Two groups are compared per quantity: exact against exact by equality; otherwise by
Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) at ``ALPHA``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Quantity:
    key: str
    label: str  # table header
    fmt: Callable[[float], str]


def _int(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _sec(x: float) -> str:
    return f"{x:.3f}"


def _frac(x: float) -> str:
    return f"{x:.3f}"


# What a group is summarised by, in table order. ``missing_deliveries`` exists for runs with
# faults or loss (summary.json); ``coverage`` and ``redundancy`` for sweep cells.
QUANTITIES: tuple[Quantity, ...] = (
    Quantity("deliveries", "deliveries", _int),
    Quantity("bytes", "bytes", _int),
    Quantity("missing_deliveries", "missing", _int),
    Quantity("coverage", "coverage", _frac),
    Quantity("redundancy", "redundancy", _frac),
    Quantity("time_to_quiescence", "ttq s", _sec),
    Quantity("duration", "run s", _sec),
)
BY_KEY = {q.key: q for q in QUANTITIES}


@dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation and the t interval of ``n`` values (no interval below 2)."""

    n: int
    mean: float
    sd: float | None
    lo: float | None
    hi: float | None
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float | None:
        return None if self.hi is None else (self.hi - self.lo) / 2


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` and its two-sided t confidence interval (scipy.stats.t)."""
    import numpy as np
    from scipy import stats

    xs = np.asarray(values, dtype=float)
    if xs.size == 0:
        raise ValueError("interval of no values")
    mean = float(xs.mean())
    if xs.size < 2:
        return Interval(1, mean, None, None, None, confidence)
    sd = float(xs.std(ddof=1))
    if sd == 0.0:  # every value the same: scipy's interval of scale 0 is nan; the interval is the point
        return Interval(int(xs.size), mean, 0.0, mean, mean, confidence)
    lo, hi = stats.t.interval(confidence, xs.size - 1, loc=mean, scale=float(stats.sem(xs)))
    return Interval(int(xs.size), mean, sd, float(lo), float(hi), confidence)


@dataclass(frozen=True)
class QuantityStats:
    """One quantity of a group: exact, or an interval; the runs that broke an exact prediction."""

    key: str
    kind: str  # "exact" | "interval" | "none" (no run has the quantity)
    values: tuple[float, ...]  # in run order, runs without the quantity left out
    exact: float | None = None  # kind "exact": the value every run must have
    interval: Interval | None = None  # kind "interval"
    per_run_exact: bool = False  # kind "interval": each run was checked against its own exact prediction
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "values": list(self.values)}
        if self.kind == "exact":
            out["exact"] = self.exact
        if self.interval is not None:
            iv = self.interval
            out.update(n=iv.n, mean=iv.mean, sd=iv.sd,
                       ci=None if iv.lo is None else [iv.lo, iv.hi], confidence=iv.confidence)
        if self.per_run_exact:
            out["per_run_exact"] = True
        if self.failures:
            out["failures"] = list(self.failures)
        return out

    @classmethod
    def from_dict(cls, key: str, data: Mapping[str, Any]) -> QuantityStats:
        iv = None
        if "mean" in data:
            ci = data.get("ci") or [None, None]
            iv = Interval(data["n"], data["mean"], data.get("sd"), ci[0], ci[1], data.get("confidence", CONFIDENCE))
        return cls(key, data["kind"], tuple(data.get("values") or ()), data.get("exact"), iv,
                   bool(data.get("per_run_exact")), tuple(data.get("failures") or ()))

    def text(self) -> str:
        """``200 (exact)``, ``0.412 ± 0.031``, ``0.412`` (one run), ``-`` (none)."""
        fmt = BY_KEY[self.key].fmt if self.key in BY_KEY else _int
        if self.kind == "exact":
            return f"{fmt(self.exact)} exact" + (" FAILED" if self.failures else "")
        if self.kind == "none":
            return "-"
        iv = self.interval
        mark = " FAILED" if self.failures else ""
        if iv.half_width is None:
            return fmt(iv.mean) + mark
        return f"{fmt(iv.mean)} ± {fmt(iv.half_width)}{mark}"


def quantity_stats(key: str, values: Sequence[float | None], exact: Sequence[float | None],
                   labels: Sequence[str] | None = None) -> QuantityStats:
    """The statistics of one quantity over the runs of a group (``exact[i]``: run i's exact
    prediction or None; ``labels[i]`` names run i in a failure)."""
    labels = list(labels) if labels is not None else [f"repeat {i + 1}" for i in range(len(values))]
    seen = [(lab, v, e) for lab, v, e in zip(labels, values, exact) if v is not None]
    observed = tuple(v for _, v, _ in seen)
    if not seen:
        return QuantityStats(key, "none", ())
    all_exact = len(seen) == len(values) and all(e is not None for e in exact)
    failures = tuple(f"{lab}: {key} {_int(v)} != exact {_int(e)}" for lab, v, e in seen
                     if e is not None and v != e) if all_exact else ()
    if all_exact and len(set(exact)) == 1:
        return QuantityStats(key, "exact", observed, exact=exact[0], failures=failures)
    return QuantityStats(key, "interval", observed, interval=interval(observed), per_run_exact=all_exact,
                         failures=failures)


def group_stats(rows: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None) -> dict[str, QuantityStats]:
    """Every quantity any row has (``QUANTITIES`` order): the group's statistics."""
    out: dict[str, QuantityStats] = {}
    for q in QUANTITIES:
        values = [r.get(q.key) for r in rows]
        if all(v is None for v in values):
            continue
        exact = [(r.get("exact") or {}).get(q.key) for r in rows]
        out[q.key] = quantity_stats(q.key, values, exact, labels)
    return out


def failures_of(stats: Mapping[str, QuantityStats]) -> list[str]:
    return [f for qs in stats.values() for f in qs.failures]


# ---- two groups ----------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """Whether two groups differ in one quantity."""

    key: str
    test: str  # "exact" | "welch" | "none"
    differ: bool | None  # None: cannot tell (too few runs)
    p: float | None = None
    note: str = ""

    def text(self) -> str:
        if self.test == "exact":
            return "DIFFER (exact)" if self.differ else "equal (exact)"
        if self.differ is None:
            return f"? ({self.note})" if self.note else "?"
        if self.p is None:  # no spread: the values themselves differ or not
            return f"{'DIFFER' if self.differ else 'equal'} ({self.note})"
        return f"{'DIFFER' if self.differ else 'no significant difference'} (p={self.p:.3g})"

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test, "differ": self.differ, "p": self.p, "alpha": ALPHA, "note": self.note}


def welch(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> tuple[bool | None, float | None, str]:
    """Welch's t-test of two samples: (significant at ``alpha``, p-value, note)."""
    import numpy as np
    from scipy import stats

    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size < 2 or xb.size < 2:
        return None, None, "fewer than 2 runs in a group"
    if xa.std(ddof=1) == 0 and xb.std(ddof=1) == 0:
        # No spread on either side: the t statistic is undefined; the samples differ or not.
        same = float(xa[0]) == float(xb[0])
        return (not same), None, "no spread in either group" + ("" if same else "; the values differ")
    with warnings.catch_warnings():  # one group without spread: scipy warns of precision, the test stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
    return p < alpha, p, ""


def differ(a: QuantityStats, b: QuantityStats, alpha: float = ALPHA) -> Difference:
    """Exact quantities by equality, the others by Welch's t-test."""
    if a.kind == "none" or b.kind == "none":
        return Difference(a.key, "none", None, note="missing in a group")
    if a.kind == "exact" and b.kind == "exact":
        return Difference(a.key, "exact", a.exact != b.exact)
    significant, p, note = welch(a.values, b.values, alpha)
    return Difference(a.key, "welch", significant, p, note)


def differences(a: Mapping[str, QuantityStats], b: Mapping[str, QuantityStats]) -> dict[str, Difference]:
    return {k: differ(a[k], b[k]) for k in a if k in b}


def stats_to_dict(stats: Mapping[str, QuantityStats]) -> dict[str, Any]:
    return {k: qs.to_dict() for k, qs in stats.items()}


def stats_from_dict(data: Mapping[str, Any]) -> dict[str, QuantityStats]:
    return {k: QuantityStats.from_dict(k, v) for k, v in data.items()}


def column_keys(groups: Iterable[Mapping[str, QuantityStats]]) -> list[str]:
    """The quantities any group has, in table order."""
    present = {k for g in groups for k, qs in g.items() if qs.kind != "none"}
    return [q.key for q in QUANTITIES if q.key in present]


# ---- tables --------------------------------------------------------------------


def format_group(stats: Mapping[str, QuantityStats]) -> str:
    """One group, a line per quantity: exact value, or mean ± half-width with sd, the 95 % CI and the range."""
    from analysis._util import table

    body = []
    for key, qs in stats.items():
        q = BY_KEY[key]
        if qs.kind == "exact":
            rule = f"exact: all {len(qs.values)} runs must equal it"
            body.append([q.label, f"{q.fmt(qs.exact)} exact", "-", "-", rule + (f"; {len(qs.failures)} FAILED" if qs.failures
                                                                      else "; all equal")])
            continue
        if qs.kind == "none":
            continue
        iv = qs.interval
        ci = "-" if iv.lo is None else f"{q.fmt(iv.lo)} .. {q.fmt(iv.hi)}"
        rule = "each run = its own exact prediction" if qs.per_run_exact else ""
        if qs.failures:
            rule += f"; {len(qs.failures)} FAILED"
        body.append([q.label, qs.text().replace(" FAILED", ""), "-" if iv.sd is None else q.fmt(iv.sd), ci,
                     f"{q.fmt(min(qs.values))} .. {q.fmt(max(qs.values))}" + (f"; {rule}" if rule else "")])
    return table(["quantity", "mean ± 95% CI half-width (or exact)", "sd", "95% CI", "range / rule"], body, "lrrrl")
