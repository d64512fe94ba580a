"""Docker Swarm backend: one service per peer, spread by swarm over every node of the swarm.

The runner builds the peer image (docker/build-image.sh), renders
``compose/<topology>-<n>.stack.yml`` (generator/render_stack.py; a copy goes to
``runs/<run-id>/stack.yml``), deploys it with ``docker stack deploy``, follows the
peers' tasks through the Docker SDK, and removes everything afterwards:
``docker stack rm`` and a sweep of the services, containers and networks labelled
``p2p.run=<run-id>`` -- also on Ctrl-C, SIGTERM and any error.

Logs: the peers of a swarm share no file system, so each peer writes its logs to
a private tmpfs and uploads them when it exits (``--upload``) to the stack's
``collector`` service (``python -m peer.collector``), pinned to the node this
runner talks to, which bind-mounts ``runs/<run-id>/logs``. The runner therefore
has to run on a swarm manager whose file system holds the run directory. Each
peer's stdout/stderr comes from ``docker service logs`` (gathered by the
manager from whichever node ran it) into ``logs/<id>.stderr.txt``; the
collector's into ``runs/<run-id>/collector.log``.

Which node ran each peer goes to ``runs/<run-id>/placement.json``. A peer whose node
left the swarm before it ended is lost (swarm shuts down a down node's tasks for good): the
runner records that as the kill of those peers in ``faults.jsonl`` and goes on, so the
analysis explains the deliveries it cost.

The runner never creates a swarm: without one, ``connect()`` says how. testbed/multihost.py
makes a multi-node one on one machine, for the tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import docker.errors

import docker
from analysis.follow import read_progress
from generator.render import IMAGE, PEER_LABEL, RUN_LABEL, PeerService, container_user, write_compose
from generator.render_stack import (
    COLLECTOR_PORT,
    ROLE_LABEL,
    collector_address,
    default_stack_path,
    render_stack,
    stack_name,
)
from peer.config import argv_of, parse_address
from peer.logfiles import events_file, stderr_file
from testbed.base import Progress, Runner, RunnerError, RunPlan, RunResult, tail_of
from testbed.engine import BUILD_SCRIPT, DOCKER_ERRORS, clean_by_label, docker_client, ensure_image, labels_of
from testbed.faults import FAULT_LOG
from testbed.rendering import own_log_dir, peer_services, refuse_faults
from testbed.signals import signals_ignored

SWARM_INIT_HINT = "docker swarm init --advertise-addr 127.0.0.1"
REMOVE_TIMEOUT = 60.0  # seconds for the stack's services, containers and networks to go
TASK_QUERY_BATCH = 200  # service ids per task listing (keeps the query string short for big runs)
# Task states (docker service ps): running and the terminal ones.
RUNNING = "running"
TERMINAL = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
# Ours, not swarm's: the task's node left the swarm (down, disconnected) before the task ended.
# Swarm keeps reporting such a task as running (or starting) for as long as the node is away.
LOST = "lost"
NODE_AWAY = frozenset({"down", "disconnected", "unknown"})


@dataclass(frozen=True)
class SwarmTimeouts:
    """How long a swarm run waits for what (seconds)."""

    deploy: float = 120.0  # for `docker stack deploy` to return (it does not wait for tasks)
    start: float = 120.0  # (+ start_per_peer per peer) for every task to get past pending/preparing
    start_per_peer: float = 1.0
    run_margin: float = 30.0  # past the peers' max_runtime before the runner gives up
    upload_wait: float = 30.0  # for the collector to finish once every peer task ended
    remove: float = REMOVE_TIMEOUT  # for the stack's services, containers and networks to go


@dataclass(frozen=True)
class TaskInfo:
    """The latest task of one service: state, exit code (None when it never ran), error, node."""

    state: str
    exit_code: int | None
    error: str
    node: str


def swarm_info(client) -> dict:
    """The engine's swarm section; ``RunnerError`` unless this node is an active swarm manager."""
    try:
        info = client.info()
    except DOCKER_ERRORS as e:
        raise RunnerError(f"cannot ask the Docker engine about its swarm: {e}") from e
    swarm = info.get("Swarm") or {}
    state = swarm.get("LocalNodeState") or "inactive"
    if state != "active":
        raise RunnerError(
            f"the swarm backend needs Docker Swarm, and this engine is not part of an active swarm (state: {state}). "
            f"For a single-node swarm run\n    {SWARM_INIT_HINT}\n(undo later with `docker swarm leave --force`); "
            "for several hosts see docs/backends.md, section Several hosts. p2p never creates a swarm by itself."
        )
    if not swarm.get("ControlAvailable"):
        raise RunnerError(
            "this Docker engine is a swarm worker; stacks are deployed from a manager: run p2p on a manager node "
            "(`docker node ls` works there)"
        )
    return swarm


def _remove_services(client, run_id: str, flt: dict[str, str]) -> int:
    """Remove the run's services (already gone ones are skipped); how many were removed."""
    try:
        services = [s for s in client.services.list(filters=flt) if labels_of(s).get(RUN_LABEL) == run_id]
    except DOCKER_ERRORS as e:
        raise RunnerError(f"cannot list services labelled {flt['label']}: {e}") from e
    removed = 0
    for s in services:
        try:
            s.remove()
            removed += 1
        except docker.errors.NotFound:
            pass
        except DOCKER_ERRORS as e:
            raise RunnerError(f"cannot remove service {s.name}: {e}") from e
    return removed


def _remove_networks(networks: list) -> tuple[int, list[str]]:
    """Try to remove ``networks``: how many went, and a description of each still in use."""
    removed, busy = 0, []
    for net in networks:
        try:
            net.remove()
            removed += 1
        except docker.errors.NotFound:
            pass
        except DOCKER_ERRORS as e:  # endpoints still being released on some node
            busy.append(f"network {net.name} ({e})")
    return removed, busy


def clean_swarm(client, run_id: str, timeout: float = REMOVE_TIMEOUT) -> dict[str, int]:
    """Remove the services, then containers and networks labelled ``p2p.run=<run_id>``; counts removed.

    Swarm removes a service's containers (on every node) and frees its network
    endpoints asynchronously, so networks are retried until ``timeout``. Local
    containers still there after that are force-removed. ``RunnerError`` names
    whatever could not be removed.
    """
    flt = {"label": f"{RUN_LABEL}={run_id}"}
    removed = {"services": 0, "containers": 0, "networks": 0, "volumes": 0}
    end = time.monotonic() + timeout
    removed["services"] += _remove_services(client, run_id, flt)
    left: list[str] = []
    while True:
        left = []
        try:
            containers = client.containers.list(all=True, filters=flt, sparse=True)
            networks = [n for n in client.networks.list(filters=flt) if labels_of(n).get(RUN_LABEL) == run_id]
        except DOCKER_ERRORS as e:
            raise RunnerError(f"cannot list objects labelled {flt['label']}: {e}") from e
        out_of_time = time.monotonic() > end
        if containers and out_of_time:
            swept = clean_by_label(client, run_id)  # force-removes local containers, then networks
            for k in ("containers", "networks", "volumes"):
                removed[k] += swept[k]
            containers = client.containers.list(all=True, filters=flt, sparse=True)
        left += [f"container {c.id[:12]}" for c in containers]
        if not containers:
            gone, busy = _remove_networks(networks)
            removed["networks"] += gone
            left += busy
        else:
            left += [f"network {n.name}" for n in networks]
        if not left:
            break
        if out_of_time:
            raise RunnerError(f"could not remove {len(left)} object(s) labelled {flt['label']} within "
                              f"{timeout:g} s: " + "; ".join(left[:5]))
        time.sleep(0.25)
    swept = clean_by_label(client, run_id)  # volumes, and anything that appeared meanwhile
    for k, v in swept.items():
        removed[k] += v
    return removed


@dataclass(frozen=True)
class TaskSnapshot:
    """One look at a run's tasks: each peer's state ("" without a task), who started, who ended,
    and the tasks that ended without ever running (key -1: the collector)."""

    states: dict[int, str]
    started: list[int]
    ended: list[int]
    rejected: dict[int, TaskInfo]


def judge_tasks(ids: Sequence[int], peers: dict[int, TaskInfo], collector: TaskInfo | None) -> TaskSnapshot:
    """What the latest tasks of the peers ``ids`` and of the collector say about the run."""
    states = {p: peers[p].state if p in peers else "" for p in ids}
    started = [p for p, s in states.items() if s in (RUNNING, LOST) or s in TERMINAL]
    ended = [p for p, s in states.items() if s in TERMINAL or s == LOST]
    rejected = {p: peers[p] for p in ended if peers[p].exit_code is None and peers[p].state != LOST}
    if collector is not None and collector.state in TERMINAL and collector.exit_code is None:
        rejected[-1] = collector
    return TaskSnapshot(states=states, started=started, ended=ended, rejected=rejected)


def overdue_message(snap: TaskSnapshot, peers: dict[int, TaskInfo], now: float, t0: float, start_deadline: float,
                    run_deadline: float, image: str) -> str | None:
    """Why the run cannot go on (tasks not started, or peers not done, past their deadline); None: it can."""
    if len(snap.started) < len(snap.states) and now > start_deadline:
        waiting = [p for p in snap.states if p not in snap.started]
        why = "; ".join(f"peer {p}: {snap.states[p] or 'no task'} {peers[p].error if p in peers else ''}".strip()
                        for p in waiting[:5])
        return (f"{len(waiting)} peer task(s) not started within {start_deadline - t0:.0f} s "
                f"({why}); are the nodes up and is {image} on every node?")
    if now > run_deadline:
        alive = [p for p in snap.states if p not in snap.ended]
        return (f"peers {alive[:10]}{'...' if len(alive) > 10 else ''} still not done "
                f"{run_deadline - t0:.0f} s after the deploy; stopped them")
    return None


class SwarmRunner(Runner):
    """Run a plan as a swarm stack ``p2p-<run-id>``: a service per peer plus the log collector."""

    name = "swarm"
    engine_errors = DOCKER_ERRORS

    def __init__(
        self,
        client,
        *,
        docker_cmd: Sequence[str] = ("docker",),
        build_script: Path | None = BUILD_SCRIPT,
        image: str = IMAGE,
        mem_limit: str = "64m",
        pids_limit: int = 64,
        tmpfs_size: str = "64m",
        endpoint_mode: str = "dnsrr",
        internal: bool = True,
        stack_root: Path | None = Path("."),
        poll: float = 0.25,
        timeouts: SwarmTimeouts = SwarmTimeouts(),
    ) -> None:
        """``stack_root``: the stack file goes to ``<stack_root>/compose/<name>.stack.yml``
        (None: only ``runs/<run-id>/stack.yml``)."""
        self.client = client
        self.docker_cmd = tuple(docker_cmd)
        self.build_script = build_script
        self.image = image
        self.mem_limit = mem_limit
        self.pids_limit = pids_limit
        self.tmpfs_size = tmpfs_size
        self.endpoint_mode = endpoint_mode
        self.internal = internal
        self.stack_root = stack_root
        self.poll = poll
        self.timeouts = timeouts
        self._deployed = False  # from the deploy on, clean-up removes the stack
        #: seconds after the deploy started: deployed, all_started, all_exited, collected; removed (own duration)
        self.timings: dict[str, float] = {}
        #: peer id -> host name of the node its (latest) task ran on, as last seen
        self.placement: dict[int, str] = {}
        #: peer id -> host name of its node, for the peers lost when that node left the swarm
        self.lost: dict[int, str] = {}

    @classmethod
    def connect(cls, **kwargs) -> SwarmRunner:
        """A runner, or ``RunnerError`` saying why not (no engine, no swarm, a worker node, no docker CLI)."""
        client = docker_client()
        swarm_info(client)
        cmd = kwargs.get("docker_cmd", ("docker",))
        if shutil.which(cmd[0]) is None:
            raise RunnerError(f"the docker CLI ({cmd[0]}) is not installed; `docker stack deploy` needs it")
        return cls(client, **kwargs)

    # -- steps -------------------------------------------------------------------------------

    def ensure_image(self, progress: Progress) -> None:
        """Build the peer image when its sources changed (same as the compose backend)."""
        ensure_image(self.client, self.image, self.build_script, progress)

    def services(self, plan: RunPlan) -> list[PeerService]:
        """Each peer: listens on the spec's port, neighbours ``peer-<j>:<port>``, logs on /logs, uploads at exit."""
        return peer_services(plan, argv_of({"upload": parse_address(collector_address(COLLECTOR_PORT))}))

    def render(self, plan: RunPlan, stack: str, node_id: str | None, user: tuple[int, int]) -> str:
        opts = plan.spec.options
        return render_stack(
            stack, plan.run_id, self.services(plan), str(plan.log_dir.resolve()), user,
            collector_node=node_id, collector_timeout=opts.max_runtime_for(plan.spec.n) + self.timeouts.run_margin,
            image=self.image, mem_limit=self.mem_limit, pids_limit=self.pids_limit, tmpfs_size=self.tmpfs_size,
            endpoint_mode=self.endpoint_mode, internal=self.internal, title=plan.spec.name,
        )

    def deploy(self, stack_file: Path, stack: str, log: Path) -> None:
        cmd = [*self.docker_cmd, "stack", "deploy", "--resolve-image", "never", "-c", str(stack_file), stack]
        with open(log, "ab") as out:
            try:
                rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=self.timeouts.deploy).returncode
            except (OSError, subprocess.TimeoutExpired) as e:
                raise RunnerError(f"`{' '.join(cmd)}` failed: {e}") from e
        if rc != 0:
            raise RunnerError(f"`docker stack deploy` failed (exit {rc}):\n{tail_of(log)}")

    def remove_stack(self, stack: str, log: Path) -> str | None:
        """``docker stack rm``; a problem description or None."""
        with open(log, "ab") as out:
            try:
                rc = subprocess.run([*self.docker_cmd, "stack", "rm", stack], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=120).returncode
            except (OSError, subprocess.TimeoutExpired) as e:
                return f"`docker stack rm {stack}` failed: {e}"
        return None if rc == 0 else f"`docker stack rm {stack}` exited {rc} (see {log})"

    def tasks(self, run_id: str) -> tuple[dict[int, TaskInfo], TaskInfo | None, dict[int, str]]:
        """(peer id -> its latest task, the collector's latest task, peer id -> service id)."""
        services = [s for s in self.client.services.list(filters={"label": f"{RUN_LABEL}={run_id}"})
                    if labels_of(s).get(RUN_LABEL) == run_id]
        by_service: dict[str, str] = {}
        peer_of: dict[int, str] = {}
        for s in services:
            labels = labels_of(s)
            if labels.get(PEER_LABEL, "").isdigit():
                by_service[s.id] = labels[PEER_LABEL]
                peer_of[int(labels[PEER_LABEL])] = s.id
            elif labels.get(ROLE_LABEL) == "collector":
                by_service[s.id] = "collector"
        latest: dict[str, dict] = {}
        ids = list(by_service)
        for i in range(0, len(ids), TASK_QUERY_BATCH):
            for t in self.client.api.tasks(filters={"service": ids[i : i + TASK_QUERY_BATCH]}):
                key = by_service.get(t.get("ServiceID", ""))
                if key is not None and (key not in latest or t.get("Version", {}).get("Index", 0)
                                        > latest[key].get("Version", {}).get("Index", 0)):
                    latest[key] = t
        peers: dict[int, TaskInfo] = {}
        collector = None
        for key, t in latest.items():
            status = t.get("Status") or {}
            cstatus = status.get("ContainerStatus") or {}
            info = TaskInfo(
                state=status.get("State", ""),
                exit_code=cstatus.get("ExitCode") if cstatus.get("ContainerID") else None,
                error=status.get("Err", "") or "",
                node=t.get("NodeID", ""),
            )
            if key == "collector":
                collector = info
            else:
                peers[int(key)] = info
        return peers, collector, peer_of

    def nodes_away(self) -> dict[str, str]:
        """Node id -> host name of every swarm node that is not up (down, disconnected)."""
        try:
            nodes = self.client.nodes.list()
        except DOCKER_ERRORS:
            return {}
        return {n.id: (n.attrs.get("Description") or {}).get("Hostname", n.id[:12]) for n in nodes
                if (n.attrs.get("Status") or {}).get("State") in NODE_AWAY}

    def mark_lost(self, plan: RunPlan, peers: dict[int, TaskInfo], elapsed: float, delivered: int,
                  progress: Progress) -> dict[int, TaskInfo]:
        """Peers whose node left the swarm before they ended are lost for good (state ``LOST``, no
        exit code), even if the node comes back. Each loss is recorded in faults.jsonl as the kill
        it amounts to, so the analysis explains (and lists) the deliveries it cost."""
        away = self.nodes_away()
        new: dict[str, list[int]] = {}
        for p, t in sorted(peers.items()):
            if t.node in away and t.state not in TERMINAL and p not in self.lost:
                new.setdefault(away[t.node], []).append(p)
        for node, ids in new.items():
            self.lost.update(dict.fromkeys(ids, node))
            fault = f"kill:{','.join(map(str, ids))}@{elapsed:.3f}"
            rec = {"t": round(datetime.now(UTC).timestamp(), 6), "fault": fault, "action": "kill", "peers": ids,
                   "edges": [], "elapsed": round(elapsed, 3), "deliveries": delivered,
                   "cause": f"swarm node {node} left the swarm (seconds counted from the deploy)"}
            with open(plan.run_dir / FAULT_LOG, "a") as f:
                f.write(json.dumps(rec) + "\n")
            progress.message(f"swarm: node {node} left the swarm {elapsed:.1f} s after the deploy: peers "
                             f"{ids[:20]}{'...' if len(ids) > 20 else ''} lost (recorded as {FAULT_LOG}: kill)")
        return {p: replace(t, state=LOST, exit_code=None) if p in self.lost else t for p, t in peers.items()}

    def node_names(self, node_ids) -> dict[str, str]:
        """Host names of the nodes ``node_ids`` (one engine call per distinct node)."""
        return {i: self.node_name(i) for i in set(node_ids)}

    def note_placement(self, plan: RunPlan, peers: dict[int, TaskInfo], progress: Progress) -> None:
        """Which node ran each peer: kept in ``placement``, written to ``placement.json`` and summed up."""
        names = self.node_names(t.node for t in peers.values())
        self.placement = {p: names[t.node] for p, t in sorted(peers.items()) if t.node}
        by_node: dict[str, list[int]] = {}
        for p, node in self.placement.items():
            by_node.setdefault(node, []).append(p)
        (plan.run_dir / "placement.json").write_text(json.dumps(
            {"peers": {str(p): node for p, node in self.placement.items()}, "nodes": by_node}, indent=1) + "\n")
        progress.message(f"swarm: peers on {len(by_node)} node(s): "
                         + ", ".join(f"{node} {len(ps)}" for node, ps in sorted(by_node.items())))

    def node_name(self, node_id: str) -> str:
        """A node's host name (its id when the engine cannot say)."""
        if not node_id:
            return "?"
        try:
            return self.client.nodes.get(node_id).attrs["Description"]["Hostname"]
        except (KeyError, TypeError, *DOCKER_ERRORS):
            return node_id[:12]

    def save_service_logs(self, plan: RunPlan, stack: str) -> None:
        """Each service's output, from whatever node ran it: a peer's to logs/<id>.stderr.txt,
        the collector's to collector.log."""
        for s in self.client.services.list(filters={"label": f"{RUN_LABEL}={plan.run_id}"}):
            labels = labels_of(s)
            if labels.get(PEER_LABEL, "").isdigit():
                path = stderr_file(plan.log_dir, int(labels[PEER_LABEL]))
            elif labels.get(ROLE_LABEL) == "collector":
                path = plan.run_dir / "collector.log"
            else:
                continue
            try:
                data = b"".join(s.logs(stdout=True, stderr=True, follow=False))
            except DOCKER_ERRORS as e:
                data = f"(service logs of {s.name} unavailable: {e})\n".encode()
            path.write_bytes(data)

    # -- the run -----------------------------------------------------------------------------

    def execute(self, plan: RunPlan, progress: Progress) -> RunResult:
        stack = stack_name(plan.run_id)
        log = plan.run_dir / "swarm.log"
        self.timings = {}
        self.placement = {}
        self.lost = {}
        self._deployed = False
        refuse_faults(plan.spec)
        swarm = swarm_info(self.client)
        self.ensure_image(progress)
        user = container_user()
        text = self.render(plan, stack, swarm.get("NodeID"), user)
        stack_file = write_compose(text, plan.run_dir / "stack.yml")
        if self.stack_root is not None:
            shown = write_compose(text, default_stack_path(self.stack_root, plan.spec.name))
        else:
            shown = stack_file
        own_log_dir(plan.log_dir, user)
        progress.message(f"swarm: stack {stack}, {shown}")
        t0 = time.monotonic()
        self._deployed = True  # from here on, clean-up must run even if the deploy fails half-way
        self.deploy(stack_file, stack, log)
        self.timings["deployed"] = time.monotonic() - t0
        codes = self._wait(plan, t0, progress)
        self.save_service_logs(plan, stack)
        return RunResult(exit_codes=codes, duration=self.timings.get("all_exited", 0.0), backend=self.name)

    def interrupted(self, plan: RunPlan) -> str:
        return f"removing stack {stack_name(plan.run_id)} of {plan.run_id}"

    def on_failure(self, plan: RunPlan, progress: Progress, error: BaseException) -> None:
        """Whatever the services said helps explain the failure (not after Ctrl-C: that is no failure of theirs)."""
        if self._deployed and not isinstance(error, KeyboardInterrupt):
            self.save_service_logs(plan, stack_name(plan.run_id))

    def clean_up(self, plan: RunPlan, progress: Progress) -> str | None:
        return self._cleanup(plan, stack_name(plan.run_id) if self._deployed else None, plan.run_dir / "swarm.log",
                             progress)

    def completed(self, plan: RunPlan, result: RunResult, progress: Progress) -> RunResult:
        """As with Compose: the run is complete here, so a leftover is reported beside its result
        (the CLI prints it after the analysis and exits 3), never instead of it. A peer whose logs
        never arrived did not end well, whatever its exit code."""
        missing = [p.id for p in plan.peers if not events_file(plan.log_dir, p.id).exists()]
        if missing:
            progress.message(f"swarm: no logs arrived from peers {missing[:20]}{'...' if len(missing) > 20 else ''} "
                             f"(see logs/<id>.stderr.txt and {plan.run_dir / 'collector.log'})")
            for p in missing:
                if result.exit_codes.get(p) == 0:
                    result.exit_codes[p] = None
        return result

    def _wait(self, plan: RunPlan, t0: float, progress: Progress) -> dict[int, int | None]:
        """Follow the tasks until every peer ended and the collector finished (or gave up)."""
        n = plan.spec.n
        ids = [p.id for p in plan.peers]
        limits = self.timeouts
        start_deadline = t0 + limits.start + limits.start_per_peer * n
        run_deadline = t0 + plan.spec.options.max_runtime_for(plan.spec.n) + limits.run_margin + limits.start
        upload_deadline: float | None = None
        while True:
            now = time.monotonic()
            finished, delivered = read_progress(plan.log_dir, n)
            peers, collector, _ = self.tasks(plan.run_id)
            peers = self.mark_lost(plan, peers, now - t0, delivered, progress)
            snap = judge_tasks(ids, peers, collector)
            if snap.rejected:
                raise RunnerError(self._rejected_message(snap.rejected))
            if len(snap.started) >= n and "all_started" not in self.timings:
                self.timings["all_started"] = now - t0
            if len(snap.ended) >= n:
                if "all_exited" not in self.timings:
                    self.timings["all_exited"] = now - t0
                    upload_deadline = now + limits.upload_wait
                # With peers lost, the collector waits in vain for their uploads: the others' suffice.
                if self._collector_done(collector, now, t0, upload_deadline, progress) or (
                        self.lost and finished >= n - len(self.lost)):
                    break
            overdue = overdue_message(snap, peers, now, t0, start_deadline, run_deadline, self.image)
            if overdue:
                raise RunnerError(overdue)
            running = sum(s == RUNNING for s in snap.states.values())
            progress.update(
                f"swarm {plan.spec.name}: {len(snap.started)}/{n} started, {running} running, {len(snap.ended)} ended, "
                f"{finished} uploaded ({progress.deliveries(delivered, plan.expected_deliveries, now - t0)}), "
                f"{now - t0:.1f} s"
            )
            time.sleep(self.poll)
        peers, _, _ = self.tasks(plan.run_id)
        self.note_placement(plan, peers, progress)
        return {p: (peers[p].exit_code if p in peers and p not in self.lost else None) for p in ids}

    def _collector_done(self, collector: TaskInfo | None, now: float, t0: float, upload_deadline: float | None,
                        progress: Progress) -> bool:
        """Every peer ended: whether the collector finished too (or ran out of time, which is said)."""
        if collector is not None and collector.state in TERMINAL:
            self.timings["collected"] = now - t0
            return True
        if upload_deadline is not None and now > upload_deadline:
            progress.message(f"swarm: the collector did not finish within {self.timeouts.upload_wait:g} s after the "
                             f"last peer ended (state {collector.state if collector else '?'})")
            return True
        return False

    def _rejected_message(self, rejected: dict[int, TaskInfo]) -> str:
        """Tasks that never ran (e.g. image missing on a node, bind path missing, no resources): no point waiting."""
        names = self.node_names(t.node for t in rejected.values())
        detail = "; ".join(
            f"{'collector' if p < 0 else f'peer {p}'}: {t.state} on node {names[t.node] if t.node else '?'}: "
            f"{t.error or '?'}"
            for p, t in sorted(rejected.items())[:5]
        )
        hints = []
        no_image = sorted({names[t.node] for t in rejected.values() if t.node and "image" in t.error.lower()})
        if no_image:
            hints.append(f"the image {self.image} must exist on every node (no registry): copy it to "
                         + ("node " if len(no_image) == 1 else "nodes ") + ", ".join(no_image) + " with\n"
                         + "\n".join(f"    docker save {self.image} | ssh {node} docker load" for node in no_image))
        elif any("image" in t.error.lower() for t in rejected.values()):
            hints.append(f"the image {self.image} must exist on every node (no registry): "
                         f"docker save {self.image} | ssh NODE docker load")
        if any("bind source path does not exist" in t.error for t in rejected.values()):
            hints.append("the collector bind-mounts the run's log directory on the node p2p talks to: run p2p on "
                         "a swarm manager whose disk holds the runs directory (docs/backends.md, Logs on a swarm)")
        return f"swarm tasks did not run: {detail}" + "".join(f"\n{h}" for h in hints)

    def _cleanup(self, plan: RunPlan, stack: str | None, log: Path, progress: Progress) -> str | None:
        """``docker stack rm`` then the label sweep; a problem description or None."""
        problems = []
        with signals_ignored():
            t = time.monotonic()
            if stack is not None:
                problem = self.remove_stack(stack, log)
                if problem:
                    problems.append(problem)
            try:
                swept = clean_swarm(self.client, plan.run_id, self.timeouts.remove)
            except RunnerError as e:
                problems.append(str(e))
            else:
                extra = {k: v for k, v in swept.items() if v and k != "networks" and k != "services"}
                if extra:
                    progress.message("swarm: removed leftovers " + ", ".join(f"{v} {k}" for k, v in extra.items()))
            self.timings["removed"] = time.monotonic() - t
        if not problems:
            return None
        return (f"swarm: clean-up of {plan.run_id} incomplete: " + "; ".join(problems)
                + f" -- retry with `docker stack rm {stack or stack_name(plan.run_id)}` and "
                f"`p2p clean --run {plan.run_id}`")
