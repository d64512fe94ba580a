"""What a rerun of a run must reproduce, and whether it did (``p2p rerun``).

A rerun runs the original's spec.json again: same topology, seed, protocol parameters,
link emulation and faults. What must be equal:

- the **delivery set** (every ``logs/<id>.txt`` line as (receiver, line), i.e. author,
  receiver and hops, counted with multiplicity) when the run is deterministic: protocol
  v1 with faults that all act at start (emulated loss is decided by a hash of the seed
  and the frame's content, so a seeded lossy v1 run drops the same frames every time),
  or any run with an exact prediction (deliveries and bytes predicted exactly);
- then also deliveries, bytes and missing deliveries, which follow from that set;
- otherwise the **exact counts** the original's prediction gives (flood: deliveries).

What may differ: timings (time to quiescence, the peers' run time) and whatever the
prediction does not fix; they are shown, with the interval of the reruns when there are
several.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.repeats import interval

TIMINGS = ("time_to_quiescence", "peer_duration")


@dataclass(frozen=True)
class Check:
    """One quantity of a rerun against the original."""

    what: str
    must_equal: bool
    original: Any
    new: tuple[Any, ...]  # one per rerun
    note: str = ""

    @property
    def equal(self) -> bool:
        return all(v == self.original for v in self.new)

    @property
    def failed(self) -> bool:
        return self.must_equal and not self.equal

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "must_equal": self.must_equal, "equal": self.equal, "original": self.original,
                "new": list(self.new), "note": self.note}


@dataclass(frozen=True)
class Replay:
    checks: list[Check]
    warnings: list[str] = field(default_factory=list)  # record differences: explain, never fail

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": not self.failed, "checks": [c.to_dict() for c in self.checks], "warnings": self.warnings}


def delivery_lines(run_dir: Path) -> Counter[tuple[int, str]]:
    """Every received message of a run as (receiver, line), with multiplicity."""
    out: Counter[tuple[int, str]] = Counter()
    for path in sorted((Path(run_dir) / "logs").glob("*.txt")):
        stem = path.name[: -len(".txt")]
        if not stem.isdigit():  # <id>.traffic.txt, <id>.stderr.txt
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            out.update((int(stem), line.rstrip("\n")) for line in f if line.strip())
    return out


def peer_duration(summary: Mapping[str, Any]) -> float | None:
    """The longest peer run time of a run (its summary's per-peer ``duration``), seconds."""
    durations = [p.get("duration") for p in summary.get("peers") or [] if isinstance(p.get("duration"), (int, float))]
    return round(max(durations), 3) if durations else None


def set_digest(lines: Counter[tuple[int, str]]) -> str:
    """``"40 lines, sha256 1a2b3c4d5e6f"``: equal exactly when the two multisets are."""
    import hashlib

    h = hashlib.sha256()
    for (receiver, line), count in sorted(lines.items()):
        h.update(f"{receiver}\t{count}\t{line}\n".encode())
    return f"{sum(lines.values())} lines, sha256 {h.hexdigest()[:12]}"


def deterministic(spec: Mapping[str, Any] | None, prediction: str | None) -> bool:
    """Whether the delivery set is fixed by the spec (see the module doc)."""
    if prediction == "exact":
        return True
    if not spec or spec.get("protocol") != "v1":
        return False
    from generator.faults import Fault, exactly_predictable

    return exactly_predictable(tuple(Fault.from_dict(f) for f in spec.get("faults") or ()))


def _set_note(orig: Counter, new: Sequence[Counter]) -> str:
    parts = []
    for i, lines in enumerate(new, 1):
        if lines != orig:
            only_orig, only_new = orig - lines, lines - orig
            parts.append(f"rerun {i}: {sum(only_orig.values())} lines only in the original, "
                         f"{sum(only_new.values())} only in the rerun")
    return "; ".join(parts)


def compare_runs(orig: Mapping[str, Any], orig_lines: Counter, new: Sequence[Mapping[str, Any]],
                 new_lines: Sequence[Counter], warnings: list[str] | None = None) -> Replay:
    """Checks of reruns (``new``: their summary.json) against the original."""
    orig = {**orig, "peer_duration": peer_duration(orig)}
    new = [{**n, "peer_duration": peer_duration(n)} for n in new]
    same_set = deterministic(orig.get("spec"), orig.get("prediction"))
    kind = orig.get("prediction")
    checks: list[Check] = []
    if same_set:
        checks.append(Check("delivery set", True, set_digest(orig_lines), tuple(set_digest(x) for x in new_lines),
                            note=_set_note(orig_lines, new_lines) or "identical (author, receiver, hops) lines"))
    exact_keys = {"deliveries": same_set or kind in ("exact", "deliveries"), "bytes": same_set or kind == "exact",
                  "missing_deliveries": same_set}
    for key, must in exact_keys.items():
        if orig.get(key) is None and all(n.get(key) is None for n in new):
            continue
        note = "" if must else "not fixed by the spec"
        checks.append(Check(key, must, orig.get(key), tuple(n.get(key) for n in new), note))
    for key in TIMINGS:
        values = tuple(n.get(key) for n in new)
        if orig.get(key) is None and all(v is None for v in values):
            continue
        checks.append(Check(key, False, orig.get(key), values, _timing_note(orig.get(key), values)))
    return Replay(checks, list(warnings or []))


def _timing_note(orig: float | None, values: Sequence[float | None]) -> str:
    xs = [v for v in values if v is not None]
    if len(xs) < 2:
        return "timing: may differ"
    iv = interval(xs)
    where = "" if orig is None else (" (original inside)" if iv.lo <= orig <= iv.hi else " (original outside)")
    return f"timing: reruns {iv.mean:.3f} s, 95% CI {iv.lo:.3f}..{iv.hi:.3f}{where}"


def format_replay(replay: Replay, orig_id: str, new_ids: Sequence[str]) -> str:
    from analysis._util import table

    def show(x: Any) -> str:
        return f"{x:.3f}" if isinstance(x, float) else str(x)

    body = []
    for c in replay.checks:
        if len(set(c.new)) == 1:
            new = show(c.new[0]) + (f" (all {len(c.new)})" if len(c.new) > 1 else "")
        else:
            new = ", ".join(map(show, c.new))
        verdict = ("EQUAL" if c.equal else "DIFFERS") if c.must_equal else ("same" if c.equal else "differs")
        body.append([c.what, "must be equal" if c.must_equal else "may differ", show(c.original), new,
                     verdict + (" !!" if c.failed else ""), c.note])
    out = [f"rerun of {orig_id}: {', '.join(new_ids)}",
           table(["quantity", "rule", "original", "rerun", "result", "note"], body, "llrrll")]
    for w in replay.warnings:
        out.append(f"warning: record differs: {w}")
    out.append("REPRODUCED: every quantity that must be equal is equal" if not replay.failed else
               "NOT REPRODUCED: " + ", ".join(c.what for c in replay.failed) + " differ")
    return "\n".join(out)
