"""A Compose run's containers as the runner follows them: their states (``ContainerWatch``,
from the engine's events plus a listing now and then) and a bounded start (``StagedStart``)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from generator.render import PEER_LABEL, RUN_LABEL
from testbed.engine import DOCKER_ERRORS, labels_of, sparse_state

STARTED_STATES = frozenset({"running", "exited", "dead", "paused", "restarting", "removing"})
EXITED_STATES = frozenset({"exited", "dead"})

# Order of a container's life, so that a listing (a snapshot taken a while ago) never
# undoes a newer event; a restarted container comes back through its "start" event.
_LIFE_RANK = {"created": 0, "running": 1, "paused": 1, "restarting": 1, "exited": 2, "dead": 2, "removing": 3}
_EVENT_STATE = {"create": "created", "start": "running", "unpause": "running", "pause": "paused", "die": "exited"}


class ContainerWatch:
    """Container states of one run from the engine's event stream, plus a full listing now and then.

    Listing a thousand containers every quarter second is real work for an engine that
    is busy creating them; the event stream costs nothing while nothing happens. The
    occasional listing covers events missed before the stream was open or if it broke.
    """

    def __init__(self, client, run_id: str, relist: float) -> None:
        self.client, self.run_id, self.relist = client, run_id, relist
        self._states: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stream = None
        self._thread: threading.Thread | None = None
        self._listed_at = float("-inf")
        self.listings = 0

    def __enter__(self) -> ContainerWatch:
        try:
            self._stream = self.client.events(
                decode=True, filters={"type": "container", "label": f"{RUN_LABEL}={self.run_id}"}
            )
        except (AttributeError, *DOCKER_ERRORS):
            self._stream = None  # listings alone still work, only slower to notice
        if self._stream is not None:
            self._thread = threading.Thread(target=self._follow, name=f"events-{self.run_id}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        try:
            for ev in self._stream:
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                peer = attrs.get(PEER_LABEL, "")
                state = _EVENT_STATE.get(ev.get("Action") or ev.get("status") or "")
                if attrs.get(RUN_LABEL) == self.run_id and peer.isdigit() and state:
                    with self._lock:
                        self._states[int(peer)] = state
        except Exception:  # noqa: BLE001 - the stream ends with whatever its closed socket raises
            return

    def _merge_listing(self) -> None:
        listed = {}
        for c in self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"}, sparse=True):
            labels = labels_of(c)
            if labels.get(RUN_LABEL) == self.run_id and labels.get(PEER_LABEL, "").isdigit():
                listed[int(labels[PEER_LABEL])] = sparse_state(c)
        self.listings += 1
        with self._lock:
            for peer, state in listed.items():
                known = self._states.get(peer)
                if known is None or _LIFE_RANK.get(state, 0) > _LIFE_RANK.get(known, 0):
                    self._states[peer] = state

    def states(self, now: float, force: bool = False) -> dict[int, str]:
        """Peer id -> container state ("created", "running", "exited", ...)."""
        if force or self._stream is None or now - self._listed_at >= self.relist:
            self._listed_at = now
            self._merge_listing()
        with self._lock:
            return dict(self._states)


class BackgroundUp:
    """A ``docker compose up -d`` done in steps on a thread. Quacks like the ``Popen`` of a
    plain ``up -d`` (poll, wait, terminate, kill, returncode) so the runner treats every way
    of starting alike; a subclass says what its steps are (``steps``) and its ``name``."""

    name = "up"

    def __init__(self, popen: Callable[..., subprocess.Popen], base: list[str], log: Path) -> None:
        self.popen, self.base, self.log = popen, base, log
        self.returncode: int | None = None
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name=self.name.replace(" ", "-"), daemon=True)
        self._thread.start()

    def steps(self) -> int:
        """Do the work; the exit status (-15 when stopped meanwhile)."""
        raise NotImplementedError

    def compose(self, *args: str) -> int:
        """``docker compose <base> *args`` with its output in the log: its exit status, or -15 when it
        succeeded but the start was stopped meanwhile (0 means: go on with the next step)."""
        with open(self.log, "ab") as out:
            self._proc = self.popen([*self.base, *args], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        rc = self._proc.wait()
        return rc or (-15 if self._stop.is_set() else 0)

    def _run(self) -> None:
        try:
            self.returncode = self.steps()
        except BaseException as e:  # noqa: BLE001 - reported through the log and the exit code
            with open(self.log, "a") as out:
                out.write(f"p2p: starting the containers failed: {e}\n")
            self.returncode = 1

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self.name, timeout or 0)
        return self.returncode

    def terminate(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def kill(self) -> None:
        self.terminate()


class StagedStart(BackgroundUp):
    """``docker compose up -d --no-start``, then the containers started ``parallel`` at a time.

    Compose 2.40 does not bound its container starts, ``--parallel`` notwithstanding: seen
    here, 350-570 ``runc create`` at once for a 1000-peer file, load 600, and bursts of
    starts between long stalls.
    """

    name = "staged start"

    def __init__(self, client, popen: Callable[..., subprocess.Popen], base: list[str], log: Path, run_id: str,
                 parallel: int) -> None:
        self.client, self.run_id, self.parallel = client, run_id, parallel
        self.started = 0
        self._count_lock = threading.Lock()
        super().__init__(popen, base, log)  # starts the thread: everything it reads is set above

    def steps(self) -> int:
        rc = self.compose("up", "-d", "--no-start")
        if rc:
            return rc
        flt = {"label": f"{RUN_LABEL}={self.run_id}"}
        ours = [c for c in self.client.containers.list(all=True, filters=flt, sparse=True)
                if labels_of(c).get(PEER_LABEL, "").isdigit()]
        ours.sort(key=lambda c: int(labels_of(c)[PEER_LABEL]))
        with ThreadPoolExecutor(self.parallel) as pool:
            for _ in pool.map(self._start, ours):
                pass
        return -15 if self._stop.is_set() else 0

    def _start(self, container) -> None:
        if not self._stop.is_set():
            container.start()
            with self._count_lock:
                self.started += 1
