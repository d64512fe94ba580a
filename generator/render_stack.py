"""Render a run as a Docker Swarm stack file (``docker stack deploy -c``).

Pure text generation (Jinja2), like generator/render.py: nothing here talks to
Docker. One replicated service per peer (``peer-<i>``, one replica, never
restarted), hardened as far as swarm services allow (read-only root, all
capabilities dropped, init, memory and pids limits; swarm has no
``security_opt``), on attachable overlay networks labelled ``p2p.run=<run-id>``.
Neighbours are addressed by service name.

Swarm spreads the peers over the nodes, so the peers share no file system: each
writes its logs to a private tmpfs at /logs and, when it exits, uploads them
(``--upload collector:<port>``, peer/upload.py) to the ``collector`` service
(peer/collector.py), which is pinned to one node and bind-mounts the run's log
directory there.

An overlay network gets a /24 from the swarm's default pool (about 250
addresses, fewer with many nodes, half as many in VIP mode where every service
takes one more), so above ``max_per_network`` peers the services are spread over
several overlays with generator.render.assign_networks; the collector joins all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from generator.render import (
    IMAGE,
    PEER_LABEL,
    RUN_LABEL,
    PeerService,
    RenderError,
    assign_networks,
    service_name,
    template_environment,
)

ROLE_LABEL = "p2p.role"
COLLECTOR_SERVICE = "collector"
COLLECTOR_PORT = 7999
ENDPOINT_MODES = ("dnsrr", "vip")
MAX_PER_OVERLAY = 200
_STACK_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SIZE_RE = re.compile(r"^([0-9]+)([kmg]?)b?$", re.IGNORECASE)


def collector_address(port: int = COLLECTOR_PORT) -> str:
    """Where peers upload: the collector's service name on the stack's networks."""
    return f"{COLLECTOR_SERVICE}:{port}"


def size_bytes(size: str | int) -> int:
    """``"64m"`` -> 67108864 (k, m, g are powers of 1024; a bare number is bytes)."""
    if isinstance(size, int):
        return size
    m = _SIZE_RE.match(str(size).strip())
    if not m:
        raise RenderError(f"cannot read size {size!r} (expected e.g. 64m, 512k, 1g or bytes)")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def render_stack(
    stack: str,
    run_id: str,
    peers: Sequence[PeerService],
    log_dir: str,
    user: tuple[int, int],
    *,
    collector_node: str | None = None,
    collector_port: int = COLLECTOR_PORT,
    collector_timeout: float | None = None,
    image: str = IMAGE,
    mem_limit: str = "64m",
    pids_limit: int = 64,
    tmpfs_size: str | int = "64m",
    endpoint_mode: str = "dnsrr",
    internal: bool = True,
    stop_grace: str = "5s",
    max_per_network: int = MAX_PER_OVERLAY,
    title: str = "",
) -> str:
    """The stack file text for these peers.

    ``peers`` carry their full ``python -m peer`` command lines (with ``--log-dir /logs``
    and ``--upload collector:<port>``). ``log_dir`` is the absolute host path of the
    run's log directory on the collector's node ``collector_node`` (a swarm node id;
    None pins the collector to a manager instead).
    """
    if not _STACK_RE.match(stack):
        raise RenderError(f"invalid stack name {stack!r} (lower case letters, digits, - and _)")
    if not peers:
        raise RenderError("no peers to render")
    ids = [p.id for p in peers]
    if len(set(ids)) != len(ids):
        raise RenderError("duplicate peer ids")
    if endpoint_mode not in ENDPOINT_MODES:
        raise RenderError(f"endpoint mode must be one of {', '.join(ENDPOINT_MODES)}, got {endpoint_mode!r}")
    if not log_dir.startswith("/"):
        raise RenderError(f"the collector's log directory must be an absolute path, got {log_dir!r}")
    networks = assign_networks({p.id: p.neighbours for p in peers}, max_per_network)
    net_count = 1 + max(k for nets in networks.values() for k in nets)
    collector_command = ["--listen", f"0.0.0.0:{collector_port}", "--out", "/logs", "--peers", str(len(peers))]
    if collector_timeout is not None:
        collector_command += ["--timeout", f"{collector_timeout:g}"]
    return template_environment().get_template("stack.yml.j2").render(
        stack=stack,
        run_id=run_id,
        title=title or stack,
        peers=sorted(peers, key=lambda p: p.id),
        service_name=service_name,
        peer_networks={p: [f"net{k}" for k in nets] for p, nets in networks.items()},
        network_names=[f"net{k}" for k in range(net_count)],
        collector_service=COLLECTOR_SERVICE,
        collector_command=collector_command,
        collector_constraint=f"node.id == {collector_node}" if collector_node else "node.role == manager",
        log_dir=log_dir,
        user=f"{user[0]}:{user[1]}",
        image=image,
        mem_limit=mem_limit,
        pids_limit=pids_limit,
        tmpfs_bytes=size_bytes(tmpfs_size),
        endpoint_mode=endpoint_mode,
        internal=internal,
        stop_grace=stop_grace,
        run_label=RUN_LABEL,
        peer_label=PEER_LABEL,
        role_label=ROLE_LABEL,
    )


def stack_name(run_id: str, limit: int = 40) -> str:
    """A stack name for a run: ``p2p-<run-id>`` normalised, shortened (with a hash) past ``limit``
    characters so that ``<stack>_peer-<i>`` stays a valid service name (63 at most)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", f"p2p-{run_id}".lower()).strip("-_")
    if len(name) > limit:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        name = f"{name[: limit - 9].rstrip('-_')}-{digest}"
    return name


def default_stack_path(root: Path, name: str) -> Path:
    """``<root>/compose/<name>.stack.yml``: where the swarm runner writes (compose/ is data, not a package)."""
    return Path(root) / "compose" / f"{name}.stack.yml"
