"""Which faults a run actually went through, and what each of them explains.

The fault timeline a user asked for (spec.json) is not what happened: a fault whose
trigger was never reached did not fire, and a delivery trigger fires at the count
the runner saw, not at the count asked for. The runner records every fault it
applied in ``faults.jsonl`` (one JSON object per line, docs/run-directory.md); this
module reads it and answers, for a delivery that never came or a counter that
disagrees with the logs, *which* applied fault (or lossy link) explains it. An
answer of None means nothing does: the run's verdict then says so.

Kills at time 0 are facts of the spec (the prediction is made without those peers),
so they count as applied even where a backend never started the peer at all.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.timeline import RunTimeline, read_fault_records
from generator.errors import SpecError
from generator.faults import Fault
from generator.spec import RunSpec
from peer.emulation import LinkShape

FAULT_LOG = "faults.jsonl"
PEER_FAULTS = ("kill", "restart", "pause", "resume")

Edge = tuple[int, int]


@dataclass(frozen=True)
class AppliedFault:
    """One fault as it fired: when (seconds on the fault clock) and at what delivery count."""

    fault: Fault
    elapsed: float | None = None
    deliveries: int | None = None
    step: tuple[str, int] | None = None  # a flap's ("down" or "up", cycle)

    def __str__(self) -> str:
        return str(self.fault)

    def to_dict(self) -> dict[str, Any]:
        out = {"fault": str(self.fault), "elapsed": self.elapsed, "deliveries": self.deliveries}
        if self.step is not None:
            out["phase"], out["cycle"] = self.step
        return out


@dataclass(frozen=True)
class FaultContext:
    """The faults that fired, in order, and the links with emulated loss."""

    applied: tuple[AppliedFault, ...] = ()
    lossy: dict[Edge, float] = field(default_factory=dict)  # undirected edge (u < v) -> loss
    lossy_everywhere: float = 0.0  # the global --loss
    # faults of the spec that never fired (their trigger was not reached)
    not_fired: tuple[str, ...] = ()
    # the links' down and lossy intervals as the peers saw them (runs with edge faults)
    timeline: RunTimeline | None = field(default=None, compare=False, repr=False)

    # Lookups made once from ``applied``: the first fault that acted on each peer, the first
    # partition of each edge (u < v). A run's missing deliveries ask them once per path.
    _by_peer: dict[int, tuple[int, str]] = field(init=False, repr=False, compare=False)  # (firing order, fault)
    _by_edge: dict[Edge, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_peer: dict[int, tuple[int, str]] = {}
        by_edge: dict[Edge, str] = {}
        for i, a in enumerate(self.applied):
            if a.fault.action in PEER_FAULTS:
                for p in a.fault.peers:
                    by_peer.setdefault(p, (i, str(a.fault)))
            elif a.fault.action in ("partition", "flap") or a.fault.adds_loss:
                for u, v in a.fault.edges:
                    by_edge.setdefault((min(u, v), max(u, v)), str(a.fault))
        object.__setattr__(self, "_by_peer", by_peer)
        object.__setattr__(self, "_by_edge", by_edge)

    @property
    def any(self) -> bool:
        return bool(self.applied or self.lossy_everywhere or any(self.lossy.values()))

    @property
    def peers(self) -> frozenset[int]:
        """Peers some fault acted on (killed, restarted, paused)."""
        return frozenset(self._by_peer)

    @property
    def restarts(self) -> Counter:
        """peer -> how many times it was restarted (each restart is a new incarnation)."""
        return Counter(p for a in self.applied if a.fault.action == "restart" for p in a.fault.peers)

    def peer_fault(self, *peers: int) -> str | None:
        """The first applied fault that acted on any of ``peers``."""
        found = [self._by_peer[p] for p in peers if p in self._by_peer]
        return min(found)[1] if found else None

    def edge_fault(self, u: int, v: int) -> str | None:
        """The first applied partition of edge u-v, else its emulated loss."""
        e = (u, v) if u < v else (v, u)
        found = self._by_edge.get(e)
        if found:
            return found
        loss = self.lossy.get(e, self.lossy_everywhere)
        return f"loss={loss:g} on link {e[0]}-{e[1]}" if loss else None

    def link(self, u: int, v: int) -> str | None:
        """What explains frames lost between u and v: a fault on either peer or on the edge."""
        return self.peer_fault(u, v) or self.edge_fault(u, v)

    def path(self, path: list[int] | tuple[int, ...],
             observed: Mapping[tuple[int, tuple[int, ...]], int] | None = None) -> str | None:
        """What explains a delivery along ``path`` (author ... receiver) that never came.

        With ``observed`` ((receiver, hops) -> its line number in the receiver's log) and a
        timeline, an edge explains it only if its first missing hop crossed that edge while
        it was down or lossy (analysis/timeline.py)."""
        found = self.peer_fault(*path)
        if found:
            return found
        if self.timeline is not None and observed is not None:
            return self._first_missing_hop(tuple(path), observed)
        for u, v in zip(path, path[1:]):
            found = self.edge_fault(u, v)
            if found:
                return found
        return None

    def _first_missing_hop(self, path: tuple[int, ...],
                           observed: Mapping[tuple[int, tuple[int, ...]], int]) -> str | None:
        assert self.timeline is not None
        for i in range(1, len(path)):
            if (path[i], path[:i]) in observed:
                continue
            u, v = path[i - 1], path[i]
            # u logged it (the previous hop was observed), or u is the author
            line = observed[u, path[: i - 1]] if i >= 2 else None
            e = (u, v) if u < v else (v, u)
            loss = self.lossy.get(e, self.lossy_everywhere)
            static = f"loss={loss:g} on link {e[0]}-{e[1]}" if loss else None
            return self.timeline.explain_hop(u, v, path[:i], line) or static
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": [a.to_dict() for a in self.applied],
            "not_fired": list(self.not_fired),
            "lossy_links": {f"{u}-{v}": loss for (u, v), loss in sorted(self.lossy.items()) if loss},
            "loss_everywhere": self.lossy_everywhere,
        }


def read_fault_log(run_dir: Path) -> tuple[list[AppliedFault], list[str]]:
    """The applied faults in ``run_dir/faults.jsonl`` and problems reading it."""
    path = Path(run_dir) / FAULT_LOG
    out: list[AppliedFault] = []
    problems: list[str] = []
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return out, problems
    except OSError as e:
        return out, [f"{FAULT_LOG}: cannot read: {e.strerror or e}"]
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            if "fault" not in rec:
                continue  # the clock's start and other bookkeeping records
            fault = Fault.parse(str(rec["fault"]))
        except (ValueError, SpecError) as e:
            problems.append(f"{FAULT_LOG}:{i}: unreadable record ({str(e)[:80]}), skipped")
            continue
        elapsed, deliveries = rec.get("elapsed"), rec.get("deliveries")
        phase, cycle = rec.get("phase"), rec.get("cycle")
        out.append(AppliedFault(
            fault,
            float(elapsed) if isinstance(elapsed, (int, float)) else None,
            deliveries if isinstance(deliveries, int) and not isinstance(deliveries, bool) else None,
            (phase, cycle) if phase in ("down", "up") and isinstance(cycle, int) else None,
        ))
    return out, problems


def fault_context(run_dir: Path, spec: RunSpec | None) -> tuple[FaultContext, list[str]]:
    """What fired in this run (faults.jsonl, plus the kills at start of the spec) and its lossy links."""
    if spec is None:
        return FaultContext(), []
    logged, problems = read_fault_log(run_dir)
    at_start = [AppliedFault(f, 0.0, 0) for f in spec.faults if f.at_start]
    seen_start = {str(a.fault) for a in logged if a.fault.at_start}
    applied = [a for a in at_start if str(a.fault) not in seen_start] + logged
    fired = Counter(str(a.fault) for a in applied if a.step is None or a.step == ("down", 1))
    not_fired = []
    for f in spec.faults:
        if fired[str(f)]:
            fired[str(f)] -= 1
        else:
            not_fired.append(str(f))
    opts = spec.options
    # A shaped edge carries its own loss (the global one unless it overrides it), others the global one.
    shapes = opts.edge_shapes()
    lossy = {e: s.loss for e, s in shapes.items()}
    timeline = None
    if any(f.action in ("partition", "flap", "shape") for f in spec.faults):
        def base_delay(u: int, v: int) -> tuple[float, float, float]:
            s = shapes.get((min(u, v), max(u, v))) or LinkShape(opts.latency, opts.jitter, opts.loss, opts.bandwidth)
            if not s.active:
                return 0.0, 0.0, 0.0  # the peer sends at once, no emulation
            return max(0.0, s.latency - s.jitter), s.latency + s.jitter, s.bandwidth
        timeline = RunTimeline(Path(run_dir) / "logs", read_fault_records(run_dir), spec.seed, base_delay)
    return FaultContext(tuple(applied), lossy, opts.loss, tuple(not_fired), timeline), problems
