"""Several Docker engines on one machine, joined into one swarm: the multi-host harness.

Each node is a container of the node image (``p2p-node:latest``, docker/build-node-image.sh:
Debian bookworm's own ``dockerd``, built offline like the peer image) running its own
engine, with its data root on a Docker volume (ext4 on the host, so the nested engine uses
overlay2 instead of copying every layer as vfs would). The nodes sit on one bridge network
of their own; node 1 is the swarm manager, the others join it over that network. The
host's engine only runs the node containers: its swarm stays inactive, its configuration,
bridges and sysctls are never touched.

The host reaches each node's engine through a Unix socket on a host directory bind-mounted
into the node (``/tmp/p2p-multihost/<cluster>/<node>/docker.sock``): no TCP port, nothing
unauthenticated on any network. p2p drives the manager exactly as it would drive a real
cluster: ``DOCKER_HOST=unix://.../docker.sock p2p run --backend swarm ...``.

The swarm runner's log collector runs on the manager and bind-mounts the run's log
directory there, so the runner must run where the manager's disk holds ``runs/``
(docs/backends.md, "Logs on a swarm"). On a real cluster that means running p2p on the
manager; here the directories named by ``share`` are bind-mounted into the manager node
at the same path, which makes it true.

Everything the harness creates (node containers, their volumes, the network) carries the
label ``p2p.run=<cluster id>``; ``down`` removes it by that label, also after a failed
``up``, and ``p2p clean`` removes a forgotten cluster like any other leftover.

    python -m testbed.multihost up --nodes 3          # prints the cluster id and DOCKER_HOST
    python -m testbed.multihost down CLUSTER_ID
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
from generator.errors import P2PError
from generator.render import IMAGE, RUN_LABEL
from testbed.base import Progress, RunnerError
from testbed.engine import DOCKER_ERRORS, DOCKER_TIMEOUT, REPO_ROOT, clean_by_label, docker_client, list_labelled

NODE_IMAGE = "p2p-node:latest"
NODE_BUILD_SCRIPT = REPO_ROOT / "docker" / "build-node-image.sh"
STATE_ROOT = Path("/tmp/p2p-multihost")  # short: a Unix socket path has at most 107 bytes
NODE_SOCKET_DIR = "/run/p2p-node"  # where a node's host directory (and its engine's socket) is mounted
ROLE_LABEL = "p2p.multihost"  # node-1, node-2, ... or network
ENGINE_WAIT = 90.0  # seconds for a node's engine to answer after its container started
READY_WAIT = 90.0  # seconds for every node to be Ready in the swarm
# Swarm marks a node down when its heartbeats stop for a few periods (default period 5 s), and
# then shuts down every task of it for good, even when the node is back a moment later. On a
# loaded machine (hundreds of tasks on 2 cores) a node's agent missed that and whole runs lost
# their workers' peers; 20 s tolerates it, at the price of noticing a node that left later.
HEARTBEAT_PERIOD = 20.0
# Not --privileged: runc refuses a privileged container on an engine without CAP_SYS_RESOURCE
# (so on this project's machines). Every other capability, no seccomp/AppArmor confinement and
# every device is what the nested engine needs; the entry point makes the cgroup mounts and
# /proc/sys/net (the node's own network namespace) writable; /sys and the rest of /proc/sys stay
# read-only (the kernel-wide settings).
NODE_SECURITY = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "device_cgroup_rules": ["a *:* rwm"],
}


class HarnessError(P2PError):
    """The cluster could not be made, changed or removed; the message says what and why."""


@dataclass(frozen=True)
class Node:
    """One node: its container (and swarm host) name, and its engine's socket on the host."""

    name: str
    socket: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


@dataclass(frozen=True)
class Cluster:
    """A swarm of node containers; node 1 is the manager. ``cluster_id`` labels all of it."""

    cluster_id: str
    nodes: tuple[Node, ...]
    network: str

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def env(self) -> dict[str, str]:
        """What a shell needs to drive the manager: ``DOCKER_HOST``."""
        return {"DOCKER_HOST": self.manager.url}

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise HarnessError(f"cluster {self.cluster_id} has no node {name}")


def state_dir(cluster_id: str) -> Path:
    return STATE_ROOT / cluster_id


def node_client(node: Node, timeout: float = DOCKER_TIMEOUT) -> docker.DockerClient:
    return docker.DockerClient(base_url=node.url, timeout=timeout)


def new_cluster_id() -> str:
    return "mh-" + secrets.token_hex(3)


def plan_cluster(cluster_id: str, n_nodes: int) -> Cluster:
    """Names and socket paths of a cluster of ``n_nodes`` (nothing is created)."""
    nodes = tuple(Node(f"{cluster_id}-node-{i}", state_dir(cluster_id) / f"node-{i}" / "docker.sock")
                  for i in range(1, n_nodes + 1))
    return Cluster(cluster_id=cluster_id, nodes=nodes, network=f"{cluster_id}-net")


def ensure_node_image(progress: Progress, script: Path = NODE_BUILD_SCRIPT) -> None:
    """Build the node image when its sources changed (offline, docker/build-node-image.sh)."""
    out = subprocess.run(["bash", str(script), "--tag", NODE_IMAGE], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=1200)
    for line in (out.stdout + out.stderr).splitlines():
        progress.message(line)
    if out.returncode != 0:
        raise HarnessError(f"building {NODE_IMAGE} failed ({script} exit {out.returncode}; output above)")


def _start_node(host, cluster: Cluster, index: int, share: Sequence[Path], storage_driver: str) -> None:
    node = cluster.nodes[index]
    labels = {RUN_LABEL: cluster.cluster_id, ROLE_LABEL: f"node-{index + 1}"}
    volume = host.volumes.create(name=f"{node.name}-data", labels=labels)
    node.socket.parent.mkdir(parents=True, exist_ok=True)
    volumes = {volume.name: {"bind": "/var/lib/docker", "mode": "rw"},
               str(node.socket.parent): {"bind": NODE_SOCKET_DIR, "mode": "rw"}}
    if index == 0:  # the collector's bind mounts are made on the manager: it must see runs/ at the same path
        volumes.update({str(p): {"bind": str(p), "mode": "rw"} for p in share})
    host.containers.run(
        NODE_IMAGE, detach=True, name=node.name, hostname=node.name, labels=labels, network=cluster.network,
        volumes=volumes, environment={"P2P_NODE_SOCKET_DIR": NODE_SOCKET_DIR,
                                      "P2P_NODE_STORAGE_DRIVER": storage_driver},
        **NODE_SECURITY,
    )


def wait_for_engine(host, node: Node, timeout: float = ENGINE_WAIT) -> docker.DockerClient:
    """A client of ``node``'s engine once it answers; ``HarnessError`` (with its log) if it never does."""
    end = time.monotonic() + timeout
    while True:
        if node.socket.exists():
            try:  # the client asks the engine for its API version as it is made
                client = node_client(node)
            except DOCKER_ERRORS:
                client = None
            if client is not None:
                try:
                    client.ping()
                    return client
                except DOCKER_ERRORS:
                    client.close()
        container = host.containers.get(node.name)
        if container.status == "exited" or time.monotonic() > end:
            tail = container.logs(tail=15).decode(errors="replace")
            raise HarnessError(f"the engine of node {node.name} did not answer within {timeout:g} s "
                               f"(container {container.status}); its log:\n{tail}")
        time.sleep(0.5)


def node_ip(host, cluster: Cluster, node: Node) -> str:
    attrs = host.containers.get(node.name).attrs
    return attrs["NetworkSettings"]["Networks"][cluster.network]["IPAddress"]


def form_swarm(host, cluster: Cluster, clients: Sequence[docker.DockerClient]) -> None:
    """Node 1 initialises the swarm, the others join it as workers; wait until all are Ready."""
    clients[0].swarm.init(advertise_addr="eth0", listen_addr="0.0.0.0:2377",
                          dispatcher_heartbeat_period=int(HEARTBEAT_PERIOD * 1e9))
    token = clients[0].swarm.attrs["JoinTokens"]["Worker"]
    manager = f"{node_ip(host, cluster, cluster.manager)}:2377"
    for client in clients[1:]:
        client.swarm.join(remote_addrs=[manager], join_token=token, advertise_addr="eth0",
                          listen_addr="0.0.0.0:2377")
    end = time.monotonic() + READY_WAIT
    while True:
        states = {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in clients[0].nodes.list()}
        if len(states) == len(clients) and set(states.values()) == {"ready"}:
            return
        if time.monotonic() > end:
            raise HarnessError(f"swarm nodes not ready within {READY_WAIT:g} s: {states}")
        time.sleep(0.5)


def up(n_nodes: int, *, share: Iterable[Path] = (), cluster_id: str | None = None, storage_driver: str = "overlay2",
       progress: Progress | None = None, host=None) -> Cluster:
    """Start ``n_nodes`` node containers and join them into one swarm (node 1 the manager).

    ``share``: host directories bind-mounted into the manager at the same path (the runs
    directory). On any failure, Ctrl-C included, everything made so far is removed again.
    """
    progress = progress or Progress()
    if n_nodes < 1:
        raise HarnessError("a cluster needs at least one node")
    host = host or docker_client()
    cluster = plan_cluster(cluster_id or new_cluster_id(), n_nodes)
    shared = [Path(p).resolve() for p in share]
    t0 = time.monotonic()
    try:
        # internal: no route out of the machine. A node missing an image tries to pull it from a
        # registry; it must fail at once, and never send traffic anywhere but to the other nodes.
        host.networks.create(cluster.network, driver="bridge", internal=True,
                             labels={RUN_LABEL: cluster.cluster_id, ROLE_LABEL: "network"})
        for i in range(n_nodes):
            _start_node(host, cluster, i, shared, storage_driver)
        clients = [wait_for_engine(host, node) for node in cluster.nodes]
        progress.message(f"multihost: {n_nodes} engine(s) up in {time.monotonic() - t0:.1f} s")
        form_swarm(host, cluster, clients)
        for c in clients:
            c.close()
    except BaseException as e:
        try:
            down(cluster.cluster_id, host=host)
        except (HarnessError, RunnerError, *DOCKER_ERRORS) as cleanup:
            raise HarnessError(f"{e}; then removing {cluster.cluster_id} failed too: {cleanup}") from e
        raise
    progress.message(f"multihost: swarm {cluster.cluster_id} of {n_nodes} node(s) ready in "
                     f"{time.monotonic() - t0:.1f} s; manager {cluster.manager.name}")
    return cluster


def down(cluster_id: str, *, host=None) -> dict[str, int]:
    """Remove every container, network and volume labelled ``p2p.run=<cluster_id>`` and the
    cluster's socket directories; counts removed. Works on a half-made cluster too."""
    if not cluster_id.startswith("mh-"):
        raise HarnessError(f"{cluster_id!r} is not a cluster id of this harness (they start with mh-)")
    host = host or docker_client()
    try:
        removed = clean_by_label(host, cluster_id)
    finally:
        shutil.rmtree(state_dir(cluster_id), ignore_errors=True)
    left = list_labelled(host, cluster_id)
    if left:
        raise HarnessError(f"cluster {cluster_id}: still there after removal: {', '.join(left)}")
    return removed


def find_cluster(cluster_id: str, host=None) -> Cluster:
    """The running cluster ``cluster_id``, from its labelled node containers."""
    host = host or docker_client()
    containers = host.containers.list(all=True, filters={"label": [f"{RUN_LABEL}={cluster_id}", ROLE_LABEL]})
    if not containers:
        raise HarnessError(f"no cluster {cluster_id} (no container labelled {RUN_LABEL}={cluster_id})")
    return plan_cluster(cluster_id, len(containers))


def copy_image(cluster: Cluster, image: str = IMAGE, nodes: Iterable[Node] | None = None,
               run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> float:
    """``docker save IMAGE | docker exec -i NODE docker load`` for each node (the documented
    ``| ssh NODE docker load``, with exec for ssh); seconds taken."""
    t0 = time.monotonic()
    for node in cluster.nodes if nodes is None else nodes:
        cmd = f"docker save {image} | docker exec -i {node.name} docker load"
        out = run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=600,
                  stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise HarnessError(f"`{cmd}` failed (exit {out.returncode}): {out.stderr.strip()[-300:]}")
    return time.monotonic() - t0


def leftovers(cluster: Cluster, run_id: str) -> dict[str, list[str]]:
    """Per node: what is still labelled ``p2p.run=<run_id>`` in its engine (services on the manager)."""
    out = {}
    for node in cluster.nodes:
        client = node_client(node, timeout=60)
        try:
            left = list_labelled(client, run_id)
        finally:
            client.close()
        if left:
            out[node.name] = left
    return out


def node_memory(cluster: Cluster, host=None) -> dict[str, int]:
    """Per node: bytes of memory its container uses now (its engine and everything in it),
    as `docker stats` counts it: usage less page cache."""
    host = host or docker_client()
    out = {}
    for node in cluster.nodes:
        stats = host.containers.get(node.name).stats(stream=False)["memory_stats"]
        out[node.name] = int(stats.get("usage", 0)) - int((stats.get("stats") or {}).get("cache", 0))
    return out


def leave(cluster: Cluster, node: Node, host=None) -> None:
    """The node vanishes, as a machine that loses power: its container is killed (not removed)."""
    host = host or docker_client()
    host.containers.get(node.name).kill()


def restart_engine(cluster: Cluster, node: Node, host=None) -> docker.DockerClient:
    """Restart the node's engine (its container); a client once it answers again."""
    host = host or docker_client()
    host.containers.get(node.name).restart(timeout=10)
    return wait_for_engine(host, node)


# -- CLI -------------------------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace, progress: Progress) -> int:
    ensure_node_image(progress)
    share = args.share or [Path("runs")]
    for p in share:
        p.mkdir(parents=True, exist_ok=True)
    cluster = up(args.nodes, share=share, storage_driver=args.storage_driver, progress=progress)
    if args.image:
        try:
            seconds = copy_image(cluster, args.image)
        except BaseException:
            down(cluster.cluster_id)
            raise
        progress.message(f"multihost: {args.image} copied to {len(cluster.nodes)} node(s) in {seconds:.1f} s")
    print(json.dumps({"cluster": cluster.cluster_id, "nodes": [n.name for n in cluster.nodes],
                      "DOCKER_HOST": cluster.manager.url}))
    print(f"export DOCKER_HOST={cluster.manager.url}    # then: p2p run --backend swarm ...", file=sys.stderr)
    print(f"remove it with: python -m testbed.multihost down {cluster.cluster_id}", file=sys.stderr)
    return 0


def _cmd_down(args: argparse.Namespace, progress: Progress) -> int:
    removed = down(args.cluster)
    progress.message(f"multihost: removed {removed['containers']} node(s), {removed['networks']} network(s), "
                     f"{removed['volumes']} volume(s) of {args.cluster}")
    return 0


def _cmd_status(args: argparse.Namespace, progress: Progress) -> int:
    cluster = find_cluster(args.cluster)
    client = node_client(cluster.manager, timeout=30)
    try:
        for n in client.nodes.list():
            attrs = n.attrs
            print(f"{attrs['Description']['Hostname']}  {attrs['Spec']['Role']}  {attrs['Status']['State']}")
    finally:
        client.close()
    print(f"DOCKER_HOST={cluster.manager.url}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed.multihost",
                                description="Several Docker engines on this machine, joined into one swarm, "
                                            "to run `p2p run --backend swarm` across nodes (docs/backends.md).")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="start a cluster; prints its id and DOCKER_HOST")
    u.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3); node 1 is the manager")
    u.add_argument("--share", type=Path, action="append",
                   help="host directory mounted into the manager at the same path (default ./runs), repeatable")
    u.add_argument("--image", default=IMAGE, help=f"image copied to every node (default {IMAGE}; '' for none)")
    u.add_argument("--storage-driver", default="overlay2",
                   help="the nodes' storage driver (default overlay2; vfs works anywhere but copies every layer)")
    d = sub.add_parser("down", help="remove a cluster (everything labelled p2p.run=CLUSTER)")
    d.add_argument("cluster")
    s = sub.add_parser("status", help="the nodes of a cluster and its DOCKER_HOST")
    s.add_argument("cluster")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = Progress()
    commands = {"up": _cmd_up, "down": _cmd_down, "status": _cmd_status}
    try:
        return commands[args.command](args, progress)
    except (P2PError, RunnerError) as e:
        print(f"multihost: error: {e}", file=sys.stderr)
        return 2
    except DOCKER_ERRORS as e:
        print(f"multihost: error: Docker said: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
