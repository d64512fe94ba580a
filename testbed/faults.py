"""Applying a spec's fault timeline while a run is in progress, on any backend."""

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


class FaultDriver(Protocol):
    """What a backend must do to one peer."""

    def kill(self, peer: int) -> None: ...
    def pause(self, peer: int) -> None: ...
    def resume(self, peer: int) -> None: ...
    def restart(self, peer: int) -> None: ...


class FaultScheduler:
    """Fires each fault once, when its time or delivery count is reached.

    Partitions are written to ``logs/control.json``, which every peer re-reads; the
    rest goes to the backend's driver. Every applied fault is logged to
    ``<run_dir>/faults.jsonl`` with its wall-clock time.
    """

    def __init__(self, faults: tuple[Fault, ...], run_dir: Path, driver: FaultDriver,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.pending = list(faults)
        self.run_dir = run_dir
        self.driver = driver
        self.say = say
        self.blocked: set[tuple[int, int]] = set()
        # Partitions from time 0 must be in place before any peer starts.
        for fault in [f for f in self.pending if f.edges and f.at == 0]:
            self.pending.remove(fault)
            self._apply(fault)

    @property
    def done(self) -> bool:
        return not self.pending

    def due_at_start(self, peer: int) -> None:
        """Apply kills at time 0 of ``peer`` right after it was started."""
        for fault in [f for f in self.pending if f.at_start and peer in f.peers]:
            self.driver.kill(peer)
            if all(p == peer for p in fault.peers):
                self._applied(fault)
                self.pending.remove(fault)

    def poll(self, elapsed: float, delivered: int) -> None:
        for fault in list(self.pending):
            due = (fault.at is not None and elapsed >= fault.at) or (
                fault.after_deliveries is not None and delivered >= fault.after_deliveries
            )
            if due:
                self.pending.remove(fault)
                self._apply(fault)

    def _apply(self, fault: Fault) -> None:
        if fault.action in ("partition", "heal"):
            edges = {tuple(sorted(e)) for e in fault.edges}
            self.blocked = self.blocked | edges if fault.action == "partition" else self.blocked - edges
            write_control(self.run_dir / "logs", self.blocked)
        else:
            action = getattr(self.driver, fault.action)
            for peer in fault.peers:
                action(peer)
        self._applied(fault)

    def _applied(self, fault: Fault) -> None:
        self.say(f"fault: {fault}")
        with open(self.run_dir / FAULT_LOG, "a") as f:
            f.write(json.dumps({"t": time.time(), "fault": str(fault)}) + "\n")


def write_control(log_dir: Path, blocked: set[tuple[int, int]]) -> None:
    tmp = log_dir / f".{CONTROL_FILE}.tmp"
    tmp.write_text(json.dumps({"blocked": sorted(blocked)}))
    os.replace(tmp, log_dir / CONTROL_FILE)
