"""The Docker engine as the container backends see it: a client that answered a ping, the
Compose CLI check, the peer image, and objects found and removed by their ``p2p.run`` label.

Nothing here knows Compose projects or swarm stacks; ``testbed.compose`` and
``testbed.swarm`` both build on it (and ``p2p clean``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import docker.errors
import requests

import docker
from generator.render import RUN_LABEL
from testbed.base import Progress, RunnerError

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "docker" / "build-image.sh"
ENSURE_COMPOSE_HINT = "install it with docker/ensure-compose.sh (or use --backend local)"
DOCKER_TIMEOUT = 300  # seconds per engine API call: listing 1000 containers under load takes long
# An engine that does not answer a ping within this is taken as absent: a wedged daemon must
# make a run (or CI) fail at once, not hang for DOCKER_TIMEOUT on every call.
PING_TIMEOUT = float(os.environ.get("P2P_PING_TIMEOUT", "30"))
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


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


def ensure_image(client, image: str, build_script: Path | None, progress: Progress,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> None:
    """Build the peer image when its sources changed (docker/build-image.sh), streaming its output;
    without the script, the image must exist already."""
    if build_script is None or not Path(build_script).exists():
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as e:
            raise RunnerError(f"image {image} is missing and docker/build-image.sh is not here to build it") from e
        except DOCKER_ERRORS as e:
            raise RunnerError(f"cannot inspect image {image}: {e}") from e
        return
    try:
        proc = popen(
            ["bash", str(build_script), "--tag", image], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=Path(build_script).parent.parent,
        )
    except OSError as e:
        raise RunnerError(f"cannot run {build_script}: {e}") from e
    with proc:
        for line in proc.stdout:
            progress.message(line.rstrip("\n"))
        rc = proc.wait()
    if rc != 0:
        raise RunnerError(f"building image {image} failed ({build_script} exit {rc}; output above)")


def sparse_state(container) -> str:
    """A listed container's state: a string in sparse listings, a dict in full ones."""
    state = container.attrs.get("State")
    return state.get("Status", "") if isinstance(state, dict) else str(state or "")


def labels_of(obj) -> dict[str, str]:
    """An engine object's labels: a network's or sparse container's (top level), a service's
    (Spec) or an inspected container's (Config)."""
    attrs = obj.attrs
    spec, config = attrs.get("Spec") or {}, attrs.get("Config") or {}
    for labels in (attrs.get("Labels"), spec.get("Labels"), config.get("Labels")):
        if labels:
            return labels
    return {}


def _ours(obj, run_id: str | None) -> bool:
    labels = labels_of(obj)
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
