"""Docker Compose backend: one container per peer, on one (or a few) bridge networks.

The runner renders ``runs/<run-id>/compose.yml`` (logs bind-mounted from
``./logs``), starts it with the Compose v2 CLI (``docker compose up -d``), follows
the containers through the Docker SDK and the peers' event logs, collects exit
codes and container output, then removes everything: ``docker compose down -v``
and a sweep of whatever still carries the label ``p2p.run=<run-id>``. The sweep
also runs on Ctrl-C and on any error.

``render_run`` is the plain-Compose path behind ``p2p render``: it writes
``compose/<topology>-<n>.yml`` and a root ``.env`` so that a bare
``docker compose up`` runs it and ``p2p analyse`` finds the logs in runs/latest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import requests

import docker
from analysis.follow import DeliveryCounter, read_progress
from generator.predict import Prediction
from generator.render import (
    IMAGE,
    PEER_LABEL,
    RUN_LABEL,
    PeerService,
    container_user,
    default_compose_path,
    project_name,
    render_compose,
    service_name,
    write_compose,
    write_env,
)
from generator.spec import RunSpec
from testbed.base import (
    Progress,
    Runner,
    RunnerError,
    RunPlan,
    RunResult,
    prepare_run,
    tail_of,
)
from testbed.faults import FAULT_POLL, FaultScheduler
from testbed.signals import signals_ignored, sigterm_interrupts

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "docker" / "build-image.sh"
ENSURE_COMPOSE_HINT = "install it with docker/ensure-compose.sh (or use --backend local)"
UP_TIMEOUT = 120.0  # seconds for `up -d`, plus UP_TIMEOUT_PER_PEER per peer
UP_TIMEOUT_PER_PEER = 2.0  # the engine here creates ~2 containers a second, slower as they pile up
RUN_MARGIN = 30.0  # seconds past the peers' max_runtime before the runner gives up
# Containers start one after the other (0.2-0.4 s each measured on 2 cores): a peer's
# links must wait that long for the last neighbour. Warn below base + per peer * N.
STARTUP_BASE = 10.0
STARTUP_PER_PEER = 0.5
STALL_MIN = 30.0  # no delivery for max(STALL_MIN, 10 * idle) s while some peers exited: stop the rest
START_FILE = ".start"  # in the log dir: the start barrier (peer --start-file)
# Docker 20.10 (Debian's 20.10.24 here) deadlocks in libnetwork when many containers on one
# network end at once (getSvcRecords vs processEndpointDelete, moby/moby#46661, fixed in
# 20.10.27): seen at 1000 peers, dockerd then answers nothing. From EXIT_SLOTS_FROM peers on,
# peer i exits only in its own EXIT_SLOT-second wall-clock slot (peer --exit-slot).
EXIT_SLOTS_FROM = 250
EXIT_SLOT = 0.1
# Every peer wrote its summary, yet the engine still lists some as running this long after
# their last exit slot: the engine lost the exits (or hangs); say so instead of waiting.
ENGINE_LAG = 120.0
CLEANUP_PING_TIMEOUT = 15.0  # before `down`: a wedged engine gets no 20-minute `down`
DOCKER_TIMEOUT = 300  # seconds per engine API call: listing 1000 containers under load takes long
# An engine that does not answer a ping within this is taken as absent: a wedged daemon must
# make a run (or CI) fail at once, not hang for DOCKER_TIMEOUT on every call.
PING_TIMEOUT = float(os.environ.get("P2P_PING_TIMEOUT", "30"))
COLLECT_THREADS = 8
# `docker compose --parallel` and StagedStart's starts at once: off (None) by default.
# Measured at 200 containers: --parallel 4/16/unlimited 38.2/36.0/35.7 s to all running;
# at 1000, Compose ignored --parallel for starts (350-570 `runc create` at once). A staged
# start, 8 at a time, was slower at 200 (73.1 s against 67.6 s); 1000 is unmeasured.
COMPOSE_PARALLEL: int | None = None
START_PARALLEL: int | None = None
STARTED_STATES = frozenset({"running", "exited", "dead", "paused", "restarting", "removing"})
EXITED_STATES = frozenset({"exited", "dead"})
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


# ---- rendering a plan ------------------------------------------------------------------


def compose_services(plan: RunPlan, barrier: bool = False) -> list[PeerService]:
    """Each peer as a service: ``--listen 0.0.0.0:<port>``, neighbours ``peer-<j>:<port>``, logs in /logs.

    With ``barrier`` the peers also wait for ``/logs/.start`` before dialing (``START_FILE``;
    the runner creates it once every container has started). From ``EXIT_SLOTS_FROM`` peers
    on, they end one ``EXIT_SLOT`` apart (see there).
    """
    port = plan.spec.port
    extra: tuple[str, ...] = ("--start-file", f"/logs/{START_FILE}") if barrier else ()
    if plan.spec.n >= EXIT_SLOTS_FROM:
        extra += ("--exit-slot", f"{EXIT_SLOT:g}")
    return [
        PeerService(
            id=peer.id,
            neighbours=peer.neighbours,
            command=(
                "--listen", f"0.0.0.0:{port}",
                *plan.peer_args(peer, lambda nb: f"{service_name(nb)}:{port}", "/logs"),
                *extra,
            ),
        )
        for peer in plan.peers
    ]


def render_plan(
    plan: RunPlan,
    compose_file: Path,
    project: str,
    *,
    user: tuple[int, int] | None = None,
    image: str = IMAGE,
    mem_limit: str = "64m",
    pids_limit: int = 64,
    barrier: bool = False,
) -> str:
    """The compose text for ``plan``, its log dir bind-mounted relative to ``compose_file``."""
    log_dir = os.path.relpath(plan.log_dir.resolve(), Path(compose_file).resolve().parent)
    return render_compose(
        project, plan.run_id, compose_services(plan, barrier), log_dir, user or container_user(),
        image=image, mem_limit=mem_limit, pids_limit=pids_limit, title=plan.spec.name,
    )


def exit_slots_span(n: int) -> float:
    """The longest a finished peer waits for its exit slot (0 below ``EXIT_SLOTS_FROM``)."""
    return n * EXIT_SLOT if n >= EXIT_SLOTS_FROM else 0.0


def own_log_dir(log_dir: Path, user: tuple[int, int]) -> None:
    """As root, hand the log dir to the container user (root can still remove what it writes)."""
    if os.getuid() == 0 and user[0] != 0:
        os.chown(log_dir, *user)


def parallel_args(parallel: int | None) -> list[str]:
    return [] if parallel is None else ["--parallel", str(parallel)]


def relist_interval(n: int) -> float:
    """Seconds between full container listings while events report the changes."""
    return max(2.0, n / 100)


def startup_allowance(n: int) -> float:
    """Seconds to allow between the first and the last of ``n`` containers starting."""
    return STARTUP_BASE + STARTUP_PER_PEER * n


def link_deadline_note(spec: RunSpec) -> str | None:
    """A warning when a link deadline chosen by the user looks shorter than Compose's start-up.

    The default (None) already scales with N (``PeerOptions.link_deadline_for``).
    """
    have = spec.options.link_deadline
    need = startup_allowance(spec.n)
    if have is None or have >= need:
        return None
    return (f"compose: warning: link deadline {have:g} s may be shorter than the start-up of {spec.n} "
            f"containers (allow about {need:.0f} s); links to late peers would fail")


ARP_LIMIT = Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3")


def arp_entries(spec: RunSpec) -> int:
    """ARP entries the host needs for a run: one per edge end, plus one per peer of slack."""
    return 2 * spec.graph().number_of_edges() + spec.n


def arp_table_note(spec: RunSpec, limit_file: Path = ARP_LIMIT) -> str | None:
    """A warning when the kernel's ARP table is too small for the run's containers.

    The table is one for the whole host, shared by every network namespace, and holds
    at most ``gc_thresh3`` entries (1024 by default). Every container keeps an entry per
    peer it talks to; past the limit the kernel logs "neighbor table overflow" and drops
    packets: at N = 1000 one dial in ten took 50-200 s and the flood 600-770 s instead of
    122 s. Raising the limit is the host owner's call, so we only say how.
    """
    try:
        limit = int(limit_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # not Linux, or not readable: nothing to say
    need = arp_entries(spec)
    if limit >= need:
        return None
    target = 1 << max(need - 1, 1).bit_length()
    return (f"compose: warning: the kernel's ARP table holds at most {limit} entries for the whole host and "
            f"{spec.name} needs about {need}; connections will time out. Raise it (as root): sysctl -w "
            f"net.ipv4.neigh.default.gc_thresh1={target // 4} net.ipv4.neigh.default.gc_thresh2={target // 2} "
            f"net.ipv4.neigh.default.gc_thresh3={target}")


def compose_notes(spec: RunSpec) -> list[str]:
    """Warnings worth printing before a Compose run of ``spec`` is rendered or started."""
    return [note for note in (link_deadline_note(spec), arp_table_note(spec)) if note]


def refuse_faults(spec: RunSpec) -> None:
    """A plain ``docker compose up`` has no runner to apply a fault timeline."""
    if spec.faults:
        raise RunnerError("faults (--fault) need a runner to apply them: use `p2p run --backend compose|local`")


@dataclass(frozen=True)
class RenderedRun:
    plan: RunPlan
    compose_file: Path
    env_file: Path
    project: str
    note: str | None = None


def render_run(
    spec: RunSpec,
    prediction: Prediction | None,
    *,
    root: Path = Path("."),
    runs_root: Path | None = None,
    run_id: str | None = None,
    project: str | None = None,
) -> RenderedRun:
    """Plain-Compose path: ``runs/<run-id>/`` (+ runs/latest), ``compose/<name>.yml`` and ``.env`` in ``root``."""
    root = Path(root)
    runs_root = root / "runs" if runs_root is None else Path(runs_root)
    refuse_faults(spec)
    note = "\n".join(compose_notes(spec)) or None
    plan = prepare_run(spec, runs_root, prediction, run_id)
    project = project or project_name(f"p2p-{spec.name}")
    path = default_compose_path(root, spec.name)
    user = container_user()
    write_compose(render_plan(plan, path, project, user=user), path)
    own_log_dir(plan.log_dir, user)
    env = write_env(root, path, project)
    return RenderedRun(plan=plan, compose_file=path, env_file=env, project=project, note=note)


# ---- Docker plumbing -------------------------------------------------------------------


def docker_client(ping_timeout: float = PING_TIMEOUT) -> docker.DockerClient:
    """A client whose engine answered a ping within ``ping_timeout`` s; ``RunnerError`` otherwise."""
    try:
        # A separate short-timeout client for the ping; the run's calls get DOCKER_TIMEOUT.
        probe = docker.from_env(timeout=ping_timeout)
        try:
            probe.ping()
        finally:
            probe.close()
        client = docker.from_env(timeout=DOCKER_TIMEOUT)
    except DOCKER_ERRORS as e:
        raise RunnerError(
            f"no Docker engine answers within {ping_timeout:g} s ({e}); start Docker (and check DOCKER_HOST / "
            "your access to /var/run/docker.sock) or use --backend local"
        ) from e
    return client


def check_compose(compose_cmd: Sequence[str] = ("docker", "compose")) -> str:
    """The Compose v2 version string; ``RunnerError`` when the plugin is missing."""
    try:
        out = subprocess.run(
            [*compose_cmd, "version", "--short"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as e:
        raise RunnerError(f"the docker CLI is not installed ({e}); `docker compose` is needed") from e
    except subprocess.TimeoutExpired as e:
        raise RunnerError("`docker compose version` did not answer within 60 s") from e
    if out.returncode != 0:
        raise RunnerError(
            f"`{' '.join(compose_cmd)}` (the Compose v2 plugin) is missing or broken: {ENSURE_COMPOSE_HINT}"
            + (f" [{out.stderr.strip()[-300:]}]" if out.stderr.strip() else "")
        )
    return out.stdout.strip()


def _sparse_state(container) -> str:
    """A listed container's state: a string in sparse listings, a dict in full ones."""
    state = container.attrs.get("State")
    return state.get("Status", "") if isinstance(state, dict) else str(state or "")


def _labels(obj) -> dict[str, str]:
    attrs = obj.attrs
    labels = attrs.get("Labels")
    if labels is None:
        labels = (attrs.get("Config") or {}).get("Labels")
    return labels or {}


def _ours(obj, run_id: str | None) -> bool:
    labels = _labels(obj)
    return RUN_LABEL in labels and (run_id is None or labels[RUN_LABEL] == run_id)


def list_labelled(client, run_id: str) -> list[str]:
    """Services, containers, networks and volumes labelled ``p2p.run=<run_id>``, for reports and tests."""
    f = {"filters": {"label": f"{RUN_LABEL}={run_id}"}}
    try:
        services = [f"service {s.name}" for s in client.services.list(**f)]
    except docker.errors.APIError:  # not a swarm manager: no services
        services = []
    return (
        services
        + [f"container {c.name}" for c in client.containers.list(all=True, **f)]
        + [f"network {n.name}" for n in client.networks.list(**f)]
        + [f"volume {v.name}" for v in client.volumes.list(**f)]
    )


def clean_by_label(client, run_id: str | None = None) -> dict[str, int]:
    """Remove containers, then networks and volumes labelled ``p2p.run`` (``=run_id`` if given).

    Returns how many of each were removed. Anything without our label is never
    touched: the engine filters by label and every object is checked again here.
    """
    filters = {"label": RUN_LABEL if run_id is None else f"{RUN_LABEL}={run_id}"}
    removed = {"containers": 0, "networks": 0, "volumes": 0}
    kinds = (
        ("containers", lambda: client.containers.list(all=True, filters=filters, sparse=True),
         lambda c: c.remove(force=True, v=True)),
        ("networks", lambda: client.networks.list(filters=filters), lambda n: n.remove()),
        ("volumes", lambda: client.volumes.list(filters=filters), lambda v: v.remove(force=True)),
    )
    errors = []
    for kind, listing, remove in kinds:
        try:
            objects = [o for o in listing() if _ours(o, run_id)]
        except DOCKER_ERRORS as e:
            raise RunnerError(f"cannot list {kind} labelled {filters['label']}: {e}") from e
        for obj in objects:
            try:
                remove(obj)
                removed[kind] += 1
            except docker.errors.NotFound:
                pass  # gone meanwhile
            except DOCKER_ERRORS as e:
                hint = ""
                if kind == "networks" and "active endpoints" in str(e) and not removed["containers"]:
                    hint = (" (no container of ours is attached: a stale endpoint count in the engine, "
                            "Docker 20.10's moby/moby#43286, seen here after runs of 1000 containers; "
                            "only a restart of dockerd clears it)")
                errors.append(f"{kind[:-1]} {getattr(obj, 'name', None) or obj.id}: {e}{hint}")
    if errors:
        raise RunnerError(f"could not remove {len(errors)} labelled object(s): " + "; ".join(errors[:5]))
    return removed


# ---- following containers --------------------------------------------------------------

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
            labels = _labels(c)
            if labels.get(RUN_LABEL) == self.run_id and labels.get(PEER_LABEL, "").isdigit():
                listed[int(labels[PEER_LABEL])] = _sparse_state(c)
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


# ---- the runner ------------------------------------------------------------------------


class ComposeRunner(Runner):
    """Run a plan as a Compose project ``p2p-<run-id>``, one container per peer."""

    name = "compose"

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
        if self.build_script is None or not Path(self.build_script).exists():
            try:
                self.client.images.get(self.image)
            except docker.errors.ImageNotFound as e:
                raise RunnerError(f"image {self.image} is missing and docker/build-image.sh is not here to build it") from e
            except DOCKER_ERRORS as e:
                raise RunnerError(f"cannot inspect image {self.image}: {e}") from e
            return
        try:
            proc = self.popen(
                ["bash", str(self.build_script), "--tag", self.image], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=Path(self.build_script).parent.parent,
            )
        except OSError as e:
            raise RunnerError(f"cannot run {self.build_script}: {e}") from e
        with proc:
            for line in proc.stdout:
                progress.message(line.rstrip("\n"))
            rc = proc.wait()
        if rc != 0:
            raise RunnerError(f"building image {self.image} failed ({self.build_script} exit {rc}; output above)")

    def start_up(self, base: list[str], log: Path) -> subprocess.Popen | StagedStart:
        """Bring the project up in the background, output appended to ``log``.

        With ``start_parallel`` set: ``up -d --no-start`` and then container starts, that many
        at a time (``StagedStart``); else a plain ``docker compose up -d``.
        """
        with open(log, "ab") as out:
            try:
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
            labels = _labels(c)
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
        """At scale, end running peers one EXIT_SLOT apart before `down` stops them all at once."""
        if plan.spec.n < EXIT_SLOTS_FROM:
            return
        try:
            stopped = self.stop_running(plan.run_id, pace=EXIT_SLOT)
            if not stopped:
                return
            progress.message(f"compose: stopping {len(stopped)} running peer(s) {EXIT_SLOT:g} s apart before `down`")
            deadline = time.monotonic() + 60.0
            flt = {"label": f"{RUN_LABEL}={plan.run_id}", "status": "running"}
            while time.monotonic() < deadline and any(
                _sparse_state(c) == "running" for c in self.client.containers.list(filters=flt, sparse=True)
            ):
                time.sleep(1.0)
        except DOCKER_ERRORS:
            pass  # `down` and the label sweep below still run and report

    def collect(self, plan: RunPlan) -> dict[int, int | None]:
        """Exit codes by peer (None: never ran); each container's output saved to logs/<id>.stderr.txt."""
        codes: dict[int, int | None] = {p.id: None for p in plan.peers}
        ours = []
        for c in self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={plan.run_id}"}):
            labels = _labels(c)
            peer = labels.get(PEER_LABEL, "")
            if labels.get(RUN_LABEL) != plan.run_id or not peer.isdigit():
                continue
            state = c.attrs.get("State") or {}
            if state.get("Status") in EXITED_STATES:
                codes[int(peer)] = state.get("ExitCode")
            ours.append((peer, c))

        def save(item) -> None:
            peer, c = item
            (plan.log_dir / f"{peer}.stderr.txt").write_bytes(c.logs(stdout=True, stderr=True))

        # One request per container: a few at a time, or a thousand peers take minutes.
        with ThreadPoolExecutor(COLLECT_THREADS) as pool:
            list(pool.map(save, ours))
        return codes

    # -- the run ---------------------------------------------------------------------------

    def run(self, plan: RunPlan, progress: Progress) -> RunResult:
        with sigterm_interrupts():
            return self._run(plan, progress)

    def _run(self, plan: RunPlan, progress: Progress) -> RunResult:
        project = project_name(f"p2p-{plan.run_id}")
        self.current_run_id = plan.run_id
        compose_file = plan.run_dir / "compose.yml"
        compose_log = plan.run_dir / "compose.log"
        base = [*self.compose_cmd, *parallel_args(self.parallel), "-p", project, "-f", str(compose_file)]
        self.timings = {}
        up: subprocess.Popen | None = None
        rendered = False
        t0 = time.monotonic()
        # Peers killed at time 0 are never started: the same as killed before they author.
        gone = {p for f in plan.spec.faults if f.at_start for p in f.peers}
        plan = dataclasses.replace(plan, peers=tuple(p for p in plan.peers if p.id not in gone))
        try:
            for note in compose_notes(plan.spec):
                progress.message(note)
            self.ensure_image(progress)
            user = container_user()
            write_compose(
                render_plan(plan, compose_file, project, user=user, image=self.image,
                            mem_limit=self.mem_limit, pids_limit=self.pids_limit, barrier=True),
                compose_file,
            )
            own_log_dir(plan.log_dir, user)
            rendered = True
            progress.message(f"compose: project {project}, {compose_file}")
            relist = self.relist if self.relist is not None else relist_interval(len(plan.peers))
            with ContainerWatch(self.client, plan.run_id, relist) as watch:
                t0 = time.monotonic()
                up = self.start_up(base, compose_log)
                self._wait(plan, up, compose_log, t0, progress, watch)
            t = time.monotonic()
            codes = self.collect(plan)
            self.timings["collect"] = time.monotonic() - t
        except BaseException as e:
            progress.done()
            if isinstance(e, KeyboardInterrupt):
                progress.message(f"interrupted: removing the containers of {plan.run_id}...")
            problem = self._cleanup(plan, base if rendered else None, up, compose_log, progress)
            if problem:  # never mask the error that got us here; report the clean-up trouble beside it
                progress.message(problem)
            if isinstance(e, DOCKER_ERRORS):
                raise RunnerError(f"Docker engine error during run {plan.run_id}: {e}") from e
            raise
        progress.done()
        problem = self._cleanup(plan, base, up, compose_log, progress)
        # The run itself is complete here: a leftover (say, a network the engine says still
        # has endpoints) must not hide its result; the CLI reports it after the analysis.
        return RunResult(exit_codes=codes, duration=self.timings["all_exited"], backend=self.name,
                         cleanup_problem=problem)

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
        up_deadline = t0 + UP_TIMEOUT + UP_TIMEOUT_PER_PEER * n
        run_deadline: float | None = None
        stall = max(STALL_MIN, 10 * plan.spec.options.idle)
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
                run_deadline = now + plan.spec.options.max_runtime_for(plan.spec.n) + RUN_MARGIN + exit_slots_span(plan.spec.n)
                last_change = now
            states = watch.states(now)
            started = sum(s in STARTED_STATES for s in states.values())
            exited = [p for p, s in states.items() if s in EXITED_STATES]
            if started >= n and "all_started" not in self.timings:
                self.timings["all_started"] = now - t0
                (plan.log_dir / START_FILE).touch()  # the start barrier: every peer may dial now
                go = now
                faults.start_clock(go)
            if rc == 0 and len(exited) >= n:
                states = watch.states(now, force=True)  # events said so; a listing confirms
                if sum(s in EXITED_STATES for s in states.values()) >= n:
                    self.timings["all_exited"] = now - t0
                    return
            _check_deadlines(plan, states, rc, now, t0, up_deadline, run_deadline, log)
            if now - progress_at >= progress_every:
                progress_at = now
                finished, delivered = read_progress(plan.log_dir, plan.spec.n)
                if all_finished is None and finished >= n:
                    all_finished = now
            if all_finished is not None:
                _check_engine_exits(plan, states, len(exited), now, all_finished)
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
                f"{delivered:,} deliveries, {now - t0:.1f} s"
            )
            wake = time.monotonic() + self.poll
            if go is not None:
                _poll_faults_until(wake, faults, counter, delivered, fast_poll)
            time.sleep(max(0.0, wake - time.monotonic()))

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
            if base is not None and not engine_answers(self.client, CLEANUP_PING_TIMEOUT):
                return (f"compose: the Docker engine does not answer within {CLEANUP_PING_TIMEOUT:g} s; nothing of "
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


class EngineStuck(RunnerError):
    """The peers are done (their logs say so) but the engine does not register their exits."""


def engine_answers(client, timeout: float) -> bool:
    """Whether ``client.ping()`` returns within ``timeout`` s (a hung call is left to itself)."""
    answered = threading.Event()

    def ping() -> None:
        with contextlib.suppress(*DOCKER_ERRORS):
            client.ping()
            answered.set()

    threading.Thread(target=ping, daemon=True, name="engine-ping").start()
    return answered.wait(timeout)


class StagedStart:
    """``docker compose up -d --no-start``, then the containers started ``parallel`` at a time.

    Compose 2.40 does not bound its container starts, ``--parallel`` notwithstanding: seen
    here, 350-570 ``runc create`` at once for a 1000-peer file, load 600, and bursts of
    starts between long stalls. Quacks like the ``Popen`` of a plain ``up -d`` (poll,
    wait, terminate, kill, returncode) so the runner treats both alike.
    """

    def __init__(self, client, popen: Callable[..., subprocess.Popen], base: list[str], log: Path, run_id: str,
                 parallel: int) -> None:
        self.client, self.popen, self.base, self.log = client, popen, base, log
        self.run_id, self.parallel = run_id, parallel
        self.returncode: int | None = None
        self.started = 0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="staged-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with open(self.log, "ab") as out:
                self._proc = self.popen([*self.base, "up", "-d", "--no-start"], stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT)
            rc = self._proc.wait()
            if rc != 0 or self._stop.is_set():
                self.returncode = rc or -15
                return
            flt = {"label": f"{RUN_LABEL}={self.run_id}"}
            ours = [c for c in self.client.containers.list(all=True, filters=flt, sparse=True)
                    if _labels(c).get(PEER_LABEL, "").isdigit()]
            ours.sort(key=lambda c: int(_labels(c)[PEER_LABEL]))
            with ThreadPoolExecutor(self.parallel) as pool:
                for _ in pool.map(self._start, ours):
                    pass
            self.returncode = -15 if self._stop.is_set() else 0
        except BaseException as e:  # noqa: BLE001 - reported through the log and the exit code
            with open(self.log, "a") as out:
                out.write(f"p2p: starting the containers failed: {e}\n")
            self.returncode = 1

    def _start(self, container) -> None:
        if not self._stop.is_set():
            container.start()
            with self._count_lock:
                self.started += 1

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired("staged start", timeout or 0)
        return self.returncode

    def terminate(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    kill = terminate


class _ContainerDriver:
    """Faults for containers through the docker SDK: kill, pause, unpause, kill + start."""

    def __init__(self, runner: ComposeRunner, run_id: str) -> None:
        self.runner, self.run_id = runner, run_id

    def _container(self, peer: int):
        flt = {"label": [f"{RUN_LABEL}={self.run_id}", f"{PEER_LABEL}={peer}"]}
        found = self.runner.client.containers.list(all=True, filters=flt)
        if not found:
            raise RunnerError(f"fault: no container for peer {peer} in run {self.run_id}")
        return found[0]

    def kill(self, peer: int) -> None:
        try:
            self._container(peer).kill()
        except docker.errors.APIError:
            pass  # already exited

    def pause(self, peer: int) -> None:
        self._container(peer).pause()

    def resume(self, peer: int) -> None:
        self._container(peer).unpause()

    def restart(self, peer: int) -> None:
        container = self._container(peer)
        self.kill(peer)
        container.start()


def _not_exited(plan: RunPlan, states: dict) -> list[int]:
    """Ids of the plan's peers whose containers are not (known to be) exited, sorted."""
    return sorted(p.id for p in plan.peers if states.get(p.id) not in EXITED_STATES)


def _few(ids: list[int]) -> str:
    """The first ten ids, with an ellipsis if there are more (for error messages)."""
    return f"{ids[:10]}{'...' if len(ids) > 10 else ''}"


def _check_deadlines(plan: RunPlan, states: dict, rc: int | None, now: float, t0: float, up_deadline: float,
                     run_deadline: float | None, log: Path) -> None:
    """Raise RunnerError if `docker compose up -d` or the peers overran their deadline."""
    if rc is None and now > up_deadline:
        raise RunnerError(f"`docker compose up -d` did not finish within {up_deadline - t0:.0f} s:\n{tail_of(log)}")
    if run_deadline is not None and now > run_deadline:
        alive = _not_exited(plan, states)
        raise RunnerError(
            f"peers {_few(alive)} still not exited "
            f"{plan.spec.options.max_runtime_for(plan.spec.n):g} s + {RUN_MARGIN:g} s after start; stopped them"
        )


def _check_engine_exits(plan: RunPlan, states: dict, exited: int, now: float, all_finished: float) -> None:
    """Raise EngineStuck if every peer finished long ago but the engine still lists some running."""
    n = len(plan.peers)
    if exited < n and now - all_finished > exit_slots_span(n) + ENGINE_LAG:
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
