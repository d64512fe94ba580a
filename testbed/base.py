"""What every runner shares: the run directory, the per-peer plan, progress."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import networkx as nx

from generator.errors import P2PError
from generator.predict import Prediction
from generator.spec import RunSpec
from peer.config import argv_of, parse_address
from peer.emulation import SHAPE_KEYS


class RunnerError(P2PError):
    """A runner could not start, follow or clean up a run."""


@dataclass(frozen=True)
class PeerPlan:
    """One peer's part of a run: its id, neighbours and how many deliveries to expect."""

    id: int
    neighbours: tuple[int, ...]
    expect: int | None


@dataclass(frozen=True)
class RunPlan:
    """A run ready to start: spec, graph, run directory and per-peer plans."""

    spec: RunSpec
    run_id: str
    run_dir: Path
    peers: tuple[PeerPlan, ...]
    graph: nx.Graph = field(compare=False)

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def peer_args(self, peer: PeerPlan, address: Callable[[int], str], log_dir: str) -> list[str]:
        """Arguments for ``python -m peer`` (everything but the listen address), spelled by peer/config.py."""
        spec, opts, n = self.spec, self.spec.options, self.spec.n
        values = {
            "id": peer.id, "n": n, "protocol": spec.protocol,
            "neighbours": {nb: parse_address(address(nb)) for nb in peer.neighbours},
            "log_dir": log_dir, "idle": opts.idle, "link_deadline": opts.link_deadline_for(n),
            "max_runtime": opts.max_runtime_for(n), "handshake_timeout": opts.handshake_timeout_for(n),
            "seed": spec.seed, "protocol_params": spec.protocol_params(),  # e.g. --fanout 2, --ttl 3
            "expect": peer.expect,
            "control": f"{log_dir}/control.json" if any(f.edges for f in spec.faults) else None,
            "redial": any(f.action == "restart" for f in spec.faults),
            **{key: getattr(opts, key) or None for key in SHAPE_KEYS},
            "link_shapes": {v if peer.id == u else u: shape for (u, v), shape in opts.edge_shapes().items()
                            if peer.id in (u, v)},
        }
        for key, value in opts.peer:  # --peer-option; a value the run needs (redial on restarts) stays
            if not values.get(key):
                values[key] = value
        return argv_of(values)


@dataclass
class RunResult:
    """How the peers ended."""

    exit_codes: dict[int, int | None]
    duration: float
    backend: str
    # The run completed, but some of its engine objects could not be removed (what and how
    # to retry); the logs and the analysis stand.
    cleanup_problem: str | None = None

    @property
    def failed_peers(self) -> list[int]:
        return sorted(p for p, code in self.exit_codes.items() if code != 0)


class Runner(ABC):
    """A backend that starts the peers of a plan, waits for them and cleans up."""

    name = "abstract"

    @abstractmethod
    def run(self, plan: RunPlan, progress: Progress) -> RunResult: ...


def new_run_id(spec: RunSpec) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{spec.name}-{stamp}-{secrets.token_hex(2)}"


def prepare_run(spec: RunSpec, runs_root: Path, prediction: Prediction | None, run_id: str | None = None) -> RunPlan:
    """Create ``runs/<run-id>/`` with spec.json and logs/, and point ``runs/latest`` at it.

    Peers are told their predicted deliveries only when the run is exactly predictable
    (no faults but kills at start); otherwise they end on idle.
    """
    graph = spec.graph()
    for fault in spec.faults:
        fault.check(graph)
    run_id = run_id or new_run_id(spec)
    run_dir = runs_root / run_id
    (run_dir / "logs").mkdir(parents=True, exist_ok=False)
    spec.write(run_dir / "spec.json")
    update_latest(runs_root, run_id)
    exact = prediction is not None and spec.exactly_predictable
    received = prediction.per_peer_received() if exact else {}
    peers = tuple(
        PeerPlan(
            id=p,
            neighbours=tuple(sorted(graph.neighbors(p))),
            expect=received[p].frames if p in received else None,
        )
        for p in sorted(graph.nodes)
    )
    return RunPlan(spec=spec, run_id=run_id, run_dir=run_dir, peers=peers, graph=graph)


def update_latest(runs_root: Path, run_id: str) -> None:
    link = runs_root / "latest"
    tmp = runs_root / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_id)
    os.replace(tmp, link)


def tail_of(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file (a tool's output for an error message); '' if unreadable."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_progress(log_dir: Path, n: int) -> tuple[int, int]:
    """(peers that wrote their summary, deliveries so far) from the tails of the event logs."""
    finished = delivered = 0
    for p in range(n):
        path = log_dir / f"{p}.events.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4096))
                tail = f.read().splitlines()
        except OSError:
            continue
        for line in reversed(tail):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "recv" in rec:
                delivered += rec["recv"]
                finished += rec.get("ev") == "summary"
                break
    return finished, delivered


class DeliveryCounter:
    """The run's deliveries so far: the lines of every ``logs/<id>.txt``, counted as they grow.

    Each :meth:`count` reads only the bytes appended since the last one (an offset per
    file) and counts ``b"\\n"``: a delivery counts once its line is complete. Over a run
    that reads every byte of the logs, so runners use it only while a delivery-triggered
    fault is pending. Peers only append to their logs (a restarted one too), so the count
    never goes back.
    """

    CHUNK = 1 << 20

    def __init__(self, log_dir: Path, peers: Iterable[int]) -> None:
        self._paths = [str(log_dir / f"{p}.txt") for p in peers]
        self._offsets = [0] * len(self._paths)
        self.lines = 0

    @property
    def bytes_read(self) -> int:
        return sum(self._offsets)

    def count(self) -> int:
        for i, path in enumerate(self._paths):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # not started yet
            try:
                while True:
                    chunk = os.pread(fd, self.CHUNK, self._offsets[i])
                    self._offsets[i] += len(chunk)
                    self.lines += chunk.count(b"\n")
                    if len(chunk) < self.CHUNK:
                        break
            except OSError:
                pass
            finally:
                os.close(fd)
        return self.lines


class ListenWatch:
    """Which peers have not yet written their ``listen`` event to ``logs/<id>.events.jsonl``.

    Reads each events log incrementally, whole lines only, and forgets a peer once its
    ``listen`` record is there.
    """

    MARK = b'"ev":"listen"'

    def __init__(self, log_dir: Path, peers: Iterable[int]) -> None:
        self._waiting = {p: (str(log_dir / f"{p}.events.jsonl"), 0) for p in peers}

    def waiting(self) -> list[int]:
        for p, (path, offset) in list(self._waiting.items()):
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # a line still being written is read again next time
            if self.MARK in data[:end] or b'"ev": "listen"' in data[:end]:
                del self._waiting[p]
            else:
                self._waiting[p] = (path, offset + end)
        return sorted(self._waiting)

    def forget(self, peers: Iterable[int]) -> None:
        """Stop waiting for ``peers`` (they will never listen)."""
        for p in peers:
            self._waiting.pop(p, None)


class Progress:
    """One status line, rewritten in place on a terminal, throttled otherwise."""

    def __init__(self, stream=None, interval: float = 0.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval or (0.2 if self.tty else 5.0)
        self._last = 0.0
        self._open = False

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.done()
        self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
