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

A flap is expanded here into its downs and ups: one record per step, with ``phase``
("down"/"up") and ``cycle`` (1..count). Its first down fires at its trigger; step k is
due at the first down's *scheduled* elapsed time (its ``at``, or the elapsed time when
its delivery trigger fired) plus its offset, so a late poll does not shift the rest.
Shape faults go to control.json too: ``"shapes": {"u-v": {key: value}}``, the keys set
so far per edge (later shape faults on an edge override earlier keys).
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

    Partitions, flaps and shapes are written to ``logs/control.json``, which every peer re-reads; the
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
        self.shapes: dict[tuple[int, int], dict[str, float]] = {}
        # A fired flap's remaining steps: (due elapsed, fault, phase, cycle), in order.
        self.steps: list[tuple[float, Fault, str, int]] = []
        # Kills at start wait for due_at_start of each of their peers, never for the clock.
        self._at_start: list[tuple[Fault, set[int]]] = [(f, set(f.peers)) for f in faults if f.at_start]
        self.pending = [f for f in faults if not f.at_start]
        # Partitions from time 0 must be in place before any peer starts.
        for fault in [f for f in self.pending if f.edges and f.at == 0]:
            self.pending.remove(fault)
            self._fire(fault, delivered=0, elapsed=0.0)

    @property
    def done(self) -> bool:
        return not self.pending and not self._at_start and not self.steps

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
        times = [f.at for f in self.pending if f.at is not None] + [step[0] for step in self.steps]
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
        while self.steps and self.elapsed() >= self.steps[0][0]:
            _, fault, phase, cycle = self.steps.pop(0)
            self._fire(fault, delivered=delivered, step=(phase, cycle))

    def _expand_flap(self, fault: Fault, elapsed: float) -> tuple[str, int]:
        """Queue a flap's steps after its first down (returned), due from its scheduled start."""
        begin = fault.at if fault.at is not None else elapsed
        steps = fault.flap_steps()
        self.steps = sorted(self.steps + [(begin + off, fault, phase, cycle) for off, phase, cycle in steps[1:]],
                            key=lambda s: s[0])
        return steps[0][1], steps[0][2]

    def _fire(self, fault: Fault, delivered: int, elapsed: float | None = None, apply: bool = True,
              step: tuple[str, int] | None = None) -> None:
        t = time.time()
        if elapsed is None:
            elapsed = self.elapsed()
        if fault.action == "flap" and step is None:
            step = self._expand_flap(fault, elapsed)
        if apply:
            self._apply(fault, step[0] if step else None)
        rec = {"t": round(t, 6), "fault": str(fault), "action": fault.action, "peers": list(fault.peers),
               "edges": [list(e) for e in fault.edges], "elapsed": round(elapsed, 3), "deliveries": delivered}
        if step is not None:
            rec["phase"], rec["cycle"] = step
        if fault.after_deliveries is not None:
            rec["trigger"] = fault.after_deliveries
        what = f"{fault} {step[0]} {step[1]}/{fault.count}" if step else str(fault)
        self.say(f"fault: {what} (at {elapsed:.3f} s, {delivered:,} deliveries)")
        self._write(rec)

    def _apply(self, fault: Fault, phase: str | None = None) -> None:
        edges = {tuple(sorted(e)) for e in fault.edges}
        if fault.action in ("partition", "heal", "flap"):
            down = fault.action == "partition" or phase == "down"
            self.blocked = self.blocked | edges if down else self.blocked - edges
            write_control(self.run_dir / "logs", self.blocked, self.shapes)
        elif fault.action == "shape":
            for e in edges:
                self.shapes[e] = {**self.shapes.get(e, {}), **dict(fault.shape)}
            write_control(self.run_dir / "logs", self.blocked, self.shapes)
        else:
            action = getattr(self.driver, fault.action)
            for peer in fault.peers:
                action(peer)

    def _write(self, rec: dict) -> None:
        with open(self.run_dir / FAULT_LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")


def write_control(log_dir: Path, blocked: set[tuple[int, int]],
                  shapes: dict[tuple[int, int], dict[str, float]] | None = None) -> None:
    """Atomically replace control.json; ``shapes`` only when some shape fault fired."""
    tmp = log_dir / f".{CONTROL_FILE}.tmp"
    data: dict = {"blocked": sorted(blocked)}
    if shapes:
        data["shapes"] = {f"{u}-{v}": dict(sorted(keys.items())) for (u, v), keys in sorted(shapes.items())}
    tmp.write_text(json.dumps(data))
    os.replace(tmp, log_dir / CONTROL_FILE)
