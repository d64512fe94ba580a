"""The frozen run spec: everything needed to reproduce a run, serialised to spec.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import networkx as nx

from generator.errors import SpecError
from generator.faults import Fault, exactly_predictable, surviving_graph
from generator.topologies import build_graph, parse_topology

PROTOCOLS = ("v1",)
DEFAULT_PORT = 7000


@dataclass(frozen=True)
class PeerOptions:
    """Timing knobs handed to every peer (seconds)."""

    idle: float = 2.0
    link_deadline: float = 60.0
    max_runtime: float = 900.0
    handshake_timeout: float = 10.0


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

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SpecError(f"unknown protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if self.n < 1:
            raise SpecError(f"n must be positive, got {self.n}")
        if not 1 <= self.port <= 65535:
            raise SpecError(f"port out of range: {self.port}")

    @classmethod
    def parse(cls, topology: str, n: int | None = None, **kwargs: Any) -> RunSpec:
        """Build from CLI spellings: ``parse("mesh,7")`` or ``parse("mesh", 7)``."""
        name, size = parse_topology(topology, n)
        return cls(topology=name, n=size, **kwargs)

    @property
    def name(self) -> str:
        """Short human name, e.g. ``mesh-5``."""
        return f"{self.topology}-{self.n}"

    def graph(self) -> nx.Graph:
        """The topology this spec describes."""
        return build_graph(self.topology, self.n, seed=self.seed)

    def prediction_graph(self) -> nx.Graph:
        """The graph an exact prediction is made on: without peers killed at start."""
        return surviving_graph(self.graph(), self.faults)

    @property
    def exactly_predictable(self) -> bool:
        """False when faults make deliveries depend on timing (only a lower bound is known)."""
        return exactly_predictable(self.faults)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

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
        except (TypeError, KeyError) as e:
            raise SpecError(f"malformed spec: {e}") from e

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise SpecError(f"cannot read spec {path}: {e}") from e

    def write(self, path: Path) -> None:
        Path(path).write_text(self.to_json())
