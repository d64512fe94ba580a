"""Fault timeline of a run spec: kill, pause, resume, restart peers; partition, heal edges.

Spelling (CLI ``--fault``, repeatable)::

    ACTION:TARGETS@WHEN
    kill:3@0                  kill peer 3 right after it is started (before it can author)
    kill:3@deliveries=20000   kill peer 3 once the run has made 20,000 deliveries
    pause:2@0.5  resume:2@1.5 freeze / thaw peer 2 (seconds after the first peer started)
    restart:3@2               kill peer 3 if alive and start it again
    partition:0-1,2-3@0.2     drop every frame over edges 0–1 and 2–3 ...
    heal:0-1@1                ... until healed
    shape:0-1:latency=0.2,loss=0.1@5   from t=5 on, edge 0-1 (both ways) has these link shape
                              keys on top of its current shape (several edges: shape:0-1,2-3:loss=0.5@1)
    flap:0-1@2,period=1,count=5        from t=2, edge 0-1 goes down for ``down`` seconds (default
                              period/2) and up again, ``count`` times, one cycle every ``period`` s
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from generator.errors import SpecError
from peer.emulation import SHAPE_KEYS, is_number, shape_problem, show_value

PEER_ACTIONS = ("kill", "pause", "resume", "restart")
EDGE_ACTIONS = ("partition", "heal", "shape", "flap")
FLAP_KEYS = ("period", "count", "down")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class Fault:
    """One timed fault. Exactly one of ``at`` (seconds) and ``after_deliveries`` is set."""

    action: str
    peers: tuple[int, ...] = ()
    edges: tuple[tuple[int, int], ...] = ()
    at: float | None = None
    after_deliveries: int | None = None
    # shape: the link shape keys it sets, as sorted (key, value) pairs
    shape: tuple[tuple[str, float], ...] = ()
    # flap: a cycle every ``period`` s, ``count`` cycles, each down ``down`` s (None: period/2)
    period: float | None = None
    count: int | None = None
    down: float | None = None

    def __post_init__(self) -> None:
        if self.action not in PEER_ACTIONS + EDGE_ACTIONS:
            raise SpecError(f"unknown fault action {self.action!r}; known: {', '.join(PEER_ACTIONS + EDGE_ACTIONS)}")
        if (self.at is None) == (self.after_deliveries is None):
            raise SpecError(f"fault {self.action}: give exactly one of a time or a delivery count")
        if self.action in PEER_ACTIONS and (not self.peers or self.edges):
            raise SpecError(f"fault {self.action} takes peers, e.g. {self.action}:3@1")
        if self.action in EDGE_ACTIONS and (not self.edges or self.peers):
            raise SpecError(f"fault {self.action} takes edges, e.g. {self.action}:0-1,2-3@1")
        if self.at is not None and (not is_number(self.at) or not math.isfinite(self.at) or self.at < 0):
            raise SpecError(f"--fault {self._spelling()}: time must be a finite number >= 0 (seconds from the "
                            f"start), got {show_value(self.at)}")
        if self.after_deliveries is not None and (not _is_int(self.after_deliveries) or self.after_deliveries < 0):
            raise SpecError(f"--fault {self._spelling()}: delivery count must be an integer >= 0, "
                            f"got {show_value(self.after_deliveries)}")
        for p in self.peers:
            if not _is_int(p) or p < 0:
                raise SpecError(f"--fault {self._spelling()}: peer ids must be integers >= 0, got {show_value(p)}")
        for e in self.edges:
            if len(e) != 2 or not all(_is_int(x) and x >= 0 for x in e):
                raise SpecError(f"--fault {self._spelling()}: edges must be pairs of peer ids >= 0, "
                                f"got {show_value(e)}")
        self._check_shape()
        self._check_flap()

    def _check_shape(self) -> None:
        if self.action != "shape":
            if self.shape:
                raise SpecError(f"fault {self.action} takes no link shape")
            return
        if not self.shape:
            raise SpecError("fault shape needs link shape keys, e.g. shape:0-1:latency=0.2,loss=0.1@5")
        for item in self.shape:
            key, value = item if len(item) == 2 else (None, None)
            if key not in SHAPE_KEYS:
                raise SpecError(f"--fault {self._spelling()}: unknown link shape key {show_value(key)}; "
                                f"known: {', '.join(SHAPE_KEYS)}")
            problem = shape_problem(key, value)
            if problem:
                raise SpecError(f"--fault {self._spelling()}: {problem}")

    def _check_flap(self) -> None:
        if self.action != "flap":
            if (self.period, self.count, self.down) != (None, None, None):
                raise SpecError(f"fault {self.action} takes no period, count or down")
            return
        where = f"--fault {self._spelling()}"
        missing = [k for k in ("period", "count") if getattr(self, k) is None]
        if missing:
            raise SpecError(f"{where}: a flap needs {' and '.join(k + '=' for k in missing)}, "
                            "e.g. flap:0-1@2,period=1,count=5")
        if not is_number(self.period) or not math.isfinite(self.period) or self.period <= 0:
            raise SpecError(f"{where}: period must be a finite number > 0 (seconds), got {show_value(self.period)}")
        if not _is_int(self.count) or self.count < 1:
            raise SpecError(f"{where}: count must be an integer >= 1, got {show_value(self.count)}")
        if self.down is not None and (not is_number(self.down) or not 0 < self.down < self.period):
            raise SpecError(f"{where}: down must be a number of seconds > 0 and < period ({show_value(self.period)}), "
                            f"got {show_value(self.down)}")

    @property
    def down_time(self) -> float:
        """A flap's down time in each cycle (seconds): ``down``, else half the period."""
        assert self.period is not None
        return self.down if self.down is not None else self.period / 2

    def flap_steps(self) -> list[tuple[float, str, int]]:
        """A flap's (offset in seconds from its start, "down" or "up", cycle 1..count)."""
        assert self.period is not None and self.count is not None
        steps = []
        for i in range(self.count):
            steps.append((i * self.period, "down", i + 1))
            steps.append((i * self.period + self.down_time, "up", i + 1))
        return steps

    @property
    def adds_loss(self) -> bool:
        """A shape fault that sets a loss above 0 on its links."""
        return any(k == "loss" and v > 0 for k, v in self.shape)

    def _spelling(self) -> str:
        """The CLI spelling, for messages about values that may be of any type."""
        targets = ",".join(map(str, self.peers)) or ",".join("-".join(map(str, e)) for e in self.edges)
        when = show_value(self.at) if self.at is not None else f"deliveries={show_value(self.after_deliveries)}"
        return f"{self.action}:{targets}{self._shape_text(show_value)}@{when}{self._flap_text(show_value)}"

    def _shape_text(self, show) -> str:
        return (":" + ",".join(f"{k}={show(v)}" for k, v in self.shape)) if self.shape else ""

    def _flap_text(self, show) -> str:
        if self.action != "flap":
            return ""
        # Only the keys given: a message about a missing count must not echo "count=None".
        keys = (("period", self.period), ("count", self.count), ("down", self.down))
        return "".join(f",{k}={show(v)}" for k, v in keys if v is not None)

    @property
    def at_start(self) -> bool:
        """A kill at time 0: the peer never takes part."""
        return self.action == "kill" and self.at == 0

    @classmethod
    def parse(cls, text: str) -> Fault:
        try:
            action, rest = text.split(":", 1)
            targets, when = rest.rsplit("@", 1)
            action = action.strip().lower()
            when, *extra = when.split(",")
            at = after = None
            if when.startswith("deliveries="):
                after = int(when.removeprefix("deliveries="))
            else:
                at = float(when)
            if action not in EDGE_ACTIONS:
                if extra:
                    raise ValueError(f"{action} takes nothing after its time")
                return cls(action, peers=tuple(int(p) for p in targets.split(",")), at=at, after_deliveries=after)
            shape: tuple[tuple[str, float], ...] = ()
            if action == "shape":
                targets, _, shape_text = targets.partition(":")
                shape = _parse_keys(shape_text, SHAPE_KEYS, "link shape")
            flap = dict(_parse_keys(",".join(extra), FLAP_KEYS, "flap")) if action == "flap" or extra else {}
            edges = tuple(tuple(sorted(int(x) for x in e.split("-"))) for e in targets.split(","))
            if any(len(e) != 2 for e in edges):
                raise ValueError("edges are written u-v")
            count = flap.get("count")
            if count is not None and count != int(count):
                raise ValueError(f"count must be an integer, got {count:g}")
            return cls(action, edges=edges, at=at, after_deliveries=after, shape=shape,  # type: ignore[arg-type]
                       period=flap.get("period"), count=None if count is None else int(count), down=flap.get("down"))
        except ValueError as e:
            raise SpecError(f"cannot parse fault {text!r} ({e}); expected e.g. kill:3@0, pause:2@0.5, "
                            "kill:3@deliveries=1000, partition:0-1@0.2, shape:0-1:loss=0.1@5, "
                            "flap:0-1@2,period=1,count=5") from e

    @classmethod
    def from_dict(cls, data: dict) -> Fault:
        return cls(
            action=data["action"],
            peers=tuple(data.get("peers", ())),
            edges=tuple(tuple(e) for e in data.get("edges", ())),
            at=data.get("at"),
            after_deliveries=data.get("after_deliveries"),
            shape=tuple(tuple(kv) for kv in data.get("shape", ())),  # type: ignore[misc]
            period=data.get("period"),
            count=data.get("count"),
            down=data.get("down"),
        )

    def to_dict(self) -> dict:
        """As spec.json holds it: the link-change keys only where they are set."""
        data = {"action": self.action, "peers": list(self.peers), "edges": [list(e) for e in self.edges],
                "at": self.at, "after_deliveries": self.after_deliveries}
        if self.shape:
            data["shape"] = [list(kv) for kv in self.shape]
        if self.action == "flap":
            data.update(period=self.period, count=self.count, down=self.down)
        return data

    def check(self, graph: nx.Graph) -> None:
        for p in self.peers:
            if p not in graph:
                raise SpecError(f"--fault {self}: no peer {p} in the topology ({graph.number_of_nodes()} peers)")
        for u, v in self.edges:
            if not graph.has_edge(u, v):
                raise SpecError(f"--fault {self}: no edge {u}-{v} in the topology")

    def __str__(self) -> str:
        targets = ",".join(map(str, self.peers)) or ",".join(f"{u}-{v}" for u, v in self.edges)
        when = f"{self.at:g}" if self.at is not None else f"deliveries={self.after_deliveries}"
        return f"{self.action}:{targets}{self._shape_text(_g)}@{when}{self._flap_text(_g)}"


def _g(x: float) -> str:
    return f"{x:g}"


def _parse_keys(text: str, keys: tuple[str, ...], what: str) -> tuple[tuple[str, float], ...]:
    """``k=v,k=v`` with k in ``keys`` and v a number, as sorted pairs; each key at most once."""
    out: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in keys:
            raise ValueError(f"bad {what} item {item!r}; expected KEY=VALUE with KEY in {', '.join(keys)}")
        if key in out:
            raise ValueError(f"{what} key {key} given twice")
        out[key] = float(value)
    return tuple(sorted(out.items()))


def _cut_from_start(faults: tuple[Fault, ...]) -> set[tuple[int, int]]:
    """Edges partitioned at time 0 and never healed (a flap's up heals too)."""
    healed = {e for f in faults if f.action in ("heal", "flap") for e in f.edges}
    return {e for f in faults if f.action == "partition" and f.at == 0 for e in f.edges} - healed


def surviving_graph(graph: nx.Graph, faults: tuple[Fault, ...]) -> nx.Graph:
    """The graph that can be predicted exactly: without the peers killed at start and
    the edges partitioned from the start for good."""
    gone = {p for f in faults if f.at_start for p in f.peers}
    cut = _cut_from_start(faults)
    if not gone and not cut:
        return graph
    g = graph.subgraph(n for n in graph.nodes if n not in gone).copy()
    g.remove_edges_from(cut)
    return g


def exactly_predictable(faults: tuple[Fault, ...]) -> bool:
    """True when every fault takes effect before the first frame and lasts (kills at
    start, partitions from the start never healed): the rest is plain v1 on what is left.

    A shape fault that adds no loss keeps it exact: v1 forwards every frame it receives
    to every neighbour not on its hop list whenever it arrives, so delays (latency, jitter,
    bandwidth) change when deliveries happen, never which. Loss and flaps drop frames."""
    cut = _cut_from_start(faults)
    return all(f.at_start or (f.action == "partition" and set(f.edges) <= cut)
               or (f.action == "shape" and not f.adds_loss) for f in faults)
