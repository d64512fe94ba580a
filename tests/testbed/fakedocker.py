"""One fake Docker client for the unit tests of the Compose and Swarm backends (no engine).

It holds containers, networks, volumes and -- once it is a swarm manager -- services,
their tasks and the swarm's nodes, and answers the docker-py calls that testbed/compose.py
and testbed/swarm.py make: ``containers/networks/volumes/services.list(filters=...)``,
``.remove()``, ``.kill()``, ``.logs()``, ``images.get``, ``ping``, ``info()["Swarm"]``,
``api.tasks(filters={"service": [...]})`` and ``nodes.get(id).attrs["Description"]["Hostname"]``.

Nothing moves by itself: ``script(client, tick)`` is called before each listing of a kind
in ``ticks_on`` (containers, for the Compose runner's polls; tasks, for the Swarm runner's),
with ``tick`` counting those listings -- a run advances with the runner's own polls, no clock.
The real engine's behaviour is what the docker-marked tests check.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Iterable

import docker.errors

# Task states whose task had a container (docker service ps); the rest never ran one.
RAN_STATES = frozenset({"running", "complete", "failed", "shutdown", "orphaned", "remove"})


class FakeObj:
    """A container, network, volume or service: labels, a state, an exit code, output."""

    def __init__(self, kind: str, store: FakeClient, name: str, labels: dict[str, str]):
        self.kind, self.store, self.name, self.labels = kind, store, name, dict(labels)
        self.id = f"{kind}-{name}"
        self.status, self.exit_code, self.output = "created", 0, b""
        self.remove_error: Exception | None = None  # this object refuses removal (e.g. a busy network)

    @property
    def attrs(self) -> dict:
        if self.kind == "container":
            if self.store.sparse_view:
                return {"Id": self.id, "Labels": self.labels, "State": self.status}
            return {"Id": self.id, "Config": {"Labels": self.labels},
                    "State": {"Status": self.status, "ExitCode": self.exit_code}}
        if self.kind == "service":  # a service keeps its labels in its spec
            return {"ID": self.id, "Spec": {"Name": self.name, "Labels": self.labels}}
        return {"Id": self.id, "Name": self.name, "Labels": self.labels}

    def remove(self, **kwargs) -> None:
        if self.store.fail_remove:
            raise docker.errors.APIError("remove refused")
        if self.remove_error is not None:
            raise self.remove_error
        if self not in self.store.objects[self.kind]:
            raise docker.errors.NotFound(f"{self.kind} {self.name} not found")
        self.store.objects[self.kind].remove(self)
        self.store.removed.append(self.name)
        if self.kind == "service":  # its tasks go with it (its containers are the script's business)
            self.store.task_list = [t for t in self.store.task_list if t["ServiceID"] != self.id]

    def kill(self, signal="SIGKILL") -> None:
        if self.status != "running":
            raise docker.errors.APIError(f"container {self.name} is not running")
        self.status, self.exit_code = "exited", 0
        self.store.killed.append(self.name)

    def logs(self, stdout=True, stderr=True, **kwargs) -> bytes | Iterable[bytes]:
        """A container's output at once; a service's as a stream of chunks (as docker-py gives them)."""
        if self.kind == "service":
            if self.store.logs_error is not None:
                raise self.store.logs_error
            return iter([self.output])
        return self.output


class FakeCollection:
    """``client.<kind>s``: list by label (``key`` or ``key=value``), as the engine filters."""

    def __init__(self, store: FakeClient, kind: str):
        self.store, self.kind = store, kind

    def list(self, all=False, filters=None, sparse=False):
        self.store.on_list(self.kind)
        self.store.sparse_view = sparse
        return self.store.matching(self.kind, (filters or {}).get("label"))


class FakeServices(FakeCollection):
    """``client.services``: only a swarm manager has any."""

    def list(self, filters=None, **kwargs):
        if not self.store.is_manager():
            raise docker.errors.APIError("This node is not a swarm manager.")
        self.store.on_list("service")
        return self.store.matching("service", (filters or {}).get("label"))


class FakeAPI:
    """``client.api``: the low-level task listing."""

    def __init__(self, store: FakeClient):
        self.store = store

    def tasks(self, filters=None) -> list[dict]:
        """Tasks of the services named in ``filters["service"]`` (ids or names), every task otherwise."""
        store = self.store
        wanted = (filters or {}).get("service")
        store.task_queries.append(list(wanted) if wanted is not None else None)
        store.on_list("task")
        if wanted is None:
            return [dict(t) for t in store.task_list]
        names = {s.id: s.name for s in store.objects["service"]}
        return [dict(t) for t in store.task_list
                if t["ServiceID"] in wanted or names.get(t["ServiceID"]) in wanted]


class FakeNodes:
    """``client.nodes.get(id)``: a node with its host name, NotFound for an unknown id;
    ``client.nodes.list()``: every named node with its state (``node_states``, default ready)."""

    def __init__(self, store: FakeClient):
        self.store = store

    def _node(self, node_id: str):
        return types.SimpleNamespace(id=node_id, attrs={
            "ID": node_id, "Description": {"Hostname": self.store.node_names[node_id]},
            "Status": {"State": self.store.node_states.get(node_id, "ready")}})

    def get(self, node_id: str):
        if node_id not in self.store.node_names:
            raise docker.errors.NotFound(f"node {node_id} not found")
        return self._node(node_id)

    def list(self, **kwargs):
        return [self._node(i) for i in self.store.node_names]


class FakeClient:
    """Holds containers/networks/volumes (and, as a swarm manager, services, tasks and nodes);
    ``script(client, tick)`` moves the simulated run forward on each listing of a kind in ``ticks_on``.

    ``swarm``: the ``info()["Swarm"]`` section (None: not in a swarm, so ``services.list`` fails
    as the engine does).
    """

    def __init__(self, swarm: dict | None = None):
        self.objects: dict[str, list[FakeObj]] = {"container": [], "network": [], "volume": [], "service": []}
        self.containers = FakeCollection(self, "container")
        self.networks = FakeCollection(self, "network")
        self.volumes = FakeCollection(self, "volume")
        self.services = FakeServices(self, "service")
        self.images = types.SimpleNamespace(get=self.get_image)
        self.api = FakeAPI(self)
        self.nodes = FakeNodes(self)
        self.swarm = swarm
        self.image_names = {"p2p-peer:latest"}
        self.node_names: dict[str, str] = {}  # node id -> host name
        self.node_states: dict[str, str] = {}  # node id -> swarm state (ready unless set)
        self.task_list: list[dict] = []  # every task of every service, as the engine stores them
        self.task_queries: list[list[str] | None] = []  # the service ids of each api.tasks call
        self.versions = itertools.count(1)  # the swarm store's version index: every task change bumps it
        self.sparse_view = False
        self.ignore_filters = False
        self.fail_remove = False
        self.removed: list[str] = []
        self.killed: list[str] = []
        self.ticks = 0
        self.ticks_on = frozenset({"container", "task"})
        self.script: Callable[[FakeClient, int], None] | None = None
        self.list_error: Exception | None = None
        self.logs_error: Exception | None = None

    # -- engine calls ------------------------------------------------------------------------

    def info(self) -> dict:
        return {"Swarm": self.swarm if self.swarm is not None else {"LocalNodeState": "inactive",
                                                                    "ControlAvailable": False}}

    def get_image(self, name: str) -> str:
        if name not in self.image_names:
            raise docker.errors.ImageNotFound(name)
        return name

    def ping(self):
        return True

    def close(self):
        self.closed = True

    # -- the store ---------------------------------------------------------------------------

    def is_manager(self) -> bool:
        swarm = self.swarm or {}
        return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))

    def add(self, kind: str, name: str, labels: dict[str, str]) -> FakeObj:
        obj = FakeObj(kind, self, name, labels)
        self.objects[kind].append(obj)
        return obj

    def matching(self, kind: str, label: str | None) -> list[FakeObj]:
        """Objects of ``kind`` carrying ``label`` (``key`` or ``key=value``); all when filters are ignored."""
        out = []
        for obj in list(self.objects[kind]):
            if label and not self.ignore_filters:
                key, _, value = label.partition("=")
                if key not in obj.labels or (value and obj.labels[key] != value):
                    continue
            out.append(obj)
        return out

    def on_list(self, kind: str) -> None:
        if kind == "container" and self.list_error is not None:
            raise self.list_error
        if kind in self.ticks_on:
            self.ticks += 1
            if self.script:
                self.script(self, self.ticks)

    def labelled(self, run_id: str) -> list[str]:
        return [o.name for objs in self.objects.values() for o in objs if o.labels.get("p2p.run") == run_id]

    # -- swarm tasks -------------------------------------------------------------------------

    def add_task(self, service: FakeObj, state: str = "new", *, exit_code: int | None = None, err: str = "",
                 node: str = "node-1") -> dict:
        """A new task of ``service`` (a restart adds one; the newest has the highest Version.Index)."""
        task = {"ID": f"task-{len(self.task_list) + 1}", "ServiceID": service.id, "NodeID": node,
                "Version": {"Index": 0}, "Status": {}}
        self.task_list.append(task)
        return self.set_task(task, state, exit_code=exit_code, err=err)

    def set_task(self, task: dict, state: str, *, exit_code: int | None = None, err: str = "") -> dict:
        """Move ``task`` to ``state``; a task that ran has a container (exit code 0 unless given)."""
        status: dict = {"State": state, "Err": err}
        if state in RAN_STATES or exit_code is not None:
            status["ContainerStatus"] = {"ContainerID": f"ctr-{task['ID']}", "ExitCode": exit_code or 0}
        else:  # rejected or not yet started: no container
            status["ContainerStatus"] = {"ContainerID": "", "ExitCode": 0}
        task["Status"] = status
        task["Version"] = {"Index": next(self.versions)}
        return task

    def latest_task(self, service: FakeObj) -> dict | None:
        tasks = [t for t in self.task_list if t["ServiceID"] == service.id]
        return max(tasks, key=lambda t: t["Version"]["Index"]) if tasks else None
