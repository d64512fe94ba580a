"""Stopping foreign peers whose logs went quiet (the adapter's exit rule, generator/adapter.py).

A foreign peer of ``exit.mode = "quiescence"`` is stopped (its adapter's signal, then
SIGKILL after ``exit.grace``) once ``exit.quiescence`` seconds passed without a new line
in its logs (``<id>.txt`` or ``<id>.traffic.txt`` grew), counted from its start. One of
``exit.mode = "self"`` exits by itself; as a backstop it is stopped the same way once every
peer of ours has exited and no foreign peer's log grew for that long: then nothing can
reach it any more. That backstop waits at least the run's ``--idle`` plus ``IDLE_MARGIN``
seconds: the peer's own rule (exit after ``--idle`` seconds without a frame) starts at the
same last line, so a shorter window races it and stops a peer that was about to exit by
itself (seen: idle 5 s against the default quiescence 5 s). Our own peers keep their own exit rules. The runners call ``due`` on
every look at the peers and act on what it returns.

A foreign peer whose logs grow past ``RUNAWAY_FACTOR`` times its predicted bytes (plus
``RUNAWAY_SLACK``) is stopped the same way at once: two peers that bounce frames back and
forth would otherwise fill the disk until the run's deadline, and the grade could never be
written. Such a stop is a runaway, not a quiescence stop: it counts against the peer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from generator.adapter import Adapter
from peer.logfiles import messages_file, traffic_file

RUNAWAY_FACTOR = 4
RUNAWAY_SLACK = 1 << 16
IDLE_MARGIN = 5.0  # s past the run's idle before a self-exiting peer's backstop may fire


@dataclass
class _Quiet:
    adapter: Adapter
    size: int = -1
    changed: float = 0.0
    signalled: float | None = None  # when the stop signal went
    killed: bool = False
    budget: int | None = None  # log bytes past which it is a runaway (None: no prediction)


@dataclass
class QuietWatch:
    """The foreign peers of a run (id -> adapter) and when each one's logs last grew."""

    log_dir: Path
    adapters: dict[int, Adapter]
    expected_bytes: dict[int, int] = field(default_factory=dict)  # peer -> its predicted received bytes
    peers: dict[int, _Quiet] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)  # at quiescence
    runaways: set[int] = field(default_factory=set)  # past their log budget
    idle: float | None = None  # the run's --idle: a self-exiting peer's backstop waits longer than it

    def __post_init__(self) -> None:
        now = time.monotonic()
        self.peers = {p: _Quiet(a, changed=now, budget=RUNAWAY_FACTOR * self.expected_bytes[p] + RUNAWAY_SLACK
                                if p in self.expected_bytes else None)
                      for p, a in self.adapters.items()}

    def restart_clock(self, now: float | None = None) -> None:
        """Count silence from now (e.g. when a start barrier fell)."""
        now = time.monotonic() if now is None else now
        for q in self.peers.values():
            q.changed = max(q.changed, now)

    def _size(self, p: int) -> int:
        total = 0
        for path in (messages_file(self.log_dir, p), traffic_file(self.log_dir, p)):
            try:
                total += os.stat(path).st_size
            except OSError:
                pass
        return total

    def look(self, now: float) -> None:
        for p, q in self.peers.items():
            size = self._size(p)
            if size != q.size:
                q.size, q.changed = size, now

    def due(self, now: float, alive: set[int], ours_done: bool) -> tuple[list[tuple[int, str]], list[int]]:
        """``(to signal: [(peer, signal name)], to kill)``: the stops due now among the ``alive`` foreign peers."""
        self.look(now)
        signal_now: list[tuple[int, str]] = []
        kill_now: list[int] = []
        last_any = max((q.changed for q in self.peers.values()), default=now)
        for p, q in self.peers.items():
            if p not in alive:
                continue
            if q.signalled is not None:
                if not q.killed and now - q.signalled >= q.adapter.stop_grace:
                    q.killed = True
                    kill_now.append(p)
                continue
            window = q.adapter.quiescence
            if q.adapter.exit_mode == "self" and self.idle is not None:
                window = max(window, self.idle + IDLE_MARGIN)
            quiet = now - q.changed >= window
            if q.adapter.exit_mode == "self":
                quiet = quiet and ours_done and now - last_any >= window
            runaway = q.budget is not None and q.size > q.budget
            if quiet or runaway:
                q.signalled = now
                (self.runaways if runaway else self.stopped).add(p)
                signal_now.append((p, q.adapter.stop_signal))
        return signal_now, kill_now


def quiet_watch(plan) -> QuietWatch:
    """The watch of a plan's foreign peers (``testbed.base.RunPlan``), with their runaway budgets."""
    foreign = plan.foreign()
    peers = [peer for peer in plan.peers if peer.id in foreign]
    return QuietWatch(plan.log_dir, {peer.id: plan.spec.implementation_of(peer.id).adapter for peer in peers},
                      {peer.id: peer.expect_bytes for peer in peers if peer.expect_bytes is not None},
                      idle=plan.spec.options.idle)


def stop_message(watch: QuietWatch, backend: str, peer: int, name: str, signal_name: str) -> str:
    """What the runner says when it stops a foreign peer."""
    q = watch.peers[peer]
    if peer in watch.runaways:
        why = f"its logs grew past {q.budget:,} bytes ({RUNAWAY_FACTOR}x its prediction): a runaway"
    else:
        window = q.adapter.quiescence
        if q.adapter.exit_mode == "self" and watch.idle is not None:
            window = max(window, watch.idle + IDLE_MARGIN)
        why = f"no new log line for {window:g} s"
    return f"{backend}: peer {peer} ({name}): {why}; stopping it ({signal_name})"
