"""What every runner shares: the run directory, the per-peer plan, progress."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import networkx as nx

from generator.adapter import neighbour_list
from generator.errors import P2PError
from generator.predict import Prediction
from generator.spec import RunSpec
from peer.config import argv_of, parse_address, show_float
from peer.emulation import SHAPE_KEYS
from testbed.signals import sigterm_interrupts


class RunnerError(P2PError):
    """A runner could not start, follow or clean up a run."""


@dataclass(frozen=True)
class PeerPlan:
    """One peer's part of a run: its id, neighbours and how many deliveries to expect."""

    id: int
    neighbours: tuple[int, ...]
    expect: int | None
    expect_bytes: int | None = None  # the bytes of those deliveries (a foreign peer's runaway budget)


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

    @property
    def expected_deliveries(self) -> int | None:
        """What the peers were told to expect, all together; None when some were not (not exact)."""
        expects = [p.expect for p in self.peers]
        return None if None in expects else sum(expects)

    def peer_args(self, peer: PeerPlan, address: Callable[[int], str], log_dir: str) -> list[str]:
        """Arguments for ``python -m peer`` (everything but the listen address), spelled by peer/config.py."""
        spec, opts, n = self.spec, self.spec.options, self.spec.n
        values = {
            "id": peer.id, "n": n, "protocol": spec.protocol,
            "neighbours": {nb: parse_address(address(nb)) for nb in peer.neighbours},
            "log_dir": log_dir, "idle": opts.idle, "link_deadline": opts.link_deadline_for(n),
            "max_runtime": opts.max_runtime_for(n), "handshake_timeout": opts.handshake_timeout_for(n),
            "dial_grace": opts.dial_grace_for(n),
            "seed": spec.seed, "protocol_params": spec.protocol_params(),  # e.g. --fanout 2, --ttl 3
            "expect": peer.expect,
            "control": f"{log_dir}/control.json" if any(f.edges for f in spec.faults) else None,
            "redial": any(f.action == "restart" for f in spec.faults),
            **{key: getattr(opts, key) or None for key in SHAPE_KEYS},
            # --link-shape items and, with --latency-from distance, every link's own latency
            "link_shapes": {v if peer.id == u else u: shape
                            for (u, v), shape in opts.shapes_on(self.graph, spec.name).items() if peer.id in (u, v)},
        }
        for key, value in opts.peer:  # --peer-option; a value the run needs (redial on restarts) stays
            if not values.get(key):
                values[key] = value
        return argv_of(values)

    def foreign_values(self, peer: PeerPlan, address: Callable[[int], str], listen: tuple[str, int],
                       log_dir: str) -> tuple[dict[str, str], dict[int, tuple[str, int]]]:
        """The placeholders of a foreign peer's adapter (generator/adapter.py) and its neighbours' addresses."""
        spec, opts = self.spec, self.spec.options
        impl = spec.implementation_of(peer.id)
        neighbours = {nb: parse_address(address(nb)) for nb in peer.neighbours}
        values = {
            "id": str(peer.id), "n": str(spec.n), "host": listen[0], "port": str(listen[1]),
            "listen": f"{listen[0]}:{listen[1]}", "log_dir": log_dir, "idle": show_float(opts.idle),
            "link_deadline": show_float(opts.link_deadline_for(spec.n)),
            "expect": "" if peer.expect is None else str(peer.expect),
            "seed": "" if spec.seed is None else str(spec.seed), "protocol": spec.protocol,
            "neighbour_list": neighbour_list(neighbours, impl.adapter.neighbour_separator if impl else ","),
        }
        return values, neighbours

    def foreign(self) -> dict[int, str]:
        """Peer id -> the name of the foreign implementation that plays it (ours are absent)."""
        return {p: impl.name for impl in self.spec.implementations for p in impl.ids}


@dataclass
class RunResult:
    """How the peers ended."""

    exit_codes: dict[int, int | None]
    duration: float
    backend: str
    # The run completed, but some of its engine objects could not be removed (what and how
    # to retry); the logs and the analysis stand.
    cleanup_problem: str | None = None
    # Foreign peers the runner stopped because their logs went quiet (adapter exit rule), and
    # because their logs outgrew their prediction (testbed/quiescence.py, runaways).
    quiescence_stops: tuple[int, ...] = ()
    runaway_stops: tuple[int, ...] = ()

    @property
    def failed_peers(self) -> list[int]:
        return sorted(p for p, code in self.exit_codes.items() if code != 0)


class Runner(ABC):
    """A backend that starts the peers of a plan, waits for them and cleans up.

    ``run`` is the lifecycle every backend shares; a backend writes only its steps:
    ``execute`` (start, follow, collect) and ``clean_up`` (remove what it started), plus
    the optional hooks ``interrupted``, ``on_failure`` and ``completed``.
    """

    name = "abstract"
    #: errors of the backend's engine, reported as a RunnerError naming the run (the Docker
    #: backends set their client's; a tuple here so base never imports docker)
    engine_errors: tuple[type[BaseException], ...] = ()

    @classmethod
    def connect(cls, **kwargs) -> Runner:
        """A runner ready to run, or ``RunnerError`` saying why not."""
        return cls(**kwargs)

    def run(self, plan: RunPlan, progress: Progress) -> RunResult:
        """Execute the plan and always clean up: after Ctrl-C, SIGTERM and errors too.

        A clean-up problem never masks the error that got us here (it is said beside it);
        after a completed run it goes into the result (the CLI reports it after the analysis).
        """
        try:
            return self._run(plan, progress)
        finally:
            self.write_record(plan)

    def write_record(self, plan: RunPlan) -> None:
        """record.json: p2p version, peer source hash, backend, engine and host facts (best effort:
        a record that cannot be written is left out, and never masks the run's own outcome)."""
        from testbed.record import write_record

        try:
            write_record(plan.run_dir, self.name, getattr(self, "client", None), getattr(self, "image", None))
        except OSError:
            pass

    def _run(self, plan: RunPlan, progress: Progress) -> RunResult:
        with sigterm_interrupts():  # `kill`/`timeout` clean up like Ctrl-C
            try:
                result = self.execute(plan, progress)
            except BaseException as e:
                progress.done()
                note = self.interrupted(plan) if isinstance(e, KeyboardInterrupt) else None
                if note:
                    progress.message(f"interrupted: {note}...")
                try:
                    self.on_failure(plan, progress, e)
                except Exception:  # noqa: BLE001 - best effort, never mask the error
                    pass
                problem = self.clean_up(plan, progress)
                if problem:
                    progress.message(problem)
                if self.engine_errors and isinstance(e, self.engine_errors):
                    raise RunnerError(f"Docker engine error during run {plan.run_id}: {e}") from e
                raise
            progress.done()
            result.cleanup_problem = self.clean_up(plan, progress)
            return self.completed(plan, result, progress)

    @abstractmethod
    def execute(self, plan: RunPlan, progress: Progress) -> RunResult:
        """Start the peers, wait for them to end, collect how they ended."""

    @abstractmethod
    def clean_up(self, plan: RunPlan, progress: Progress) -> str | None:
        """Remove whatever ``execute`` started (so far); a problem description or None."""

    def interrupted(self, plan: RunPlan) -> str | None:
        """What Ctrl-C / SIGTERM is about to clean up ("interrupted: <this>..."); None: say nothing."""
        return None

    def on_failure(self, plan: RunPlan, progress: Progress, error: BaseException) -> None:
        """Before clean-up after an error: save what helps explain it (best effort)."""
        return None

    def completed(self, plan: RunPlan, result: RunResult, progress: Progress) -> RunResult:
        """After clean-up of a completed run: the result as reported."""
        return result


def write_exits(run_dir: Path, result: RunResult) -> None:
    """Keep the peers' exit codes in the run directory, so `p2p analyse` judges them as `p2p run` does."""
    data = {"backend": result.backend,
            "exit_codes": {str(p): code for p, code in sorted(result.exit_codes.items())}}
    if result.quiescence_stops:
        # Foreign peers the runner stopped when their logs went quiet (their adapter's rule): their
        # exit code is the stop signal's, not a failure.
        data["quiescence_stops"] = list(result.quiescence_stops)
    if result.runaway_stops:
        data["runaway_stops"] = list(result.runaway_stops)  # stopped for outgrowing their prediction: a failure
    (run_dir / "exits.json").write_text(json.dumps(data, indent=1) + "\n")


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
            expect_bytes=received[p].bytes if p in received else None,
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

    @staticmethod
    def deliveries(delivered: int, expected: int | None, elapsed: float) -> str:
        """``"12,345/986,400 deliveries, 41,100/s"``: the count, of how many when known, the mean rate so far."""
        of = f"/{expected:,}" if expected is not None else ""
        rate = delivered / elapsed if elapsed > 0 else 0.0
        return f"{delivered:,}{of} deliveries, {rate:,.0f}/s"

    def message(self, text: str) -> None:
        self.done()
        self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
