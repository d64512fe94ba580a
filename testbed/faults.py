"""Applying a spec's fault timeline while a run is in progress, on any backend.

The fault clock's zero is the moment every started peer is up (local: each wrote its
``listen`` event; compose: the start barrier fell). Before that nothing fires but kills
at start (``kill:P@0``) and partitions from time 0, which must be in place first.

Every applied fault is recorded in ``<run_dir>/faults.jsonl`` (docs/run-directory.md),
one JSON object per line::

    {"t": <wall clock>, "clock": "start"}                       the fault clock started
    {"t": <wall clock>, "fault": "kill:3@deliveries=20000", "action": "kill",
     "peers": [3], "edges": [], "elapsed": 1.234, "deliveries": 20113, "trigger": 20000}

``t``, ``elapsed`` (seconds since the clock's zero, 1 ms) and ``deliveries`` (the run's
delivery count as the scheduler knew it) are taken when the fault fired, just before it
was applied; the record is written once it was applied. ``trigger`` is only in records
of delivery-triggered faults. A fault that never fired has no record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from generator.faults import Fault

CONTROL_FILE = "control.json"
FAULT_LOG = "faults.jsonl"
# How often runners look while a delivery-triggered fault is pending (seconds; runners
# stretch it to n * 10 us for big runs, where one count reads n files).
FAULT_POLL = 0.005


class FaultDriver(Protocol):
    """What a backend must do to one peer."""

    def kill(self, peer: int) -> None: ...
    def pause(self, peer: int) -> None: ...
    def resume(self, peer: int) -> None: ...
    def restart(self, peer: int) -> None: ...


class FaultScheduler:
    """Fires each fault once, when its time or delivery count is reached.

    Partitions are written to ``logs/control.json``, which every peer re-reads; the
    rest goes to the backend's driver. Nothing fires by time or deliveries before
    :meth:`start_clock`. ``clock`` is the monotonic clock (replaceable in tests).
    """

    def __init__(self, faults: tuple[Fault, ...], run_dir: Path, driver: FaultDriver,
                 say: Callable[[str], None] = lambda _: None, clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = run_dir
        self.driver = driver
        self.say = say
        self.clock = clock
        self.zero: float | None = None
        self.blocked: set[tuple[int, int]] = set()
        # Kills at start wait for due_at_start of each of their peers, never for the clock.
        self._at_start: list[tuple[Fault, set[int]]] = [(f, set(f.peers)) for f in faults if f.at_start]
        self.pending = [f for f in faults if not f.at_start]
        # Partitions from time 0 must be in place before any peer starts.
        for fault in [f for f in self.pending if f.edges and f.at == 0]:
            self.pending.remove(fault)
            self._fire(fault, delivered=0, elapsed=0.0)

    @property
    def done(self) -> bool:
        return not self.pending and not self._at_start

    @property
    def started(self) -> bool:
        return self.zero is not None

    @property
    def needs_deliveries(self) -> bool:
        """Whether a delivery-triggered fault is still pending (then count deliveries, and often)."""
        return any(f.after_deliveries is not None for f in self.pending)

    def start_clock(self, at: float | None = None) -> None:
        """Time 0 of the fault timeline (``at`` on ``clock``, default now); recorded once."""
        if self.zero is not None:
            return
        self.zero = self.clock() if at is None else at
        self._write({"t": round(time.time(), 6), "clock": "start"})

    def elapsed(self) -> float:
        return 0.0 if self.zero is None else self.clock() - self.zero

    def next_due(self) -> float | None:
        """Seconds until the next time-triggered fault is due (0 if overdue); None if none pending
        or the clock has not started."""
        if self.zero is None:
            return None
        times = [f.at for f in self.pending if f.at is not None]
        return max(0.0, min(times) - self.elapsed()) if times else None

    def due_at_start(self, peer: int, running: bool = True) -> None:
        """Apply the kills at start of ``peer`` right after it was started; ``running=False``:
        the backend never started it (compose), so there is nothing to kill, only to record."""
        killed = False
        for entry in list(self._at_start):
            fault, left = entry
            if peer not in left:
                continue
            if running and not killed:
                self.driver.kill(peer)
                killed = True
            left.discard(peer)
            if not left:
                self._at_start.remove(entry)
                self._fire(fault, delivered=0, elapsed=0.0, apply=False)

    def poll(self, *, delivered: int) -> None:
        """Fire every fault due now; ``delivered`` is the run's delivery count as the caller knows it."""
        if self.zero is None:
            return
        elapsed = self.elapsed()
        for fault in list(self.pending):
            due = (fault.at is not None and elapsed >= fault.at) or (
                fault.after_deliveries is not None and delivered >= fault.after_deliveries
            )
            if due:
                self.pending.remove(fault)
                self._fire(fault, delivered=delivered)

    def _fire(self, fault: Fault, delivered: int, elapsed: float | None = None, apply: bool = True) -> None:
        t = time.time()
        if elapsed is None:
            elapsed = self.elapsed()
        if apply:
            self._apply(fault)
        rec = {"t": round(t, 6), "fault": str(fault), "action": fault.action, "peers": list(fault.peers),
               "edges": [list(e) for e in fault.edges], "elapsed": round(elapsed, 3), "deliveries": delivered}
        if fault.after_deliveries is not None:
            rec["trigger"] = fault.after_deliveries
        self.say(f"fault: {fault} (at {elapsed:.3f} s, {delivered:,} deliveries)")
        self._write(rec)

    def _apply(self, fault: Fault) -> None:
        if fault.action in ("partition", "heal"):
            edges = {tuple(sorted(e)) for e in fault.edges}
            self.blocked = self.blocked | edges if fault.action == "partition" else self.blocked - edges
            write_control(self.run_dir / "logs", self.blocked)
        else:
            action = getattr(self.driver, fault.action)
            for peer in fault.peers:
                action(peer)

    def _write(self, rec: dict) -> None:
        with open(self.run_dir / FAULT_LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")


def write_control(log_dir: Path, blocked: set[tuple[int, int]]) -> None:
    tmp = log_dir / f".{CONTROL_FILE}.tmp"
    tmp.write_text(json.dumps({"blocked": sorted(blocked)}))
    os.replace(tmp, log_dir / CONTROL_FILE)
