"""Local backend: every peer is its own OS process on 127.0.0.1.

The runner binds each peer's listening socket itself (port 0, so the OS picks a
free port) and hands it to the child: no port can be taken between choosing and
listening, and every neighbour address is known before any peer starts.

The peers go with the runner: SIGTERM stops them as Ctrl-C does, and on Linux each peer
gets SIGKILL when the runner dies however it dies (PR_SET_PDEATHSIG), paused or not.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import peer as peer_package
from analysis.follow import DeliveryCounter, ListenWatch, read_progress
from peer.config import argv_of
from peer.logfiles import stderr_file
from testbed.base import (
    PeerPlan,
    Progress,
    Runner,
    RunnerError,
    RunPlan,
    RunResult,
)
from testbed.faults import FAULT_POLL, FaultScheduler
from testbed.quiescence import QuietWatch, quiet_watch, stop_message
from testbed.signals import signals_ignored

# The directory that holds the ``peer`` package, so ``python -m peer`` works from any cwd.
PEER_ROOT = str(Path(peer_package.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class LocalTimeouts:
    """How long a local run waits for what (seconds)."""

    # Every started peer must have listened within up + up_per_peer * N after the last was spawned.
    up: float = 30.0
    up_per_peer: float = 0.1
    run_margin: float = 30.0  # past the peers' max_runtime (from the first spawn) before the runner gives up
    stop_grace: float = 5.0  # between SIGTERM and SIGKILL when stopping peers


class LocalRunner(Runner):
    """Start ``python -m peer`` once per peer and wait for all of them to exit."""

    name = "local"

    def __init__(
        self, python: str = sys.executable, poll: float = 0.05, stagger: float = 0.0, order_seed: int | None = None,
        timeouts: LocalTimeouts = LocalTimeouts(),
    ) -> None:
        """``stagger`` seconds between peer starts, in an order shuffled by ``order_seed``
        (None: id order); used to show that late starters lose nothing."""
        self.python = python
        self.poll = poll
        self.stagger = stagger
        self.order_seed = order_seed
        self.timeouts = timeouts
        # What clean-up must close and stop: the listening sockets not yet handed over, the peers.
        self._sockets: list[socket.socket] = []
        self._procs: dict[int, subprocess.Popen] = {}
        self._driver: _SignalDriver | None = None
        self._quiet: QuietWatch | None = None
        self.ports: dict[int, int] = {}  # peer -> its port on 127.0.0.1, once the run started

    def execute(self, plan: RunPlan, progress: Progress) -> RunResult:
        n = plan.spec.n
        self._sockets = sockets = [_listening_socket() for _ in range(n)]
        self.ports = ports = {p: s.getsockname()[1] for p, s in enumerate(sockets)}
        planned = {peer.id for peer in plan.peers}
        foreign = plan.foreign()
        for p, s in enumerate(sockets):
            if p not in planned:
                s.close()  # a peer left out of the plan refuses connections, like one that never started
            elif p in foreign:
                # A foreign peer binds its port itself: until it does, dials are refused (and retried),
                # not taken into a backlog that would be reset when this socket closes.
                s.close()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PEER_ROOT, os.environ.get("PYTHONPATH")]))}
        self._procs = procs = {}
        started = time.monotonic()
        self._driver = _SignalDriver(self, plan, procs, ports, env)
        faults = FaultScheduler(plan.spec.faults, plan.run_dir, self._driver, progress.message)
        self._quiet = quiet_watch(plan)
        self._start_peers(plan, ports, env, faults, progress)
        self._follow(plan, faults, started, progress)
        return RunResult(
            exit_codes={p: proc.returncode for p, proc in procs.items()},
            duration=time.monotonic() - started,
            backend=self.name,
            quiescence_stops=tuple(sorted(self._quiet.stopped)),
            runaway_stops=tuple(sorted(self._quiet.runaways)),
        )

    def clean_up(self, plan: RunPlan, progress: Progress) -> str | None:
        """Close the sockets not handed over; stop the peers still running (resumed first)."""
        for s in self._sockets:
            s.close()
        with signals_ignored():  # let the peers be stopped even on a second Ctrl-C / SIGTERM
            if self._driver is not None:
                self._driver.resume_all()  # a frozen peer cannot handle SIGTERM
            _stop(self._procs, self.timeouts.stop_grace)
        return None

    def _start_peers(self, plan: RunPlan, ports: dict[int, int], env: dict[str, str], faults: FaultScheduler,
                     progress: Progress) -> None:
        """Spawn every planned peer, each with its listening socket (``stagger`` s apart, if set)."""
        gone = {p for f in plan.spec.faults if f.at_start for p in f.peers}
        order = list(plan.peers)
        if self.order_seed is not None:
            random.Random(self.order_seed).shuffle(order)
        # Foreign peers bind their port themselves: ours first (listening at once on the
        # sockets handed over), so that a foreign peer's first dials find them listening.
        foreign = plan.foreign()
        order.sort(key=lambda peer: peer.id in foreign)
        # Peers killed at start go first, and are gone before anyone dials: their listening
        # sockets exist from the start, and a neighbour's dial that landed in one's backlog
        # would take the link for up and author at once instead of at its link deadline
        # (mesh-5 kill:4@0 then lost 33 of its 60 deliveries when the neighbour gave up first).
        order.sort(key=lambda peer: peer.id not in gone)
        for i, peer in enumerate(order):
            if i and self.stagger:
                time.sleep(self.stagger)
            self._procs[peer.id] = self._spawn(plan, peer, self._sockets[peer.id], ports, env)
            self._sockets[peer.id].close()  # the child holds its own copy
            faults.due_at_start(peer.id)
            progress.update(f"local: started {len(self._procs)}/{plan.spec.n} peers")

    def _follow(self, plan: RunPlan, faults: FaultScheduler, started: float, progress: Progress) -> None:
        """Until every peer exited: the deadlines, the fault clock and timeline, progress."""
        n, procs = plan.spec.n, self._procs
        gone = {p for f in plan.spec.faults if f.at_start for p in f.peers}
        # The fault clock starts once every started peer listens (fault runs only).
        listen = ListenWatch(plan.log_dir, [p.id for p in plan.peers if p.id not in gone]) if plan.spec.faults else None
        foreign = plan.foreign()
        counter = DeliveryCounter(plan.log_dir, [p.id for p in plan.peers])
        spawned = time.monotonic()
        up_deadline = spawned + self.timeouts.up + self.timeouts.up_per_peer * n
        deadline = started + plan.spec.options.max_runtime_for(plan.spec.n) + self.timeouts.run_margin
        delivered, shown = 0, float("-inf")
        while True:
            alive = [p for p, proc in procs.items() if proc.poll() is None]
            if not alive:
                return
            now = time.monotonic()
            if now > deadline:
                raise RunnerError(f"peers {alive[:10]} still running after the run deadline; stopped them")
            if listen is not None and not faults.started:
                self._start_clock_when_up(plan, listen, faults, now, spawned, up_deadline, progress)
            if now - shown >= self.poll:
                shown = now
                finished, delivered = read_progress(plan.log_dir, n)
                progress.update(
                    f"local {plan.spec.name}: {n - len(alive)}/{n} peers exited, "
                    f"{progress.deliveries(delivered, plan.expected_deliveries, now - started)}, {now - started:.1f} s"
                )
            if foreign:
                self._stop_quiet(plan, foreign, alive, progress)
            fast = faults.started and faults.needs_deliveries
            if faults.started and not faults.done:
                # While a delivery trigger is pending, count the message logs themselves:
                # the event logs' progress records lag by up to 100 ms per peer.
                faults.poll(delivered=counter.count() if fast else max(delivered, counter.lines))
                fast = faults.needs_deliveries
            # Reading n files takes a while for a thousand peers: look less often then.
            pause = max(FAULT_POLL, n * 1e-5) if fast or (listen is not None and not faults.started) else self.poll
            due = faults.next_due()
            time.sleep(min(pause, due) if due is not None else pause)

    def _start_clock_when_up(self, plan: RunPlan, listen: ListenWatch, faults: FaultScheduler, now: float,
                             spawned: float, up_deadline: float, progress: Progress) -> None:
        """Start the fault clock once every started peer listens; ``RunnerError`` past the deadline."""
        waiting = self._still_coming_up(plan, self._procs, listen, progress)
        if not waiting:
            faults.start_clock()
        elif now > up_deadline:
            raise RunnerError(
                f"peers {waiting[:10]}{'...' if len(waiting) > 10 else ''} never came up (no `listen` "
                f"event within {up_deadline - spawned:.0f} s); the fault clock cannot start. "
                f"See {plan.log_dir}/<id>.stderr.txt"
            )

    @staticmethod
    def _still_coming_up(plan: RunPlan, procs: dict[int, subprocess.Popen], listen: ListenWatch,
                         progress: Progress) -> list[int]:
        """Peers not yet listening. One that exited first (crashed, killed from outside) will
        never listen: it is said and no longer waited for."""
        waiting = listen.waiting()
        if any(procs[p].poll() is not None for p in waiting):
            waiting = listen.waiting()  # it may have listened (and ended) since we looked
            dead = [p for p in waiting if procs[p].poll() is not None]
            if dead:
                listen.forget(dead)
                progress.message(f"local: peers {dead} exited before they listened (see {plan.log_dir}/"
                                 "<id>.stderr.txt); the fault clock starts without them")
                waiting = [p for p in waiting if p not in dead]
        return waiting

    def _stop_quiet(self, plan: RunPlan, foreign: dict[int, str], alive: list[int], progress: Progress) -> None:
        """Stop the foreign peers whose logs went quiet (testbed/quiescence.py)."""
        ours_done = not any(p not in foreign for p in alive)
        signal_now, kill_now = self._quiet.due(time.monotonic(), {p for p in alive if p in foreign}, ours_done)
        for p, name in signal_now:
            progress.message(stop_message(self._quiet, "local", p, foreign[p], name))
            self._procs[p].send_signal(signal.Signals[name])
        for p in kill_now:
            self._procs[p].kill()

    def peer_command(self, listen_fd: int, args: list[str]) -> list[str]:
        """The command line of one peer (a subclass may wrap it, e.g. in ``nice``)."""
        return [self.python, "-m", "peer", *argv_of({"listen_fd": listen_fd}), *args]

    def _spawn(self, plan: RunPlan, peer: PeerPlan, sock: socket.socket, ports: dict[int, int],
               env: dict[str, str]) -> subprocess.Popen:
        address = lambda nb: f"127.0.0.1:{ports[nb]}"  # noqa: E731
        impl = plan.spec.implementation_of(peer.id)
        fds: tuple[int, ...] = (sock.fileno(),)
        cwd = None
        if impl is None:
            cmd = self.peer_command(sock.fileno(), plan.peer_args(peer, address, str(plan.log_dir)))
        else:  # a foreign peer binds its port itself, and starts in the log dir
            port = ports[peer.id]
            sock.close()
            values, nbrs = plan.foreign_values(peer, address, ("127.0.0.1", port), str(plan.log_dir))
            cmd = impl.command(values, nbrs)
            env = {**env, **impl.adapter.environment(values)}
            fds, cwd = (), plan.log_dir
        with open(stderr_file(plan.log_dir, peer.id), "ab") as stderr:
            try:
                return subprocess.Popen(
                    cmd, pass_fds=fds, env=env, stdin=subprocess.DEVNULL, cwd=cwd,
                    stdout=stderr, stderr=stderr, start_new_session=True, preexec_fn=_die_with_parent(),
                )
            except OSError as e:
                what = f" ({impl.name}: {cmd[0]})" if impl is not None else ""
                raise RunnerError(f"cannot start peer {peer.id}{what}: {e.strerror or e}") from e


class _SignalDriver:
    """Faults for local processes: SIGKILL, SIGSTOP, SIGCONT, and a fresh start on the same port."""

    def __init__(self, runner: LocalRunner, plan: RunPlan, procs: dict[int, subprocess.Popen],
                 ports: dict[int, int], env: dict[str, str]) -> None:
        self.runner, self.plan, self.procs, self.ports, self.env = runner, plan, procs, ports, env
        self.paused: set[int] = set()

    def _signal(self, peer: int, sig: signal.Signals) -> None:
        proc = self.procs.get(peer)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def kill(self, peer: int) -> None:
        self._signal(peer, signal.SIGKILL)
        if peer in self.procs:
            self.procs[peer].wait()

    def pause(self, peer: int) -> None:
        self._signal(peer, signal.SIGSTOP)
        self.paused.add(peer)

    def resume(self, peer: int) -> None:
        self._signal(peer, signal.SIGCONT)
        self.paused.discard(peer)

    def resume_all(self) -> None:
        for peer in list(self.paused):
            self.resume(peer)

    def restart(self, peer: int) -> None:
        self.kill(peer)
        sock = _listening_socket(self.ports[peer])
        try:
            plan_peer = next(p for p in self.plan.peers if p.id == peer)
            self.procs[peer] = self.runner._spawn(self.plan, plan_peer, sock, self.ports, self.env)
        finally:
            sock.close()


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die (SIGKILL) when the runner dies, even by
    SIGKILL, and even while the child is stopped (SIGSTOP): Linux ``prctl(PR_SET_PDEATHSIG)``.

    The signal comes when the *thread* that forked the child ends; peers are started (and
    restarted) by the thread running the run, which outlives them. None where prctl is
    unavailable (not Linux): there a SIGKILLed runner still orphans its peers.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid() if parent is None else parent  # the runner (tests pass another pid)

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0 and os.getppid() != parent:
            os._exit(1)  # the runner died before the death signal was armed

    return preexec


def _listening_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


def _stop(procs: dict[int, subprocess.Popen], grace: float) -> None:
    """Terminate our own still-running children: SIGTERM, then SIGKILL after a grace period."""
    alive = [proc for proc in procs.values() if proc.poll() is None]
    for proc in alive:
        proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace
    for proc in alive:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
