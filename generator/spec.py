"""The frozen run spec: everything needed to reproduce a run, serialised to spec.json.

``params`` holds the topology family's parameters and the protocol's (e.g. ``p`` of
``er``, ``fanout`` of ``gossip``), defaults filled in, as a sorted tuple of
``(key, value)`` pairs (lists become tuples); spec.json stores them as an object.
A spec whose family or protocol is randomised and that has no seed draws one, so
spec.json always replays the same graph and the same protocol choices.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import networkx as nx

from generator.adapter import Implementation
from generator.errors import SpecError, TopologyError
from generator.faults import Fault, exactly_predictable, surviving_graph
from generator.networks import link_latencies
from generator.topologies import FAMILIES, build_graph, parse_topology_params, show_param
from peer.config import DEFAULT_PORT, default_of, option_value, set_by, settable_options
from peer.emulation import SHAPE_KEYS, LinkShape, is_number, shape_problem, show_value
from peer.protocols import PROTOCOLS as _PROTOCOL_CLASSES

PROTOCOLS = tuple(_PROTOCOL_CLASSES)
# Protocol parameters and their defaults (all positive integers), e.g. {"gossip": {"fanout": 2}}.
PROTOCOL_PARAMS: dict[str, dict[str, int]] = {name: dict(cls.params) for name, cls in _PROTOCOL_CLASSES.items()}
DRAWS_FOR_CONNECTED = 20
# Where --latency-from takes each link's latency from: "distance" = length / 2/3 c (generator/networks.py).
LATENCY_SOURCES = ("distance",)
# The help of ``--latency-from`` (p2p run, render, sweep).
LATENCY_FROM_HELP = ("distance: each link's emulated one-way latency = its length / the speed of light in fibre, "
                     "2/3 c = 199,861.6 km/s (length from the network's data, else the great-circle distance "
                     "between its ends; for zoo:NAME and sndlib:NAME); replaces --latency, a --link-shape key wins")


@dataclass(frozen=True)
class PeerOptions:
    """Options handed to every peer: timing knobs (seconds), link emulation, and any other
    option of peer/config.py that no runner sets (``peer``, from ``--peer-option KEY=VALUE``).
    Defaults are the peer's own (peer/config.py)."""

    idle: float = default_of("idle")
    # None: the peer's default (60 s), or 1 s per peer when more (a thousand containers took
    # ~9 minutes to start here).
    link_deadline: float | None = None
    # None: the peer's default (900 s), or twice the link deadline plus 5 minutes when that is more.
    max_runtime: float | None = None
    # None: the peer's default (10 s), or N/10 s when more. At N = 1000 on fuse-overlayfs a peer's interpreter took
    # 20-30 s to get to its first dial, and acceptors cut such connections at 10 s while the
    # starved dialer still took them for up (and sent frames into them).
    handshake_timeout: float | None = None
    # Link emulation inside the peers (no netem here): every link, then per-edge overrides
    # spelled "u-v:latency=0.05,loss=0.1". Loss is seeded by the run's seed.
    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    bandwidth: float = 0.0
    link_shapes: tuple[str, ...] = ()
    # "distance": every link's latency is its length / the speed of light in fibre
    # (generator/networks.py), in place of ``latency``; a --link-shape key still wins.
    latency_from: str | None = None
    # Other peer options (``--peer-option``), as sorted (key, value) pairs of the option's type;
    # a mapping is accepted. spec.json has them as an object "peer", only when there are some.
    peer: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.link_shapes, str) or not isinstance(self.link_shapes, (list, tuple)):
            raise SpecError(f"link_shapes must be a list of U-V:KEY=VALUE,... items, got {self.link_shapes!r}")
        object.__setattr__(self, "link_shapes", tuple(self.link_shapes))  # a JSON list on load
        for key, flag in (("idle", "--idle"), ("link_deadline", "--link-deadline"),
                          ("max_runtime", "max_runtime"), ("handshake_timeout", "handshake_timeout")):
            value = getattr(self, key)
            if value is None and key != "idle":
                continue
            if not is_number(value) or not math.isfinite(value) or value <= 0:
                raise SpecError(f"{flag} must be a finite number > 0 (seconds), got {show_value(value)}")
        for key in SHAPE_KEYS:
            problem = shape_problem(key, getattr(self, key))
            if problem:
                raise SpecError(f"--{problem}")
        if self.latency_from is not None:
            if self.latency_from not in LATENCY_SOURCES:
                raise SpecError(f"--latency-from must be one of {', '.join(LATENCY_SOURCES)}, "
                                f"got {self.latency_from!r}")
            if self.latency:
                raise SpecError("--latency and --latency-from both given: --latency-from distance sets every "
                                "link's latency (add per-link overrides with --link-shape)")
        self.edge_shapes()
        object.__setattr__(self, "peer", _peer_options(self.peer))

    @classmethod
    def from_cli(cls, peer_options: list[str] | None = None, **chosen: Any) -> PeerOptions:
        """Options from the ``p2p`` flags given (``chosen``: fields of this class) and the
        ``--peer-option KEY=VALUE`` items: a key that is a field here (idle, max_runtime, ...)
        sets that field, any other goes to ``peer``."""
        own, other = {}, {}
        for key, value in parse_peer_options(peer_options).items():
            _check_settable(key)
            if key in _OWN_FIELDS:
                if key in chosen:
                    raise SpecError(f"--peer-option {key} and --{key.replace('_', '-')} both given")
                own[key] = _converted(key, value)
            else:
                other[key] = value
        return cls(**chosen, **own, peer=other)

    def edge_shapes(self) -> dict[tuple[int, int], LinkShape]:
        """Per-edge shapes given by --link-shape (u < v), each on top of the global one
        (without --latency-from's latencies: ``shapes_on`` has those)."""
        return {edge: shape for edge, (_, shape) in self._parsed_shapes().items()}

    def shapes_on(self, graph: nx.Graph, name: str = "the topology") -> dict[tuple[int, int], LinkShape]:
        """The shape of every link of ``graph`` that differs from the global one (u < v):
        with --latency-from distance every link, its latency from its length, and a
        --link-shape item on top of that (its keys win)."""
        if self.latency_from is None:
            return self.edge_shapes()
        base = LinkShape(self.latency, self.jitter, self.loss, self.bandwidth)
        try:
            delays = link_latencies(graph, name)
        except TopologyError as e:
            raise SpecError(str(e)) from None
        bases = {edge: replace(base, latency=delay) for edge, delay in delays.items()}
        return {**bases, **{edge: shape for edge, (_, shape) in self._parsed_shapes(bases).items()}}

    def _parsed_shapes(self, bases: Mapping[tuple[int, int], LinkShape] | None = None,
                       ) -> dict[tuple[int, int], tuple[str, LinkShape]]:
        """Per-edge (item as given, shape), each on top of ``bases[edge]`` or the global shape;
        a SpecError names the offending item."""
        glob = LinkShape(self.latency, self.jitter, self.loss, self.bandwidth)
        out = {}
        for item in self.link_shapes:
            if not isinstance(item, str):
                raise SpecError(f"--link-shape expects U-V:KEY=VALUE,..., got {item!r}")
            edge, sep, text = item.partition(":")
            u, dash, v = edge.partition("-")
            if not sep or not dash or not u.strip().isdigit() or not v.strip().isdigit():
                raise SpecError(f"--link-shape expects U-V:KEY=VALUE,..., got {item!r}")
            edge = tuple(sorted((int(u), int(v))))
            try:
                out[edge] = (item, LinkShape.parse(text, (bases or {}).get(edge, glob)))
            except ValueError as e:
                raise SpecError(f"--link-shape {item}: {e}") from None
        return out

    def check_graph(self, graph: nx.Graph, name: str) -> None:
        """Refuse a per-edge shape on a pair that is not a link of ``graph`` (``name``: e.g. cycle-5)."""
        for (u, v), (item, _) in self._parsed_shapes().items():
            if not graph.has_edge(u, v):
                raise SpecError(f"--link-shape {item}: {u}-{v} is not an edge of {name}")
        self.shapes_on(graph, name)  # --latency-from distance: every link has a length

    @property
    def lossy(self) -> bool:
        return self.loss > 0 or any(s.loss > 0 for s in self.edge_shapes().values())

    def link_deadline_for(self, n: int) -> float:
        return self.link_deadline if self.link_deadline is not None else max(default_of("link_deadline"), 1.0 * n)

    def handshake_timeout_for(self, n: int) -> float:
        if self.handshake_timeout is not None:
            return self.handshake_timeout
        return max(default_of("handshake_timeout"), n / 10)

    def dial_grace_for(self, n: int) -> float | None:
        """The grace before a peer dials a lower-id neighbour itself (--peer-option dial_grace wins);
        None: the peer's default (1 s). N/10 s when more: with hundreds of slow-starting containers a
        1 s grace would have nearly every higher id dial too, doubling the connections to set up."""
        given = dict(self.peer).get("dial_grace")
        if given is not None:
            return given
        return n / 10 if n / 10 > default_of("dial_grace") else None

    def max_runtime_for(self, n: int) -> float:
        if self.max_runtime is not None:
            return self.max_runtime
        return max(default_of("max_runtime"), 2 * self.link_deadline_for(n) + 300.0)


_OWN_FIELDS = frozenset(f.name for f in fields(PeerOptions))
# The help of ``--peer-option`` (p2p run, render, sweep).
PEER_OPTION_HELP = (f"set a peer option for every peer, repeatable: {', '.join(settable_options())} "
                    "(see python -m peer --help), e.g. max_runtime=1200")


def parse_peer_options(items: list[str] | None) -> dict[str, str]:
    """``--peer-option KEY=VALUE`` items (repeatable) as a dict: keys stripped, lower-cased, ``-`` as ``_``;
    refuses an item without ``=`` and a key given twice with different values."""
    out: dict[str, str] = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"--peer-option expects KEY=VALUE, got {item!r}")
        key = key.strip().lower().replace("-", "_")
        if key in out and out[key] != value.strip():
            raise SpecError(f"--peer-option {key} given twice")
        out[key] = value.strip()
    return out


def _check_settable(key: str) -> None:
    """Refuse a key that is no peer option, or one that the runner sets itself."""
    try:
        by = set_by(key)
    except KeyError:
        raise SpecError(f"--peer-option {key}: no such peer option; known: {', '.join(settable_options())}") from None
    if by is not None:
        raise SpecError(f"--peer-option {key}: set by {by}, not by --peer-option")


def _converted(key: str, value: Any) -> Any:
    try:
        return option_value(key, value)
    except ValueError as e:
        raise SpecError(f"--peer-option {key}: {e}") from None


def _peer_options(raw: Any) -> tuple[tuple[str, Any], ...]:
    """PeerOptions.peer as sorted (key, value) pairs, each key settable and each value of its option's type."""
    try:
        items = dict(raw.items() if isinstance(raw, Mapping) else raw)
    except (TypeError, ValueError):
        raise SpecError(f"peer options must be a mapping or (key, value) pairs, got {raw!r}") from None
    out = {}
    for key, value in items.items():
        _check_settable(key)
        if key in _OWN_FIELDS:
            raise SpecError(f"--peer-option {key}: belongs in options.{key}, not in options.peer")
        out[key] = _converted(key, value)
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class RunSpec:
    """A run: topology family and size, protocol, seed and peer options."""

    topology: str
    n: int
    protocol: str = "v1"
    seed: int | None = None
    port: int = DEFAULT_PORT
    options: PeerOptions = field(default_factory=PeerOptions)
    faults: tuple[Fault, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()  # a mapping is accepted and normalised
    allow_disconnected: bool = False
    # Peers played by other implementations (--peer-image, --peer-command); the rest run ours.
    implementations: tuple[Implementation, ...] = ()

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SpecError(f"unknown protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if self.n < 1:
            raise SpecError(f"n must be positive, got {self.n}")
        if not 1 <= self.port <= 65535:
            raise SpecError(f"port out of range: {self.port}")
        fam = FAMILIES.get(self.topology)
        if fam is None:
            raise SpecError(f"unknown topology {self.topology!r}; known: {', '.join(sorted(FAMILIES))}")
        object.__setattr__(self, "params", self._normalise_params(fam))
        self._check_implementations()
        if self.seed is None and (fam.random or _PROTOCOL_CLASSES[self.protocol].uses_seed):
            object.__setattr__(self, "seed", self._draw_seed(fam))

    def _check_implementations(self) -> None:
        impls = tuple(i if isinstance(i, Implementation) else Implementation.from_dict(i)
                      for i in self.implementations)
        object.__setattr__(self, "implementations", impls)
        seen: dict[int, str] = {}
        for impl in impls:
            for p in impl.ids:
                if not 0 <= p < self.n:
                    raise SpecError(f"implementation {impl.name}: peer {p} is not in the run (ids 0..{self.n - 1})")
                if p in seen:
                    raise SpecError(f"implementation {impl.name}: peer {p} is already played by {seen[p]}")
                seen[p] = impl.name

    def implementation_of(self, peer: int) -> Implementation | None:
        """The foreign implementation that plays ``peer``; None: our own peer."""
        return next((i for i in self.implementations if peer in i.ids), None)

    def _draw_seed(self, fam) -> int:
        """A seed for a spec that has none. For a random family that must be connected, a
        seed whose graph is (a few draws): the user asked for a connected er-12, not for one
        run in a hundred to fail on a seed they never chose. A given seed is never changed."""
        seed = secrets.randbelow(2**31)
        if not fam.random or self.allow_disconnected:
            return seed
        for _ in range(DRAWS_FOR_CONNECTED - 1):
            try:
                build_graph(self.topology, self.n, seed=seed, params=self.topology_params())
                return seed
            except TopologyError as e:
                if "not connected" not in str(e):
                    raise
            seed = secrets.randbelow(2**31)
        return seed  # the graph itself then says why it cannot be connected

    def _normalise_params(self, fam) -> tuple[tuple[str, Any], ...]:
        raw = self.params
        try:
            items = dict(raw.items() if isinstance(raw, Mapping) else raw)
        except (TypeError, ValueError) as e:
            raise SpecError(f"params must be a mapping or (key, value) pairs, got {raw!r}") from e
        proto_defaults = PROTOCOL_PARAMS[self.protocol]
        unknown = sorted(k for k in items if k not in proto_defaults and fam.param(k) is None)
        if unknown:
            raise SpecError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: topology {fam.name} takes "
                f"{', '.join(p.name for p in fam.params) or 'none'}, protocol {self.protocol} takes "
                f"{', '.join(proto_defaults) or 'none'}"
            )
        topo = fam.coerce({k: v for k, v in items.items() if k not in proto_defaults})
        for key, value in topo.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise SpecError(f"{fam.name}: parameter {key} must be a finite number, got {show_value(value)}")
        proto = {}
        for key, default in proto_defaults.items():
            value = items.get(key, default)
            try:
                if isinstance(value, bool) or int(value) != float(value) or int(value) < 1:
                    raise ValueError
                value = int(value)
            except (TypeError, ValueError):
                raise SpecError(f"protocol {self.protocol}: {key} must be a positive integer, got {value!r}") from None
            proto[key] = value
        return tuple(sorted({**topo, **proto}.items()))

    @classmethod
    def parse(cls, topology: str, n: int | None = None, params: Mapping[str, Any] | None = None,
              **kwargs: Any) -> RunSpec:
        """Build from CLI spellings: ``parse("mesh,7")``, ``parse("mesh", 7)``, ``parse("er:p=0.2", 20)``,
        ``parse("er", 20, params={"p": "0.2"})``. Protocol parameters (``fanout``, ``ttl``) go in
        ``params`` too; anything neither the family nor the protocol takes is an error."""
        params = dict(params or {})
        protocol = kwargs.get("protocol", "v1")
        proto_keys = PROTOCOL_PARAMS.get(protocol, {})
        proto = {k: params.pop(k) for k in list(params) if k in proto_keys}
        try:
            name, size, topo = parse_topology_params(topology, n, params)
        except TopologyError as e:
            if "unknown parameter" in str(e):
                raise TopologyError(f"{e}; protocol {protocol} takes {', '.join(proto_keys) or 'none'}") from e
            raise
        return cls(topology=name, n=size, params={**topo, **proto}, **kwargs)

    @property
    def name(self) -> str:
        """Short human name, e.g. ``mesh-5``."""
        return f"{self.topology}-{self.n}"

    @property
    def label(self) -> str:
        """The name with the parameters, e.g. ``er-20 p=0.2`` or ``circulant-9 jumps=2,3``."""
        shown = [f"{k}={show_param(v)}" for k, v in self.params if k not in ("path", "name")]
        if self.topology == "file":
            shown.insert(0, Path(dict(self.params)["path"]).name)
        if FAMILIES[self.topology].positional == "name":  # zoo-11 Abilene
            shown.insert(0, dict(self.params)["name"])
        return " ".join([self.name, *shown])

    def topology_params(self) -> dict[str, Any]:
        """The family's parameters (defaults filled in)."""
        proto = PROTOCOL_PARAMS[self.protocol]
        return {k: v for k, v in self.params if k not in proto}

    def protocol_params(self) -> dict[str, int]:
        """The protocol's parameters (defaults filled in), e.g. ``{"fanout": 2}``."""
        proto = PROTOCOL_PARAMS[self.protocol]
        return {k: v for k, v in self.params if k in proto}

    def graph(self) -> nx.Graph:
        """The topology this spec describes; faults and per-edge link shapes must name its
        peers and links (a SpecError otherwise)."""
        graph = build_graph(self.topology, self.n, seed=self.seed, params=self.topology_params(),
                            allow_disconnected=self.allow_disconnected)
        self.check_graph(graph)
        return graph

    def check_graph(self, graph: nx.Graph) -> None:
        """Refuse faults on peers or links ``graph`` lacks and link shapes on pairs that are not links."""
        for fault in self.faults:
            fault.check(graph)
        self.options.check_graph(graph, self.name)

    def prediction_graph(self) -> nx.Graph:
        """The graph an exact prediction is made on: without peers killed at start."""
        return self.prediction_input()[0]

    def prediction_input(self) -> tuple[nx.Graph, str | None]:
        """The prediction graph and the family whose closed forms apply to it (None once
        faults at start changed the graph)."""
        full = self.graph()
        graph = surviving_graph(full, self.faults)  # the same object when nothing was cut
        return graph, (self.topology if graph is full else None)

    @property
    def exactly_predictable(self) -> bool:
        """False when faults or emulated loss make deliveries fall short of the prediction
        (a shape fault adding only delay keeps a run exact: see generator.faults)."""
        return exactly_predictable(self.faults) and not self.options.lossy

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}
        data["faults"] = [f.to_dict() for f in self.faults]  # link-change keys only where set
        # Absent when empty: spec.json of runs without --peer-option stay as they were.
        del data["options"]["peer"]
        if self.options.peer:
            data["options"]["peer"] = dict(self.options.peer)
        if self.options.latency_from is None:  # likewise absent unless --latency-from was given
            del data["options"]["latency_from"]
        del data["implementations"]  # absent when empty, as above
        if self.implementations:
            data["implementations"] = [i.to_dict() for i in self.implementations]
        return data

    def to_json(self) -> str:
        """Strict JSON (no NaN or Infinity): the checks above keep them out; this is the backstop."""
        try:
            return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
        except ValueError as e:
            raise SpecError(f"spec of {self.name} cannot be written as strict JSON: {e}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown spec keys: {', '.join(sorted(unknown))}")
        try:
            opts = PeerOptions(**data.get("options", {}))
            faults = tuple(Fault.from_dict(f) for f in data.get("faults", ()))
            return cls(**{**data, "options": opts, "faults": faults})
        except (TypeError, KeyError, TopologyError) as e:
            raise SpecError(f"malformed spec: {e}") from e

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise SpecError(f"cannot read spec {path}: {e}") from e
        except SpecError as e:
            raise SpecError(f"{path}: {e}") from e

    def write(self, path: Path) -> None:
        Path(path).write_text(self.to_json())


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``--param KEY=VALUE`` items (repeatable) as a dict for ``RunSpec.parse(params=...)``:
    keys stripped and lower-cased; refuses an item without ``=`` and a key given twice
    with different values."""
    out: dict[str, str] = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"--param expects KEY=VALUE, got {item!r}")
        key = key.strip().lower()
        if key in out and out[key] != value.strip():
            raise SpecError(f"--param {key} given twice")
        out[key] = value.strip()
    return out
