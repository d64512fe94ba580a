"""Render a run as a Docker Compose file: one hardened service per peer.

Pure text generation (Jinja2): nothing here talks to Docker or imports the testbed.
The caller supplies each peer's ``python -m peer`` arguments (``RunPlan.peer_args``
stays the single place that knows them), its neighbours and the bind-mount path of
the log directory relative to the compose file.

A Linux bridge takes about 1023 ports, so above ``max_per_network`` peers the
services are spread over several bridge networks: peers are cut into contiguous
blocks, block k's home network is ``net<k>``, and every peer joins its own home
network and the home network of each of its neighbours. Both ends of every edge
then share at least the lower end's home network, where the service name resolves.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from generator.errors import P2PError

IMAGE = "p2p-peer:latest"
RUN_LABEL = "p2p.run"
PEER_LABEL = "p2p.peer"
IMPL_LABEL = "p2p.impl"
MAX_PER_NETWORK = 1000
CONTAINER_UID = 10001
_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class RenderError(P2PError):
    """The run cannot be expressed as a compose file."""


@dataclass(frozen=True)
class PeerService:
    """One peer as a compose service: its neighbours and its full peer command line."""

    id: int
    neighbours: tuple[int, ...]
    command: tuple[str, ...]
    # Another implementation's peer (generator/adapter.py): its image and program (the entrypoint),
    # its environment, where it writes its logs inside the container, and its name (a label).
    image: str = ""
    entrypoint: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    log_target: str = "/logs"
    implementation: str = ""


def service_name(peer: int) -> str:
    return f"peer-{peer}"


def project_name(text: str) -> str:
    """A valid compose project name from any run or spec name (lower case, [a-z0-9_-])."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    if not name or not _PROJECT_RE.match(name):
        raise RenderError(f"cannot make a compose project name from {text!r}")
    return name


def container_user(uid: int | None = None, gid: int | None = None) -> tuple[int, int]:
    """The invoking user, or the image's unprivileged 10001:10001 when invoked as root."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    return (CONTAINER_UID, CONTAINER_UID) if uid == 0 else (uid, gid)


def assign_networks(
    neighbours: Mapping[int, Iterable[int]], max_per_network: int = MAX_PER_NETWORK
) -> dict[int, tuple[int, ...]]:
    """Peer -> indices of the networks it joins; a single network 0 up to ``max_per_network`` peers.

    Raises ``RenderError`` when no split keeps every network at or below
    ``max_per_network`` members (a graph too dense to spread over bridges).
    """
    peers = sorted(neighbours)
    n = len(peers)
    if n <= max_per_network:
        return {p: (0,) for p in peers}
    index = {p: i for i, p in enumerate(peers)}
    blocks = -(-n // max_per_network)
    while blocks <= n:
        size = -(-n // blocks)
        home = {p: index[p] // size for p in peers}
        joined = {p: tuple(sorted({home[p], *(home[q] for q in neighbours[p])})) for p in peers}
        members: dict[int, int] = {}
        for nets in joined.values():
            for k in nets:
                members[k] = members.get(k, 0) + 1
        if max(members.values()) <= max_per_network:
            return joined
        blocks += 1
    raise RenderError(f"cannot spread {n} peers over bridge networks of at most {max_per_network} members")


def _yaml_str(value: object) -> str:
    """A double-quoted YAML scalar (JSON strings are valid YAML); ``$`` escaped for compose."""
    return json.dumps(str(value)).replace("$", "$$")


def template_environment() -> Environment:
    """The Jinja2 environment of generator/templates, with ``q`` quoting YAML scalars."""
    env = Environment(
        loader=PackageLoader("generator", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = _yaml_str
    return env


def render_compose(
    project: str,
    run_id: str,
    peers: Sequence[PeerService],
    log_dir: str,
    user: tuple[int, int],
    *,
    image: str = IMAGE,
    mem_limit: str = "64m",
    pids_limit: int = 64,
    max_per_network: int = MAX_PER_NETWORK,
    title: str = "",
) -> str:
    """The compose file text for these peers.

    ``log_dir`` is the host directory bind-mounted at /logs, relative to the compose
    file's directory (so the tree can move) or absolute.
    """
    if not _PROJECT_RE.match(project):
        raise RenderError(f"invalid compose project name {project!r} (lower case letters, digits, - and _)")
    if not peers:
        raise RenderError("no peers to render")
    ids = [p.id for p in peers]
    if len(set(ids)) != len(ids):
        raise RenderError("duplicate peer ids")
    networks = assign_networks({p.id: p.neighbours for p in peers}, max_per_network)
    net_count = 1 + max(k for nets in networks.values() for k in nets)
    return template_environment().get_template("compose.yml.j2").render(
        project=project,
        run_id=run_id,
        title=title or project,
        peers=sorted(peers, key=lambda p: p.id),
        service_name=service_name,
        peer_networks={p: [f"net{k}" for k in nets] for p, nets in networks.items()},
        network_names=[f"net{k}" for k in range(net_count)],
        log_dir=log_dir if log_dir.startswith(("/", ".")) else f"./{log_dir}",
        user=f"{user[0]}:{user[1]}",
        image=image,
        mem_limit=mem_limit,
        pids_limit=pids_limit,
        run_label=RUN_LABEL,
        peer_label=PEER_LABEL,
        impl_label=IMPL_LABEL,
    )


def default_compose_path(root: Path, name: str) -> Path:
    """``<root>/compose/<name>.yml``: where ``p2p render`` writes (compose/ is data, not a package)."""
    return Path(root) / "compose" / f"{name}.yml"


def write_compose(text: str, path: Path) -> Path:
    """Write the compose text atomically to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_env(root: Path, compose_file: Path, project: str) -> Path:
    """Point plain ``docker compose`` run in ``root`` at ``compose_file``: set COMPOSE_FILE and
    COMPOSE_PROJECT_NAME in ``<root>/.env``, keeping any other line of an existing file."""
    root = Path(root)
    env_path = root / ".env"
    rel = os.path.relpath(Path(compose_file).resolve(), root.resolve())
    ours = {"COMPOSE_FILE": rel, "COMPOSE_PROJECT_NAME": project}
    lines: list[str] = []
    try:
        lines = [
            line for line in env_path.read_text().splitlines()
            if line.partition("=")[0].strip().removeprefix("export ").strip() not in ours
        ]
    except FileNotFoundError:
        pass
    lines += [f"{k}={v}" for k, v in ours.items()]
    tmp = env_path.with_name(f".env.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, env_path)
    return env_path
