"""What a Compose run looks like before anything starts: the compose file of a plan, the
plain-Compose path behind ``p2p render``, and the warnings worth printing first.

``render_run`` writes ``compose/<topology>-<n>.yml`` and a root ``.env`` so that a bare
``docker compose up`` runs it and ``p2p analyse`` finds the logs in runs/latest. The
Compose runner (``testbed.compose``) renders the same file with a start barrier; the
swarm runner shares the log-dir and fault refusals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from generator.predict import Prediction
from generator.render import (
    IMAGE,
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
from peer.config import DEFAULT_HOST, argv_of
from testbed.base import PeerPlan, RunnerError, RunPlan, prepare_run

# Containers start one after the other (0.2-0.4 s each measured on 2 cores): a peer's
# links must wait that long for the last neighbour. Warn below base + per peer * N.
STARTUP_BASE = 10.0
STARTUP_PER_PEER = 0.5
START_FILE = ".start"  # in the log dir: the start barrier (peer --start-file)
# Docker 20.10 (Debian's 20.10.24 here) deadlocks in libnetwork when many containers on one
# network end at once (getSvcRecords vs processEndpointDelete, moby/moby#46661, fixed in
# 20.10.27): seen at 1000 peers, dockerd then answers nothing. From EXIT_SLOTS_FROM peers on,
# peer i exits only in its own EXIT_SLOT-second wall-clock slot (peer --exit-slot).
EXIT_SLOTS_FROM = 250
EXIT_SLOT = 0.1


def compose_services(plan: RunPlan, barrier: bool = False, exit_slot: float = EXIT_SLOT) -> list[PeerService]:
    """Each peer as a service: ``--listen 0.0.0.0:<port>``, neighbours ``peer-<j>:<port>``, logs in /logs.

    With ``barrier`` the peers also wait for ``/logs/.start`` before dialing (``START_FILE``;
    the runner creates it once every container has started). From ``EXIT_SLOTS_FROM`` peers
    on, they end one ``exit_slot`` apart (see ``EXIT_SLOT``).
    """
    return peer_services(plan, argv_of({"start_file": f"/logs/{START_FILE}" if barrier else None,
                                        "exit_slot": exit_slot if plan.spec.n >= EXIT_SLOTS_FROM else None}))


def peer_services(plan: RunPlan, extra: list[str]) -> list[PeerService]:
    """Each peer as a container service (Compose and Swarm): it listens on the spec's port, reaches
    neighbour j at ``peer-<j>:<port>``, logs to /logs; ``extra``: the backend's own flags."""
    port = plan.spec.port
    return [
        foreign_service(plan, peer) if plan.spec.implementation_of(peer.id) else PeerService(
            id=peer.id,
            neighbours=peer.neighbours,
            command=(
                *argv_of({"listen": (DEFAULT_HOST, port)}),
                *plan.peer_args(peer, lambda nb: f"{service_name(nb)}:{port}", "/logs"),
                *extra,
            ),
        )
        for peer in plan.peers
    ]


def foreign_service(plan: RunPlan, peer: PeerPlan) -> PeerService:
    """A peer of another implementation as a container service: its image, the adapter's program as the
    entrypoint and the rest as the command, its environment, the run's logs mounted where it writes."""
    impl = plan.spec.implementation_of(peer.id)
    port = plan.spec.port
    values, nbrs = plan.foreign_values(peer, lambda nb: f"{service_name(nb)}:{port}", (DEFAULT_HOST, port),
                                       impl.adapter.log_dir)
    argv = impl.command(values, nbrs)
    return PeerService(id=peer.id, neighbours=peer.neighbours, command=tuple(argv[1:]), image=impl.image,
                       entrypoint=() if impl.adapter.image_entrypoint else (argv[0],), environment=tuple(sorted(impl.adapter.environment(values).items())),
                       log_target=impl.adapter.log_dir, implementation=impl.name)


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
    exit_slot: float = EXIT_SLOT,
) -> str:
    """The compose text for ``plan``, its log dir bind-mounted relative to ``compose_file``."""
    log_dir = os.path.relpath(plan.log_dir.resolve(), Path(compose_file).resolve().parent)
    return render_compose(
        project, plan.run_id, compose_services(plan, barrier, exit_slot), log_dir, user or container_user(),
        image=image, mem_limit=mem_limit, pids_limit=pids_limit, title=plan.spec.name,
    )


def exit_slots_span(n: int, exit_slot: float = EXIT_SLOT) -> float:
    """The longest a finished peer waits for its exit slot (0 below ``EXIT_SLOTS_FROM``)."""
    return n * exit_slot if n >= EXIT_SLOTS_FROM else 0.0


def own_log_dir(log_dir: Path, user: tuple[int, int]) -> None:
    """As root, hand the log dir to the container user (root can still remove what it writes)."""
    if os.getuid() == 0 and user[0] != 0:
        os.chown(log_dir, *user)


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
