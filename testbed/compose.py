"""Docker Compose backend: one container per peer, on one (or a few) bridge networks.

The runner renders ``runs/<run-id>/compose.yml`` (logs bind-mounted from
``./logs``; ``testbed.rendering``), starts it with the Compose v2 CLI
(``docker compose up -d``), follows the containers through the Docker SDK
(``testbed.containers``) and the peers' event logs, collects exit codes and
container output, then removes everything: ``docker compose down -v`` and a sweep of
whatever still carries the label ``p2p.run=<run-id>`` (``testbed.engine``). The sweep
also runs on Ctrl-C and on any error.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from analysis.follow import DeliveryCounter, read_progress
from generator.render import IMAGE, PEER_LABEL, RUN_LABEL, container_user, project_name, service_name, write_compose
from peer.logfiles import stderr_file
from testbed.base import (
    Progress,
    Runner,
    RunnerError,
    RunPlan,
    RunResult,
    tail_of,
)
from testbed.containers import EXITED_STATES, STARTED_STATES, BackgroundUp, ContainerWatch, StagedStart
from testbed.engine import (
    BUILD_SCRIPT,
    DOCKER_ERRORS,
    EngineStuck,
    check_compose,
    clean_by_label,
    docker_client,
    engine_answers,
    ensure_image,
    labels_of,
    sparse_state,
)
from testbed.faults import FAULT_POLL, FaultScheduler
from testbed.quiescence import QuietWatch, quiet_watch, stop_message
from testbed.rendering import (
    EXIT_SLOT,
    EXIT_SLOTS_FROM,
    START_FILE,
    compose_notes,
    exit_slots_span,
    own_log_dir,
    render_plan,
)
from testbed.signals import signals_ignored

COLLECT_THREADS = 8
# `docker compose --parallel` and StagedStart's starts at once: off (None) by default.
# Measured at 200 containers: --parallel 4/16/unlimited 38.2/36.0/35.7 s to all running;
# at 1000, Compose ignored --parallel for starts (350-570 `runc create` at once). A staged
# start, 8 at a time, was slower at 200 (73.1 s against 67.6 s); 1000 is unmeasured.
COMPOSE_PARALLEL: int | None = None
START_PARALLEL: int | None = None


@dataclass(frozen=True)
class ComposeTimeouts:
    """How long a Compose run waits for what (seconds)."""

    up: float = 120.0  # for `up -d`, plus up_per_peer per peer
    up_per_peer: float = 2.0  # the engine here creates ~2 containers a second, slower as they pile up
    run_margin: float = 30.0  # past the peers' max_runtime before the runner gives up
    stall_min: float = 30.0  # no delivery for max(stall_min, 10 * idle) s while some peers exited: stop the rest
    # Every peer wrote its summary, yet the engine still lists some as running this long after
    # their last exit slot: the engine lost the exits (or hangs); say so instead of waiting.
    engine_lag: float = 120.0
    # Peer i exits in its own slot this long from EXIT_SLOTS_FROM peers on (see rendering.EXIT_SLOT).
    exit_slot: float = EXIT_SLOT
    cleanup_ping: float = 15.0  # before `down`: a wedged engine gets no 20-minute `down`


def parallel_args(parallel: int | None) -> list[str]:
    return [] if parallel is None else ["--parallel", str(parallel)]


def relist_interval(n: int) -> float:
    """Seconds between full container listings while events report the changes."""
    return max(2.0, n / 100)


class ComposeRunner(Runner):
    """Run a plan as a Compose project ``p2p-<run-id>``, one container per peer."""

    name = "compose"
    engine_errors = DOCKER_ERRORS

    def __init__(
        self,
        client,
        *,
        compose_cmd: Sequence[str] = ("docker", "compose"),
        build_script: Path | None = BUILD_SCRIPT,
        image: str = IMAGE,
        mem_limit: str = "64m",
        pids_limit: int = 64,
        poll: float = 0.25,
        relist: float | None = None,
        parallel: int | None = COMPOSE_PARALLEL,
        start_parallel: int | None = START_PARALLEL,
        popen: Callable[..., subprocess.Popen] = subprocess.Popen,
        timeouts: ComposeTimeouts = ComposeTimeouts(),
    ) -> None:
        self.client = client
        self.compose_cmd = tuple(compose_cmd)
        self.build_script = build_script
        self.image = image
        self.mem_limit = mem_limit
        self.pids_limit = pids_limit
        self.poll = poll
        self.relist = relist  # seconds between full container listings; None: by N (relist_interval)
        self.parallel = parallel  # `docker compose --parallel`: engine calls at once (None: Compose's default)
        self.start_parallel = start_parallel  # containers started at once (StagedStart); None: plain `up -d`
        self.current_run_id = ""
        self.popen = popen
        self.timeouts = timeouts
        # What clean-up must remove: `up -d` once started, the project once its file is written.
        self._up: subprocess.Popen | StagedStart | None = None
        self._base: list[str] | None = None
        self._quiet = QuietWatch(Path("."), {})
        #: seconds after `up -d` was started: up_returned, all_started, all_exited; down (its own duration)
        self.timings: dict[str, float] = {}

    @classmethod
    def connect(cls, **kwargs) -> ComposeRunner:
        """A runner, or ``RunnerError`` saying why not (no engine, no `docker compose`)."""
        client = docker_client()
        check_compose(kwargs.get("compose_cmd", ("docker", "compose")))
        return cls(client, **kwargs)

    @classmethod
    def try_connect(cls, **kwargs) -> ComposeRunner | None:
        """None when no engine answers; ``RunnerError`` when one does but `docker compose` is missing."""
        try:
            client = docker_client()
        except RunnerError:
            return None
        check_compose(kwargs.get("compose_cmd", ("docker", "compose")))
        return cls(client, **kwargs)

    # -- steps, separate so tests can replace the CLI parts ------------------------------

    def ensure_image(self, progress: Progress) -> None:
        """Build the peer image when its sources changed (docker/build-image.sh), streaming its output."""
        ensure_image(self.client, self.image, self.build_script, progress, self.popen)

    def start_up(self, base: list[str], log: Path, later: Sequence[str] = ()) -> subprocess.Popen | StagedStart:
        """Bring the project up in the background, output appended to ``log``.

        With ``start_parallel`` set: ``up -d --no-start`` and then container starts, that many
        at a time (``StagedStart``); else a plain ``docker compose up -d``. ``later``: services
        (other implementations' peers) started only once the others are (``UpInOrder``).
        """
        with open(log, "ab") as out:
            try:
                if later:
                    return UpInOrder(self.popen, base, log, later)
                if self.start_parallel:
                    return StagedStart(self.client, self.popen, base, log, self.current_run_id, self.start_parallel)
                return self.popen([*base, "up", "-d"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            except OSError as e:
                raise RunnerError(f"cannot start `{' '.join(base)} up -d`: {e}") from e

    def down(self, base: list[str], log: Path, timeout: float) -> str | None:
        """``docker compose down -v``; returns a problem description or None."""
        with open(log, "ab") as out:
            try:
                rc = subprocess.run(
                    [*base, "down", "-v", "--remove-orphans", "-t", "5"], stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                ).returncode
            except (OSError, subprocess.TimeoutExpired) as e:
                return f"`docker compose down` failed: {e}"
        return None if rc == 0 else f"`docker compose down` exited {rc} (see {log})"

    def stop_running(self, run_id: str, pace: float = 0.0) -> list[int]:
        """SIGTERM every running peer container of this run (peers then write their summary and exit).

        ``pace`` seconds between two signals: many containers ending at once deadlock Docker
        20.10's libnetwork (see ``EXIT_SLOTS_FROM``).
        """
        stopped = []
        for c in self.client.containers.list(filters={"label": f"{RUN_LABEL}={run_id}", "status": "running"},
                                             sparse=True):
            labels = labels_of(c)
            if labels.get(RUN_LABEL) != run_id:
                continue
            try:
                c.kill(signal="SIGTERM")
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError:
                continue  # exited meanwhile ("is not running")
            stopped.append(int(labels.get(PEER_LABEL, "-1")))
            if pace:
                time.sleep(pace)
        return sorted(stopped)

    def _stop_paced(self, plan: RunPlan, progress: Progress) -> None:
        """At scale, end running peers one exit slot apart before `down` stops them all at once."""
        if plan.spec.n < EXIT_SLOTS_FROM:
            return
        try:
            slot = self.timeouts.exit_slot
            stopped = self.stop_running(plan.run_id, pace=slot)
            if not stopped:
                return
            progress.message(f"compose: stopping {len(stopped)} running peer(s) {slot:g} s apart before `down`")
            deadline = time.monotonic() + 60.0
            flt = {"label": f"{RUN_LABEL}={plan.run_id}", "status": "running"}
            while time.monotonic() < deadline and any(
                sparse_state(c) == "running" for c in self.client.containers.list(filters=flt, sparse=True)
            ):
                time.sleep(1.0)
        except DOCKER_ERRORS:
            pass  # `down` and the label sweep below still run and report

    def collect(self, plan: RunPlan) -> dict[int, int | None]:
        """Exit codes by peer (None: never ran); each container's output saved to logs/<id>.stderr.txt."""
        codes: dict[int, int | None] = {p.id: None for p in plan.peers}
        ours = []
        for c in self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={plan.run_id}"}):
            labels = labels_of(c)
            peer = labels.get(PEER_LABEL, "")
            if labels.get(RUN_LABEL) != plan.run_id or not peer.isdigit():
                continue
            state = c.attrs.get("State") or {}
            if state.get("Status") in EXITED_STATES:
                codes[int(peer)] = state.get("ExitCode")
            ours.append((peer, c))

        def save(item) -> None:
            peer, c = item
            stderr_file(plan.log_dir, int(peer)).write_bytes(c.logs(stdout=True, stderr=True))

        # One request per container: a few at a time, or a thousand peers take minutes.
        with ThreadPoolExecutor(COLLECT_THREADS) as pool:
            list(pool.map(save, ours))
        return codes

    # -- the run ---------------------------------------------------------------------------

    def execute(self, plan: RunPlan, progress: Progress) -> RunResult:
        project = project_name(f"p2p-{plan.run_id}")
        self.current_run_id = plan.run_id
        compose_file = plan.run_dir / "compose.yml"
        compose_log = plan.run_dir / "compose.log"
        base = [*self.compose_cmd, *parallel_args(self.parallel), "-p", project, "-f", str(compose_file)]
        self.timings = {}
        self._up, self._base = None, None
        # Peers killed at time 0 are never started: the same as killed before they author.
        gone = {p for f in plan.spec.faults if f.at_start for p in f.peers}
        plan = dataclasses.replace(plan, peers=tuple(p for p in plan.peers if p.id not in gone))
        for note in compose_notes(plan.spec):
            progress.message(note)
        self.ensure_image(progress)
        self._check_foreign_images(plan)
        user = container_user()
        write_compose(
            render_plan(plan, compose_file, project, user=user, image=self.image, mem_limit=self.mem_limit,
                        pids_limit=self.pids_limit, barrier=True, exit_slot=self.timeouts.exit_slot),
            compose_file,
        )
        own_log_dir(plan.log_dir, user)
        self._base = base
        progress.message(f"compose: project {project}, {compose_file}")
        relist = self.relist if self.relist is not None else relist_interval(len(plan.peers))
        foreign = plan.foreign()
        later = [service_name(p.id) for p in plan.peers if p.id in foreign]
        self._quiet = quiet_watch(plan)
        with ContainerWatch(self.client, plan.run_id, relist) as watch:
            t0 = time.monotonic()
            self._up = self.start_up(base, compose_log, *([later] if later else []))
            self._wait(plan, self._up, compose_log, t0, progress, watch)
        t = time.monotonic()
        codes = self.collect(plan)
        self.timings["collect"] = time.monotonic() - t
        # The run itself is complete here: a leftover (say, a network the engine says still
        # has endpoints) must not hide its result; the CLI reports it after the analysis.
        return RunResult(exit_codes=codes, duration=self.timings["all_exited"], backend=self.name,
                         quiescence_stops=tuple(sorted(self._quiet.stopped)),
                         runaway_stops=tuple(sorted(self._quiet.runaways)))

    def _check_foreign_images(self, plan: RunPlan) -> None:
        """Other implementations' images must be there (no registry: nothing is pulled)."""
        for impl in plan.spec.implementations:
            try:
                self.client.images.get(impl.image)
            except docker.errors.ImageNotFound:
                raise RunnerError(f"image {impl.image} ({impl.name}) is not on this engine: build or load it first "
                                  "(nothing is pulled)") from None

    def stop_quiet(self, plan: RunPlan, quiet: QuietWatch, states: dict, progress: Progress,
                   go: float | None) -> None:
        """Once the start barrier fell (``go``), stop the other implementations' peers whose logs
        went quiet (testbed/quiescence.py)."""
        if go is None or not quiet.peers:
            return
        foreign = plan.foreign()
        alive = {p for p in foreign if states.get(p) == "running"}
        ours_done = all(states.get(p.id) in EXITED_STATES for p in plan.peers if p.id not in foreign)
        signal_now, kill_now = quiet.due(time.monotonic(), alive, ours_done)
        driver = _ContainerDriver(self, plan.run_id)
        for p, name in signal_now:
            progress.message(stop_message(quiet, "compose", p, foreign[p], name))
            try:
                driver.container(p).kill(signal=name)
            except docker.errors.APIError:
                pass  # exited meanwhile
        for p in kill_now:
            driver.kill(p)

    def interrupted(self, plan: RunPlan) -> str:
        return f"removing the containers of {plan.run_id}"

    def clean_up(self, plan: RunPlan, progress: Progress) -> str | None:
        return self._cleanup(plan, self._base, self._up, plan.run_dir / "compose.log", progress)

    def _wait(self, plan: RunPlan, up: subprocess.Popen, log: Path, t0: float, progress: Progress,
              watch: ContainerWatch) -> None:
        n = len(plan.peers)
        ids = [p.id for p in plan.peers]
        faults = FaultScheduler(plan.spec.faults, plan.run_dir, _ContainerDriver(self, plan.run_id), progress.message)
        for p in sorted({p for f in plan.spec.faults if f.at_start for p in f.peers}):
            faults.due_at_start(p, running=False)  # never started (see _run): only recorded
        # While a delivery-triggered fault is pending: the message logs' lines, counted often.
        counter = DeliveryCounter(plan.log_dir, ids)
        fast_poll = max(FAULT_POLL, n * 1e-5)
        go: float | None = None  # when the start barrier fell: the fault timeline's zero
        up_deadline = t0 + self.timeouts.up + self.timeouts.up_per_peer * n
        run_deadline: float | None = None
        stall = max(self.timeouts.stall_min, 10 * plan.spec.options.idle)
        last_seen, last_change, stopped = (-1, -1), t0, False
        all_finished: float | None = None  # when the last peer wrote its summary
        # Reading every peer's event log tail: cheap for tens, a real cost for a thousand.
        progress_every, progress_at, delivered = max(self.poll, n / 1000), float("-inf"), 0
        while True:
            rc = up.poll()
            now = time.monotonic()
            if rc is not None and "up_returned" not in self.timings:
                if rc != 0:
                    raise RunnerError(f"`docker compose up -d` failed (exit {rc}):\n{tail_of(log)}")
                self.timings["up_returned"] = now - t0
                run_deadline = (now + plan.spec.options.max_runtime_for(plan.spec.n) + self.timeouts.run_margin
                                + exit_slots_span(plan.spec.n, self.timeouts.exit_slot))
                last_change = now
            states = watch.states(now)
            started = sum(s in STARTED_STATES for s in states.values())
            exited = [p for p, s in states.items() if s in EXITED_STATES]
            if started >= n and "all_started" not in self.timings:
                go = self._barrier(plan, faults, now, t0)
            self.stop_quiet(plan, self._quiet, states, progress, go)
            if rc == 0 and len(exited) >= n:
                states = watch.states(now, force=True)  # events said so; a listing confirms
                if sum(s in EXITED_STATES for s in states.values()) >= n:
                    self.timings["all_exited"] = now - t0
                    return
            _check_deadlines(plan, states, rc, now, t0, up_deadline, run_deadline, log, self.timeouts)
            if now - progress_at >= progress_every:
                progress_at = now
                finished, delivered = read_progress(plan.log_dir, plan.spec.n)
                if all_finished is None and finished >= n:
                    all_finished = now
            if all_finished is not None:
                _check_engine_exits(plan, states, len(exited), now, all_finished, self.timeouts)
            if go is not None and not faults.done:
                faults.poll(delivered=counter.count() if faults.needs_deliveries else max(delivered, counter.lines))
            running = sum(s == "running" for s in states.values())
            # Progress is a delivery or an exit: peers waiting for their exit slots are done, not stuck.
            if (delivered, len(exited)) != last_seen:
                last_seen, last_change = (delivered, len(exited)), now
            elif (rc == 0 and exited and running and not stopped and faults.done and all_finished is None
                  and now - last_change > stall):
                # Some peers are gone and nothing moved since: the rest wait for deliveries that
                # cannot come (e.g. a link failed). Stop them now rather than at max_runtime.
                stopped = True
                alive = self.stop_running(plan.run_id)
                progress.message(
                    f"compose: no delivery for {stall:g} s after {len(exited)} peer(s) exited; stopped "
                    f"{len(alive)} still-running peer(s) {alive[:10]}{'...' if len(alive) > 10 else ''} (SIGTERM)"
                )
            progress.update(
                f"compose {plan.spec.name}: {started}/{n} started, {running} running, {len(exited)} exited, "
                f"{progress.deliveries(delivered, plan.expected_deliveries, now - t0)}, {now - t0:.1f} s"
            )
            wake = time.monotonic() + self.poll
            if go is not None:
                _poll_faults_until(wake, faults, counter, delivered, fast_poll)
            time.sleep(max(0.0, wake - time.monotonic()))

    def _barrier(self, plan: RunPlan, faults: FaultScheduler, now: float, t0: float) -> float:
        """Every container started: let the peers dial (the start barrier), start the fault clock and
        the other implementations' quiet clocks. Returns the time zero of the run's timeline."""
        self.timings["all_started"] = now - t0
        (plan.log_dir / START_FILE).touch()  # the start barrier: every peer may dial now
        faults.start_clock(now)
        self._quiet.restart_clock(now)
        return now

    def _cleanup(self, plan: RunPlan, base: list[str] | None, up: subprocess.Popen | None, log: Path,
                 progress: Progress) -> str | None:
        """Stop `up`, `docker compose down -v`, then sweep by label; a problem description or None."""
        problems = []
        with signals_ignored():
            if up is not None and up.poll() is None:
                up.terminate()
                try:
                    up.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    up.kill()
                    up.wait()
            if base is not None and not engine_answers(self.client, self.timeouts.cleanup_ping):
                return (f"compose: the Docker engine does not answer within {self.timeouts.cleanup_ping:g} s; nothing of "
                        f"{plan.run_id} was removed. Once it answers again (restart the Docker daemon if `docker ps` "
                        f"hangs): `p2p clean --run {plan.run_id}`")
            if base is not None:
                t = time.monotonic()
                self._stop_paced(plan, progress)
                problem = self.down(base, log, timeout=120 + plan.spec.n)
                self.timings["down"] = time.monotonic() - t
                if problem:
                    problems.append(problem)
            try:
                swept = clean_by_label(self.client, plan.run_id)
            except RunnerError as e:
                problems.append(str(e))
            else:
                if any(swept.values()):
                    progress.message("compose: removed leftovers " + ", ".join(f"{v} {k}" for k, v in swept.items() if v))
        if not problems:
            return None
        return (f"compose: clean-up of {plan.run_id} incomplete: " + "; ".join(problems)
                + f" -- retry with `p2p clean --run {plan.run_id}`")


def container_of(client, run_id: str, peer: int):
    """The container of ``peer`` in run ``run_id``, or None."""
    try:
        found = client.containers.list(all=True, filters={"label": [f"{RUN_LABEL}={run_id}", f"{PEER_LABEL}={peer}"]})
    except docker.errors.NotFound:  # listed, then gone before it was inspected (Compose replaced it)
        return None
    return found[0] if found else None


class UpInOrder(BackgroundUp):
    """``docker compose up -d`` of our peers' services, then of ``later`` (other implementations' peers):
    ours listen from their start, so the others' first dials find them."""

    name = "up in order"

    def __init__(self, popen: Callable[..., subprocess.Popen], base: list[str], log: Path,
                 later: Sequence[str]) -> None:
        self.later = list(later)
        super().__init__(popen, base, log)  # starts the thread: ``later`` is set above

    def steps(self) -> int:
        first = [item for svc in self.later for item in ("--scale", f"{svc}=0")]  # all but ``later``
        for extra in (first, ["--no-deps", *self.later]):
            rc = self.compose("up", "-d", *extra)
            if rc:
                return rc
        return 0


class _ContainerDriver:
    """Faults for containers through the docker SDK: kill, pause, unpause, kill + start."""

    def __init__(self, runner: ComposeRunner, run_id: str) -> None:
        self.runner, self.run_id = runner, run_id

    def container(self, peer: int):
        flt = {"label": [f"{RUN_LABEL}={self.run_id}", f"{PEER_LABEL}={peer}"]}
        found = self.runner.client.containers.list(all=True, filters=flt)
        if not found:
            raise RunnerError(f"fault: no container for peer {peer} in run {self.run_id}")
        return found[0]

    def kill(self, peer: int) -> None:
        try:
            self.container(peer).kill()
        except docker.errors.APIError:
            pass  # already exited

    def pause(self, peer: int) -> None:
        self.container(peer).pause()

    def resume(self, peer: int) -> None:
        self.container(peer).unpause()

    def restart(self, peer: int) -> None:
        container = self.container(peer)
        self.kill(peer)
        container.start()


def _not_exited(plan: RunPlan, states: dict) -> list[int]:
    """Ids of the plan's peers whose containers are not (known to be) exited, sorted."""
    return sorted(p.id for p in plan.peers if states.get(p.id) not in EXITED_STATES)


def _few(ids: list[int]) -> str:
    """The first ten ids, with an ellipsis if there are more (for error messages)."""
    return f"{ids[:10]}{'...' if len(ids) > 10 else ''}"


def _check_deadlines(plan: RunPlan, states: dict, rc: int | None, now: float, t0: float, up_deadline: float,
                     run_deadline: float | None, log: Path, timeouts: ComposeTimeouts) -> None:
    """Raise RunnerError if `docker compose up -d` or the peers overran their deadline."""
    if rc is None and now > up_deadline:
        raise RunnerError(f"`docker compose up -d` did not finish within {up_deadline - t0:.0f} s:\n{tail_of(log)}")
    if run_deadline is not None and now > run_deadline:
        alive = _not_exited(plan, states)
        raise RunnerError(
            f"peers {_few(alive)} still not exited "
            f"{plan.spec.options.max_runtime_for(plan.spec.n):g} s + {timeouts.run_margin:g} s after start; stopped them"
        )


def _check_engine_exits(plan: RunPlan, states: dict, exited: int, now: float, all_finished: float,
                        timeouts: ComposeTimeouts) -> None:
    """Raise EngineStuck if every peer finished long ago but the engine still lists some running."""
    n = len(plan.peers)
    if exited < n and now - all_finished > exit_slots_span(n, timeouts.exit_slot) + timeouts.engine_lag:
        alive = _not_exited(plan, states)
        raise EngineStuck(
            f"every peer wrote its summary {now - all_finished:.0f} s ago (the logs are complete: "
            f"`p2p analyse {plan.run_dir}`), but the Docker engine still lists {len(alive)} of their "
            f"containers as running ({_few(alive)}). The engine lost "
            "their exits or hangs: Docker 20.10 before 20.10.27 deadlocks when many containers on one "
            "network end at once (moby/moby#46661); if `docker ps` hangs, restart the Docker daemon"
        )


def _poll_faults_until(wake: float, faults: FaultScheduler, counter: DeliveryCounter, delivered: int,
                       fast_poll: float) -> None:
    """Until ``wake`` (the next look at the containers), fire the faults that come due.

    A pending delivery trigger is checked every ``fast_poll`` against the message logs, a time
    trigger when it is due; returns early when neither can fire before ``wake``.
    """
    while not faults.done and (left := wake - time.monotonic()) > 0:
        due = faults.next_due()
        if faults.needs_deliveries:
            time.sleep(min(fast_poll, left, due if due is not None else left))
        elif due is not None and due < left:
            time.sleep(due)
        else:
            break
        faults.poll(delivered=counter.count() if faults.needs_deliveries else max(delivered, counter.lines))
