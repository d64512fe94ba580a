"""A run's live state, read from its files while the peers write them (``p2p run --live``, ``p2p watch``).

:class:`LiveState` follows every peer's event log (state, frames sent, errors), message
log (deliveries, and frames and bytes per directed link, counted as analysis/logs.py
counts them: sender ``hops[-1]``, ``4 + len(line)`` bytes) and ``faults.jsonl``, each
with :class:`analysis.follow.Follow` (new whole lines only). Once every log is complete
the counts are the ones ``p2p analyse`` writes to summary.json. Files only: the server
(testbed/live.py) and the metrics read :meth:`LiveState.snapshot`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from analysis.follow import Follow
from generator.expect import DEFAULT_LIMIT, expect_for
from generator.networks import map_positions
from generator.predict import Prediction
from generator.spec import RunSpec
from peer.logfiles import events_file, messages_file, traffic_file

STATES = ("starting", "linked", "flooding", "done", "failed")
# A peer ended well when it got what it expected, or went idle / was stopped at the end of the run.
GOOD_EXITS = ("expected", "idle")
# A message line ends {"id":A,"hops":[A,...,s]}\n: its sender s is the number before "]}".
NEWLINE, BRACE, BRACKET, ZERO = b"\n}]0"


@dataclass(frozen=True)
class LiveSetup:
    """What a run is meant to do: its graph, layout and predicted counts (None when unknown)."""

    run_dir: Path
    name: str
    n: int
    edges: tuple[tuple[int, int], ...]
    layout: dict[int, tuple[float, float]]
    expect_peer: dict[int, int | None]
    expect_edge: dict[tuple[int, int], tuple[int, int]]  # (u, v) -> (frames, bytes)
    expect_total: int | None
    exact: bool  # the prediction is exact (else an upper bound, or none)
    swarm: bool  # logs arrive only at the end
    # Peers of other implementations (spec.json "implementations"): no events log, so their message
    # log is followed as it grows and their traffic file (written at exit) says they are done.
    foreign: frozenset[int] = frozenset()

    @classmethod
    def of(cls, run_dir: Path, spec: RunSpec, prediction: Prediction | None, swarm: bool = False) -> LiveSetup:
        graph = spec.graph()
        per_peer = prediction.per_peer_received() if prediction is not None else {}
        return cls(
            run_dir=Path(run_dir), name=spec.name, n=spec.n,
            edges=tuple(sorted((min(u, v), max(u, v)) for u, v in graph.edges)),
            layout=layout_of(graph),
            expect_peer={p: (per_peer[p].frames if p in per_peer else (0 if prediction else None))
                         for p in sorted(graph.nodes)},
            expect_edge={e: (f.frames, f.bytes) for e, f in (prediction.per_edge if prediction else {}).items()},
            expect_total=prediction.deliveries if prediction is not None else None,
            exact=prediction is not None and spec.exactly_predictable,
            swarm=swarm,
            foreign=frozenset(p for impl in spec.implementations for p in impl.ids),
        )

    @classmethod
    def load(cls, run_dir: Path) -> LiveSetup:
        """From a run directory's spec.json (a ``P2PError`` or ``OSError`` when it has none)."""
        run_dir = Path(run_dir)
        spec = RunSpec.load(run_dir / "spec.json")
        prediction = expect_for(spec, DEFAULT_LIMIT, True, lambda _text: None)
        swarm = (run_dir / "stack.yml").exists()
        return cls.of(run_dir, spec, prediction, swarm)


def layout_of(graph: nx.Graph) -> dict[int, tuple[float, float]]:
    """Node positions in [0, 1]², computed once on the host (the page draws them as SVG, y down):
    the map for a graph whose nodes have positions (real networks), else a circle or a spring layout."""
    on_map = map_positions(graph)
    if on_map is not None:
        pos = {p: (x, -y) for p, (x, y) in on_map.items()}  # north up on a y-down page
    elif graph.number_of_nodes() <= 2 or nx.density(graph) > 0.5:
        pos = nx.circular_layout(graph)
    else:
        pos = nx.spring_layout(graph, seed=1, iterations=50 if graph.number_of_nodes() < 500 else 15)
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    return {int(p): (round((x - min(xs)) / span, 4), round((y - min(ys)) / span, 4)) for p, (x, y) in pos.items()}


@dataclass
class _Peer:
    """One peer as its logs tell it so far."""

    events: Follow
    messages: Follow
    frames: np.ndarray  # frames received, indexed by sender
    nbytes: np.ndarray  # their bytes, indexed by sender
    state: str = "starting"
    delivered: int = 0
    sent: int = 0
    first_t: float | None = None
    last_t: float | None = None
    exit_reason: str | None = None
    links_failed: int = 0
    # While the run goes on: the peer's own counts from its progress records (receiver's view:
    # deliveries, and frames/bytes per sending neighbour). Once the run has ended the message
    # logs are read once and replace them (exactly as p2p analyse counts).
    recv: int = 0
    link_in: dict[int, tuple[int, int]] = field(default_factory=dict)
    logs_read: bool = False


class LiveState:
    """The run so far, refreshed from its files on demand (thread-safe; at most every ``min_interval`` s)."""

    def __init__(self, setup: LiveSetup, min_interval: float = 0.25) -> None:
        self.setup = setup
        log_dir = setup.run_dir / "logs"
        n = max(setup.n, max(setup.expect_peer, default=-1) + 1)
        self._peers = {p: _Peer(Follow(events_file(log_dir, p)), Follow(messages_file(log_dir, p)),
                                frames=np.zeros(n, dtype=np.int64), nbytes=np.zeros(n, dtype=np.int64))
                       for p in setup.expect_peer}
        self._faults_file = Follow(setup.run_dir / "faults.jsonl")
        self.faults: list[dict[str, Any]] = []
        self.errors: Counter = Counter()  # reason -> occurrences
        self._lock = threading.Lock()
        self._min_interval = min_interval
        self._refreshed = float("-inf")
        self._snapshot: dict[str, Any] | None = None

    def snapshot(self, fresh: bool = False) -> dict[str, Any]:
        """The current state as plain JSON-able data (re-read when older than ``min_interval``, or ``fresh``)."""
        with self._lock:
            now = time.monotonic()
            if fresh or self._snapshot is None or now - self._refreshed >= self._min_interval:
                self._refreshed = now
                self._refresh()
                self._snapshot = self._build()
            return self._snapshot

    def _refresh(self) -> None:
        for peer in self._peers.values():
            for data, end in peer.events.chunks():
                for line in data[:end].splitlines():
                    self._event(peer, line)
        for data, end in self._faults_file.chunks():
            for line in data[:end].splitlines():
                rec = _json(line)
                if rec is not None and "fault" in rec:
                    self.faults.append(rec)
                    self._fault_fired(rec)
        # The message logs are read only once every peer is done or failed: reading them while
        # the peers write them cost the run time (bench/live.py, docs/benchmarks.md).
        for p in self.setup.foreign:
            self._follow_foreign(self._peers[p], p)
        ended = all(x.state in ("done", "failed") for x in self._peers.values())
        for p, peer in self._peers.items():
            if p in self.setup.foreign:
                continue
            if ended:
                for data, end in peer.messages.chunks():
                    _count_senders(peer.frames, peer.nbytes, data[:end])
                peer.logs_read = True
                peer.delivered = int(peer.frames.sum())  # lines that are messages, as p2p analyse counts them
            else:
                peer.delivered = peer.recv
            if peer.state in ("starting", "linked") and peer.delivered:
                peer.state = "flooding"

    def _follow_foreign(self, peer: _Peer, p: int) -> None:
        """A peer of another implementation: its message log as it grows (a few peers: cheap), done
        once its traffic file is there (the original format writes it at exit)."""
        for data, end in peer.messages.chunks():
            _count_senders(peer.frames, peer.nbytes, data[:end])
        peer.logs_read = True
        peer.delivered = peer.recv = int(peer.frames.sum())
        if peer.delivered and peer.state in ("starting", "linked"):
            peer.state = "flooding"
        if traffic_file(self.setup.run_dir / "logs", p).exists():
            peer.state, peer.exit_reason = "done", peer.exit_reason or "exited"

    def _fault_fired(self, rec: dict[str, Any]) -> None:
        """A killed peer writes no summary: it is failed (until a restart's ``start`` record)."""
        if rec.get("action") != "kill":
            return
        for p in rec.get("peers") or ():
            peer = self._peers.get(p)
            if peer is not None and peer.state != "done":
                peer.state = "failed"

    def _event(self, peer: _Peer, line: bytes) -> None:
        rec = _json(line)
        if rec is None:
            return
        ev, t = rec.get("ev"), rec.get("t")
        if isinstance(t, (int, float)):
            peer.first_t = t if peer.first_t is None else min(peer.first_t, t)
            peer.last_t = t if peer.last_t is None else max(peer.last_t, t)
        if ev == "start":
            peer.state, peer.exit_reason = "starting", None  # a restarted peer starts again
        elif ev == "link_up" and peer.state == "starting":
            peer.state = "linked"
        elif ev in ("authored", "progress") and peer.state in ("starting", "linked"):
            peer.state = "flooding"
        elif ev == "link_failed":
            peer.links_failed += 1
        elif ev == "error":
            self.errors[str(rec.get("reason"))] += int(rec.get("count", 1))
        if "sent" in rec and isinstance(rec["sent"], int):
            peer.sent = rec["sent"]
        if ev in ("progress", "summary") and isinstance(rec.get("recv"), int):
            peer.recv = rec["recv"]
            peer.link_in.update(_link_counts(rec))
        if ev == "summary":
            peer.exit_reason = rec.get("exit_reason")
            peer.state = "done" if peer.exit_reason in GOOD_EXITS and not peer.links_failed else "failed"

    def _build(self) -> dict[str, Any]:
        s = self.setup
        links: dict[tuple[int, int], int] = {}
        link_bytes: dict[tuple[int, int], int] = {}
        for p, peer in self._peers.items():
            if not peer.logs_read:
                for sender, (frames, nbytes) in peer.link_in.items():
                    links[(sender, p)], link_bytes[(sender, p)] = frames, nbytes
                continue
            for sender in np.flatnonzero(peer.frames).tolist():
                links[(sender, p)] = int(peer.frames[sender])
                link_bytes[(sender, p)] = int(peer.nbytes[sender])
        firsts = [x.first_t for x in self._peers.values() if x.first_t is not None]
        ended = all(x.state in ("done", "failed") for x in self._peers.values())
        lasts = [x.last_t for x in self._peers.values() if x.last_t is not None]
        start = min(firsts) if firsts else None
        elapsed = None if start is None else (max(lasts) if ended else time.time()) - start
        return {
            "name": s.name, "n": s.n, "swarm": s.swarm, "exact": s.exact, "ended": ended,
            "elapsed": None if elapsed is None else round(max(0.0, elapsed), 3),
            "deliveries": sum(x.delivered for x in self._peers.values()),
            "expected": s.expect_total,
            "bytes": sum(link_bytes.values()),
            "peers": [{"id": p, "state": x.state, "delivered": x.delivered, "expected": s.expect_peer[p],
                       "sent": x.sent, "exit_reason": x.exit_reason} for p, x in self._peers.items()],
            "links": [{"src": u, "dst": v, "frames": links.get((u, v), 0), "bytes": link_bytes.get((u, v), 0),
                       "expected_frames": s.expect_edge.get((u, v), (None, None))[0],
                       "expected_bytes": s.expect_edge.get((u, v), (None, None))[1]}
                      for u, v in sorted(set(links) | set(s.expect_edge))],
            "errors": dict(sorted(self.errors.items())),
            "faults": list(self.faults),
            "states": dict(Counter(x.state for x in self._peers.values())),
        }


def _count_senders(frames: np.ndarray, nbytes: np.ndarray, block: bytes) -> None:
    """Add a block of whole message lines to frames and bytes per sender (index: the sender's id).

    The sender is the number before each line's closing ``]}``; a line that does not end so,
    or names no peer below ``len(frames)``, is not counted. Vectorised: a regex over the
    lines of a finished mesh-9 (31.6 MB) took 1.0 s of CPU, this about a tenth (docs/live.md).
    """
    a = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(a == NEWLINE)
    if not len(ends):
        return
    starts = np.concatenate(([0], ends[:-1] + 1))
    sender = np.zeros(len(ends), dtype=np.int64)
    valid = (ends - starts >= 4) & (a[np.maximum(ends - 1, 0)] == BRACE) & (a[np.maximum(ends - 2, 0)] == BRACKET)
    going, place = valid.copy(), 1
    for back in range(3, 3 + len(str(len(frames)))):  # the sender's digits, last one first
        at = np.maximum(ends - back, starts)
        d = a[at].astype(np.int64) - ZERO
        digit = going & (ends - back >= starts) & (d >= 0) & (d <= 9)
        if back == 3:
            valid &= digit
        sender += np.where(digit, d * place, 0)
        going, place = digit, place * 10
    valid &= sender < len(frames)
    frames += np.bincount(sender[valid], minlength=len(frames))
    nbytes += np.bincount(sender[valid], weights=(ends - starts + 4)[valid], minlength=len(frames)).astype(np.int64)


def _link_counts(rec: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """(frames, bytes) received per neighbour: a progress record's ``in`` or a summary's ``links``."""
    out = {}
    if isinstance(rec.get("in"), dict):
        for nbr, counts in rec["in"].items():
            if str(nbr).isdigit() and isinstance(counts, list) and len(counts) == 2:
                out[int(nbr)] = (int(counts[0]), int(counts[1]))
    elif isinstance(rec.get("links"), dict):
        for nbr, link in rec["links"].items():
            if str(nbr).isdigit() and isinstance(link, dict) and link.get("frames_in"):
                out[int(nbr)] = (int(link["frames_in"]), int(link.get("bytes_in", 0)))
    return out


def _json(line: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None
