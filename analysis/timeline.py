"""When a link was down or lossy, as each peer saw it, and whether that explains one lost hop.

A missing delivery along ``author ... u v ... receiver`` was lost on its *first missing
hop*: u logged the message (or authored it), v never logged it with u's hop list, and
everything after v is a consequence. The frame from u to v was dropped

- by a block (a partition, or a flap while down): u drops frames it sends while its
  link to v is blocked, v drops frames that arrive while its link from u is blocked.
  Each peer logs the moment it applied a block (``partition`` event) and lifted it
  (``heal``), so those are the intervals that can drop a frame;
- or by the emulated loss a shape fault set: u decides loss when it sends, by a hash of
  (seed, u, v, frame) (peer/emulation.py), so the loss in force then (u's ``shape``
  events) must say *this* frame is lost.

When u sent the frame comes from u's own logs: u writes a line, counts it and forwards it
in one step, and writes a ``progress`` record (cumulative ``recv``) at most every 100 ms,
so u's k-th line was sent after the last record with recv < k and no later than the first
with recv >= k (the author: at its ``authored`` event). A restarted peer's records count
from 0 again: its send times are taken as unknown. u releases a frame at least the
link's latency − jitter and at most its latency + jitter after sending it (FIFO and a
bandwidth limit only delay it more; with a bandwidth limit there is no upper bound; an
unshaped link sends at once), so a block of u explains it only if it overlaps
[sent + least delay, sent + most delay]. v receives it some time after it was released,
so a block of v explains it if it ends after the earliest release and began before v's
last record (v reads, and drops, nothing after that).

Each interval is named after the fault that caused it: the last record of faults.jsonl on
that edge that fired before the peer applied it.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peer.emulation import is_lost
from peer.logfiles import events_file
from peer.wire import encode_payload

INF = math.inf
EPS = 0.002  # event and fault times are rounded to 1 us; clocks of one host
DOWN_ACTIONS = ("partition", "flap")


@dataclass
class PeerTimeline:
    """What one peer's events.jsonl says about when it sent and what its links were."""

    starts: int = 0
    last: float = -INF  # time of its last record: it read (and dropped) nothing later
    samples: list[tuple[float, int]] = field(default_factory=list)  # (t, recv) of progress/summary
    authored: list[float] = field(default_factory=list)
    blocked: dict[int, list[list[float]]] = field(default_factory=dict)  # nbr -> [[from, to], ...]
    shapes: dict[int, list[tuple[float, dict[str, float]]]] = field(default_factory=dict)  # nbr -> (from, shape)
    _recvs: list[int] = field(default_factory=list, repr=False)  # the samples' recv, for bisect

    @classmethod
    def read(cls, path: Path) -> PeerTimeline:
        out = cls()
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError:
            return out
        for raw in lines:
            try:
                rec = json.loads(raw)
                t = float(rec["t"])
                out.last = t  # records are appended as things happen: the last line is the latest
                out._add(rec, t, rec.get("ev"))
            except (ValueError, KeyError, TypeError):
                continue  # torn or foreign lines are reported by the log reader
        return out

    def _add(self, rec: dict[str, Any], t: float, ev: Any) -> None:
        if ev == "start":
            self.starts += 1
        elif ev in ("progress", "summary"):
            self.samples.append((t, int(rec["recv"])))
        elif ev == "authored":
            self.authored.append(t)
        elif ev == "partition":
            self.blocked.setdefault(int(rec["nbr"]), []).append([t, INF])
        elif ev == "heal":
            spans = self.blocked.get(int(rec["nbr"]))
            if spans and spans[-1][1] == INF:
                spans[-1][1] = t
        elif ev == "shape":
            keys = ("latency", "jitter", "loss", "bandwidth")
            self.shapes.setdefault(int(rec["nbr"]), []).append((t, {k: float(rec[k]) for k in keys}))

    def sent_window(self, line: int | None) -> tuple[float, float]:
        """When this peer sent the forwards of its ``line``-th logged line (1-based; None: its own message)."""
        if line is None:
            return (min(self.authored) - EPS, max(self.authored) + EPS) if self.authored else (-INF, INF)
        if self.starts != 1:
            return -INF, INF
        if len(self._recvs) != len(self.samples):
            self._recvs = [r for _, r in self.samples]
        i = bisect_left(self._recvs, line)  # first sample with recv >= line (recv only grows in one incarnation)
        lo = self.samples[i - 1][0] - EPS if i > 0 else -INF
        hi = self.samples[i][0] + EPS if i < len(self.samples) else INF
        return lo, hi


class RunTimeline:
    """Explains lost hops by the links' down and lossy intervals (see the module docstring)."""

    def __init__(self, log_dir: Path, records: list[dict[str, Any]], seed: int | None,
                 base_delay: Callable[[int, int], tuple[float, float, float]]) -> None:
        """``base_delay(u, v)``: the spec's (least delay, most delay, bandwidth) of link u-v."""
        self.log_dir = log_dir
        self.seed = seed
        self.base_delay = base_delay
        # (t, fault spelling, label, edges) of every edge fault that fired, in firing order
        self.records = [r for r in records if r.get("action") in DOWN_ACTIONS + ("shape",)]
        self._peers: dict[int, PeerTimeline] = {}
        self._causes: dict[tuple[int, int, float, tuple[str, ...]], str] = {}
        self._delay_cache: dict[tuple[int, int], tuple[float, float]] = {}

    def peer(self, p: int) -> PeerTimeline:
        if p not in self._peers:
            self._peers[p] = PeerTimeline.read(events_file(self.log_dir, p))
        return self._peers[p]

    def _cause(self, u: int, v: int, t: float, actions: tuple[str, ...]) -> str:
        """The last fault on edge u-v of ``actions`` that fired before ``t`` (a flap step named by its cycle)."""
        key = (min(u, v), max(u, v), t, actions)
        if key not in self._causes:
            self._causes[key] = self._find_cause(u, v, t, actions)
        return self._causes[key]

    def _find_cause(self, u: int, v: int, t: float, actions: tuple[str, ...]) -> str:
        edge = sorted((u, v))
        best = None
        for r in self.records:
            if r.get("action") in actions and edge in r.get("edges", []) and r.get("phase") != "up" \
                    and float(r.get("t", INF)) <= t + EPS:
                best = r
        if best is None:
            return f"link {edge[0]}-{edge[1]} changed by no recorded fault"
        if best.get("phase"):
            return f"{best['fault']} (down {best.get('cycle')})"
        return str(best["fault"])

    def _delays(self, u: int, v: int) -> tuple[float, float]:
        """The least and the most time u's frames to v spent in its emulation (FIFO and a
        bandwidth limit only add to the least; a bandwidth limit leaves the most unbounded)."""
        base_least, base_most, base_bw = self.base_delay(u, v)
        shapes = [s for _, s in self.peer(u).shapes.get(v, [])]
        least = min([base_least] + [max(0.0, s["latency"] - s["jitter"]) for s in shapes])
        if base_bw or any(s["bandwidth"] for s in shapes):
            return least, INF
        return least, max([base_most] + [s["latency"] + s["jitter"] for s in shapes])

    def explain_hop(self, u: int, v: int, hops: tuple[int, ...], line: int | None) -> str | None:
        """Why the frame with ``hops`` (ending in u) sent by u to v never reached v's log, if a
        down or lossy interval of u-v explains it; ``line``: u's log line it forwarded (None: authored)."""
        lo, hi = self.peer(u).sent_window(line)
        if (u, v) not in self._delay_cache:
            self._delay_cache[u, v] = self._delays(u, v)
        least, most = self._delay_cache[u, v]
        for t0, t1 in self.peer(u).blocked.get(v, []):
            if t0 <= hi + most and t1 >= lo + least:
                return self._cause(u, v, t0, DOWN_ACTIONS)
        for t0, t1 in self.peer(v).blocked.get(u, []):
            # the frame reached v after it left u (by how much is not bounded), while v ran
            if t1 >= lo + least and t0 <= self.peer(v).last:
                return self._cause(u, v, t0, DOWN_ACTIONS)
        return self._lossy(u, v, hops, lo, hi)

    def _lossy(self, u: int, v: int, hops: tuple[int, ...], lo: float, hi: float) -> str | None:
        changes = self.peer(u).shapes.get(v, [])
        payload = encode_payload(hops[0], list(hops))
        for i, (t0, shape) in enumerate(changes):
            t1 = changes[i + 1][0] if i + 1 < len(changes) else INF
            if t0 <= hi and t1 >= lo and is_lost(self.seed, u, v, payload, shape["loss"]):
                return f"{self._cause(u, v, t0, ('shape',))} (loss={shape['loss']:g})"
        return None


def read_fault_records(run_dir: Path) -> list[dict[str, Any]]:
    """The raw records of faults.jsonl that name a fault (unreadable lines are reported elsewhere)."""
    out = []
    try:
        lines = (Path(run_dir) / "faults.jsonl").read_bytes().split(b"\n")
    except OSError:
        return out
    for raw in lines:
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if isinstance(rec, dict) and "fault" in rec:
            out.append(rec)
    return out
