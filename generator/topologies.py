"""Topology families: pure functions ``<name>_graph(n, seed=None, **params) -> nx.Graph``.

Nodes are the peer ids ``0..n-1``. A size or parameter that makes a family degenerate
is a ``TopologyError``, never a silent fix; so is a disconnected result, unless the
caller allows it (``RunSpec.allow_disconnected``).

Spelling of a topology on the command line (``--topology``/``-t``)::

    NAME                 mesh                  (size from -n, default 5)
    NAME,N               mesh,7                (the original spelling)
    NAME:ITEM,ITEM,...   circulant:2,3         bare items fill the family's list parameter (jumps)
                         er:p=0.2,20           KEY=VALUE sets a parameter; a bare integer is the size
                         grid:rows=3,n=12      n=N also sets the size
                         file:nets/petersen.graphml   everything after "file:" is the path; n comes from the file
                         zoo:Abilene, sndlib:polska    a real network (topohub); n comes from the network

Parameters can also be given as ``--param KEY=VALUE`` (repeatable); a parameter given
twice with different values is an error. ``p2p topologies`` lists the families, their
parameters and defaults. Randomised families (``random=True``) need a seed; a
``RunSpec`` without one draws a seed and records it in spec.json, so a run replays.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from generator.errors import TopologyError
from generator.networks import COLLECTION_TITLES, canonical_name, network_graph, network_size
from peer.config import parse_bool

DEFAULT_N = 5
_REQUIRED = object()


# ---- the families ----------------------------------------------------------------


def cycle_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Ring: peer i linked to (i-1)%n and (i+1)%n. Needs n >= 3."""
    _require(n >= 3, "cycle", n, "a cycle needs at least 3 peers")
    return nx.cycle_graph(n)


def mesh_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Complete graph K_n. Needs n >= 2."""
    _require(n >= 2, "mesh", n, "a mesh needs at least 2 peers")
    return nx.complete_graph(n)


def starfish_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Circulant C_n(2,3): peer i linked to (i+2)%n and (i+3)%n.

    For n=5 this is the pentagram 0-2-4-1-3-0; degree 4 for n >= 7 (n=6 has degree 3
    because +3 and -3 coincide). n <= 3 would need self-loops (3 % 3 == 0) and is
    rejected.
    """
    _require(n >= 4, "starfish", n, "jump 3 would link a peer to itself; starfish needs at least 4 peers")
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for i in range(n):
        g.add_edge(i, (i + 2) % n)
        g.add_edge(i, (i + 3) % n)
    return g


def circulant_graph(n: int, seed: int | None = None, jumps: Iterable[int] = (1,)) -> nx.Graph:
    """Circulant C_n(j1, j2, ...): peer i linked to (i ± j) % n for every jump j.

    Each jump must be in 1..n-1 (0 or a multiple of n would be a self-loop). Jumps j and
    n-j give the same links, so ``circulant:2,3`` at n=5 is the pentagram (like
    starfish-5). Connected iff gcd(n, jumps) == 1.
    """
    jumps = tuple(jumps)
    _require(n >= 3, "circulant", n, "a circulant needs at least 3 peers")
    _require(bool(jumps), "circulant", n, "no jumps given")
    for j in jumps:
        _require(1 <= j < n, "circulant", n, f"jump {j} is not in 1..{n - 1} (0 or ±n would link a peer to itself)")
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for i in range(n):
        for j in jumps:
            g.add_edge(i, (i + j) % n)
    return g


def ring_graph(n: int, seed: int | None = None, k: int = 1) -> nx.Graph:
    """Ring lattice: peer i linked to its k nearest peers on each side (circulant 1..k).

    Needs k >= 1 and n >= 2k+1 (otherwise the two sides overlap); degree 2k.
    """
    _require(k >= 1, "ring", n, f"k={k}: need at least one neighbour per side")
    _require(n >= 2 * k + 1, "ring", n, f"k={k} neighbours per side need n >= {2 * k + 1}")
    return circulant_graph(n, jumps=range(1, k + 1))


def star_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Star: peer 0 is the hub, linked to every other peer. Needs n >= 3."""
    _require(n >= 3, "star", n, "a star needs a hub and at least 2 leaves")
    return nx.star_graph(n - 1)


def line_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Line (path): peer i linked to i+1. Needs n >= 2."""
    _require(n >= 2, "line", n, "a line needs at least 2 peers")
    return nx.path_graph(n)


def grid_graph(n: int, seed: int | None = None, rows: int = 0, wrap: bool = False) -> nx.Graph:
    """2-D grid of ``rows`` x ``n/rows``; peer r*cols+c linked to its right and lower neighbour.

    ``rows=0`` (default): the most square factorisation, rows <= cols; a prime n has
    none and is an error. Needs rows, cols >= 2; with ``wrap`` (a torus) rows, cols >= 3,
    since a wrap-around link of a 2-wide side would duplicate an existing link.
    """
    name = "grid" + (" (wrap)" if wrap else "")
    least = 3 if wrap else 2
    if rows == 0:
        rows = max((r for r in range(1, math.isqrt(n) + 1) if n % r == 0), default=1) if n > 0 else 0
        _require(
            rows >= least, name, n,
            f"no rows x cols factorisation with both sides >= {least}" + (" (n is prime)" if _is_prime(n) else "")
            + "; give rows=R with R dividing n, or another n",
        )
    _require(rows >= 1 and n % rows == 0, name, n, f"rows={rows} does not divide n")
    cols = n // rows
    _require(rows >= least and cols >= least, name, n, f"{rows} x {cols}: both sides must be >= {least}")
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols or wrap:
                g.add_edge(i, r * cols + (c + 1) % cols)
            if r + 1 < rows or wrap:
                g.add_edge(i, ((r + 1) % rows) * cols + c)
    return g


def tree_graph(n: int, seed: int | None = None, r: int = 2) -> nx.Graph:
    """Balanced (complete) r-ary tree in heap order: the parent of peer i > 0 is (i-1)//r.

    Every level is full except possibly the last, which fills from the left. Needs
    n >= 2 and r >= 2 (r=1 would be a line: use ``line``).
    """
    _require(n >= 2, "tree", n, "a tree needs at least 2 peers")
    _require(r >= 2, "tree", n, f"r={r}: branching must be >= 2 (r=1 is the line family)")
    return nx.full_rary_tree(r, n)


def rtree_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Random labelled tree, uniform over all n^(n-2) trees (a random Prüfer sequence). Needs n >= 2."""
    _require(n >= 2, "rtree", n, "a tree needs at least 2 peers")
    if n == 2:
        return nx.path_graph(2)
    rng = random.Random(seed)
    return nx.from_prufer_sequence([rng.randrange(n) for _ in range(n - 2)])


def regular_graph(n: int, seed: int | None = None, d: int = 3) -> nx.Graph:
    """Random d-regular graph (networkx's pairing method). Needs 1 <= d < n and n*d even."""
    _require(1 <= d < n, "regular", n, f"degree d={d} must be in 1..n-1")
    _require(n * d % 2 == 0, "regular", n, f"n*d = {n * d} is odd: no {d}-regular graph on {n} peers")
    return nx.random_regular_graph(d, n, seed=seed)


def er_graph(n: int, seed: int | None = None, p: float = 0.5) -> nx.Graph:
    """Erdős–Rényi G(n, p): each of the n(n-1)/2 links present with probability p. Needs n >= 2, 0 < p <= 1."""
    _require(n >= 2, "er", n, "needs at least 2 peers")
    _require(0 < p <= 1, "er", n, f"p={p} must be in (0, 1]")
    return nx.gnp_random_graph(n, p, seed=seed)


def ws_graph(n: int, seed: int | None = None, k: int = 4, p: float = 0.1) -> nx.Graph:
    """Watts–Strogatz small world: ring lattice with k/2 neighbours per side, each link rewired with probability p.

    Needs k even (an odd k would be rounded down by networkx), 2 <= k < n, 0 <= p <= 1.
    """
    _require(k >= 2 and k % 2 == 0, "ws", n, f"k={k} must be even and >= 2")
    _require(k < n, "ws", n, f"k={k} must be below n")
    _require(0 <= p <= 1, "ws", n, f"p={p} must be in [0, 1]")
    return nx.watts_strogatz_graph(n, k, p, seed=seed)


def ba_graph(n: int, seed: int | None = None, m: int = 2) -> nx.Graph:
    """Barabási–Albert preferential attachment: each new peer links to m existing ones. Needs 1 <= m < n."""
    _require(1 <= m < n, "ba", n, f"m={m} must be in 1..n-1")
    return nx.barabasi_albert_graph(n, m, seed=seed)


def file_graph(n: int | None, seed: int | None = None, path: str = "") -> nx.Graph:
    """A graph read from an edge list or a GraphML file (``.graphml``/``.xml``).

    Edge list: one link per line, ``a b`` (whitespace or comma separated; further
    columns, e.g. weights, are ignored), a line with one token is an isolated node,
    ``#`` starts a comment. Node labels are relabelled to 0..n-1 in sorted order
    (numerically when every label is an integer, else as strings). A directed GraphML
    is read as undirected; self-loops are an error. ``n``, when given, must equal the
    file's node count.
    """
    g = read_graph_file(path)
    if n is not None and n != g.number_of_nodes():
        raise TopologyError(f"{path} has {g.number_of_nodes()} peers, not n={n}")
    return g


def zoo_graph(n: int | None, seed: int | None = None, name: str = "") -> nx.Graph:
    """A network of the Internet Topology Zoo (topohub's ``topozoo`` collection); see generator/networks.py."""
    return _network("zoo", n, name)


def sndlib_graph(n: int | None, seed: int | None = None, name: str = "") -> nx.Graph:
    """A network of SNDlib (topohub's ``sndlib`` collection); see generator/networks.py."""
    return _network("sndlib", n, name)


def _network(family: str, n: int | None, name: str) -> nx.Graph:
    g = network_graph(family, name)
    if n is not None and n != g.number_of_nodes():
        raise TopologyError(f"{family}:{canonical_name(family, name)} has {g.number_of_nodes()} peers, not n={n}")
    return g


def read_graph_file(path: str | Path) -> nx.Graph:
    """Read and relabel a graph file (see ``file_graph``)."""
    p = Path(path)
    if not str(path):
        raise TopologyError("file topology needs a path: file:PATH")
    try:
        if p.suffix.lower() in (".graphml", ".xml"):
            raw = nx.Graph(nx.read_graphml(p, node_type=str))
        else:
            raw = _read_edge_list(p.read_text())
    except OSError as e:
        raise TopologyError(f"cannot read topology file {path}: {e}") from e
    except (nx.NetworkXError, SyntaxError, ValueError, KeyError) as e:  # ElementTree.ParseError is a SyntaxError
        raise TopologyError(f"cannot parse topology file {path}: {e}") from e
    if raw.number_of_nodes() == 0:
        raise TopologyError(f"topology file {path} has no nodes")
    loops = list(nx.selfloop_edges(raw))
    if loops:
        raise TopologyError(f"topology file {path} has self-loops, e.g. {loops[0][0]!r}")
    labels = list(raw.nodes)
    try:
        order = sorted(labels, key=lambda x: int(x))
        if len({int(x) for x in labels}) != len(labels):  # "01" and "1"
            raise ValueError
    except ValueError:
        order = sorted(labels, key=str)
    g = nx.Graph()
    index = {label: i for i, label in enumerate(order)}
    g.add_nodes_from(range(len(order)))
    g.add_edges_from((index[a], index[b]) for a, b in raw.edges)
    return g


def _read_edge_list(text: str) -> nx.Graph:
    g = nx.Graph()
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].replace(",", " ").split()
        if len(tokens) == 1:
            g.add_node(tokens[0])
        elif tokens:
            g.add_edge(tokens[0], tokens[1])
    return g


# ---- the table -------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A family parameter: ``kind`` is int, float, bool, ints (a list), path or name (a string);
    ``check`` turns a coerced value into its canonical spelling or raises a TopologyError."""

    name: str
    kind: str
    default: Any = _REQUIRED
    help: str = ""
    check: Callable[[Any], Any] | None = field(default=None, compare=False)

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def coerce(self, value: Any, where: str) -> Any:
        """Convert a CLI string (or a JSON value) to this parameter's type; errors name ``where``."""
        try:
            if self.kind == "int":
                return _int(value)
            if self.kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                return float(value)
            if self.kind == "bool":
                return parse_bool(value)
            if self.kind == "ints":
                items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
                return tuple(_int(x) for x in items)
            if self.kind == "path":
                text = str(value)
                if not text:
                    raise ValueError
                return str(Path(text).expanduser().resolve())
            if self.kind == "name":
                text = str(value).strip()
                if not text or isinstance(value, bool):
                    raise ValueError
                return self.check(text) if self.check else text
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError(f"unknown parameter kind {self.kind}")
        raise TopologyError(f"{where}: parameter {self.name} must be {_KIND_TEXT[self.kind]}, got {value!r}")

    def describe(self) -> str:
        default = "required" if self.required else f"default {show_param(self.default)}"
        return f"{self.name} ({self.kind}, {default}): {self.help}"


_KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "a boolean (0/1)",
              "ints": "a list of integers", "path": "a file path",
              "name": "a name"}


@dataclass(frozen=True)
class Family:
    """A named topology constructor and what it needs."""

    name: str
    build: Callable[..., nx.Graph]
    min_n: int
    description: str
    params: tuple[Param, ...] = ()
    random: bool = False  # the result depends on the seed
    positional: str | None = None  # the parameter that bare items after "NAME:" fill
    size_from: Callable[[Mapping[str, Any]], int] | None = field(default=None, compare=False)  # n fixed by params

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def coerce(self, raw: Mapping[str, Any], fill: bool = True) -> dict[str, Any]:
        """Typed parameters, defaults filled in (``fill``); unknown or missing ones are errors."""
        out: dict[str, Any] = {}
        for key, value in raw.items():
            param = self.param(key)
            if param is None:
                known = ", ".join(p.name for p in self.params) or "none"
                raise TopologyError(f"{self.name}: unknown parameter {key!r} (known: {known})")
            out[key] = param.coerce(value, self.name)
        if fill:
            for param in self.params:
                if param.name not in out:
                    if param.required:
                        raise TopologyError(f"{self.name}: parameter {param.name} is required ({param.help})")
                    out[param.name] = param.default
        return out

    def usage(self) -> str:
        """One-line spelling example."""
        if self.positional:
            return f"{self.name}:{self.positional.upper()}" + ("" if self.size_from else " -n N")
        req = [p for p in self.params if p.required]
        inline = ",".join(f"{p.name}={p.name.upper()}" for p in req)
        return f"{self.name}:{inline},N" if inline else f"{self.name},N"


def _file_size(params: Mapping[str, Any]) -> int:
    return read_graph_file(params["path"]).number_of_nodes()


def _network_family(family: str, build: Callable[..., nx.Graph]) -> Family:
    title = COLLECTION_TITLES[family]
    return Family(
        family, build, 1, f"{title} network (topohub) with positions and link lengths, nodes relabelled "
        f"0..N-1; `p2p topologies --{family}` lists them",
        (Param("name", "name", _REQUIRED, f"the network, e.g. {'Abilene' if family == 'zoo' else 'polska'} "
               "(any case)", check=functools.partial(canonical_name, family)),),
        positional="name", size_from=lambda params: network_size(family, params["name"])[0],
    )


FAMILIES: dict[str, Family] = {
    "cycle": Family("cycle", cycle_graph, 3, "ring; peer i linked to i±1"),
    "mesh": Family("mesh", mesh_graph, 2, "complete graph"),
    "starfish": Family("starfish", starfish_graph, 4, "circulant C_N(2,3); pentagram for N=5"),
    "circulant": Family(
        "circulant", circulant_graph, 3, "circulant C_N(jumps): peer i linked to i±j for each jump j",
        (Param("jumps", "ints", (1,), "jumps, each in 1..N-1; circulant:2,3 is starfish"),), positional="jumps",
    ),
    "ring": Family(
        "ring", ring_graph, 3, "ring lattice: peer i linked to its k nearest peers on each side; N >= 2k+1",
        (Param("k", "int", 1, "neighbours per side; k=1 is the cycle"),),
    ),
    "star": Family("star", star_graph, 3, "hub 0 linked to every other peer"),
    "line": Family("line", line_graph, 2, "path 0-1-…-(N-1)"),
    "grid": Family(
        "grid", grid_graph, 4, "2-D rows x cols grid, peer r*cols+c; wrap=1 makes it a torus",
        (Param("rows", "int", 0, "rows, dividing N (0: most square factorisation)"),
         Param("wrap", "bool", False, "torus: wrap-around links (rows, cols >= 3)")),
    ),
    "tree": Family(
        "tree", tree_graph, 2, "balanced r-ary tree in heap order: parent of i is (i-1)//r",
        (Param("r", "int", 2, "branching factor, >= 2"),),
    ),
    "rtree": Family("rtree", rtree_graph, 2, "uniformly random labelled tree (random Prüfer sequence; seeded)",
                    random=True),
    "regular": Family(
        "regular", regular_graph, 2, "random d-regular graph (seeded)",
        (Param("d", "int", 3, "degree; N*d must be even"),), random=True,
    ),
    "er": Family(
        "er", er_graph, 2, "Erdős–Rényi G(N, p) (seeded)",
        (Param("p", "float", _REQUIRED, "link probability, 0 < p <= 1"),), random=True,
    ),
    "ws": Family(
        "ws", ws_graph, 3, "Watts–Strogatz small world (seeded)",
        (Param("k", "int", 4, "lattice degree, even, < N"), Param("p", "float", 0.1, "rewiring probability")),
        random=True,
    ),
    "ba": Family(
        "ba", ba_graph, 2, "Barabási–Albert preferential attachment (seeded)",
        (Param("m", "int", 2, "links of each new peer, 1 <= m < N"),), random=True,
    ),
    "file": Family(
        "file", file_graph, 1, "edge list or GraphML file; nodes relabelled 0..N-1 in sorted order, N from the file",
        (Param("path", "path", _REQUIRED, "the file (.graphml/.xml: GraphML, else an edge list)"),),
        positional="path", size_from=_file_size,
    ),
    "zoo": _network_family("zoo", zoo_graph),
    "sndlib": _network_family("sndlib", sndlib_graph),
}


# ---- parsing and building -------------------------------------------------------


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise TopologyError(f"unknown topology {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def split_topology(text: str) -> tuple[str, int | None, dict[str, Any]]:
    """Syntax only: ``"er:p=0.2,20"`` -> ``("er", 20, {"p": "0.2"})`` (values still strings)."""
    head, colon, rest = text.partition(":")
    if not colon:
        head, _, size = text.partition(",")
        name = head.strip().lower()
        fam = family(name)
        return fam.name, _size(size, text) if size.strip() else None, {}
    name = head.strip().lower()
    fam = family(name)
    if fam.positional and fam.param(fam.positional).kind in ("path", "name"):
        return fam.name, None, {fam.positional: rest.strip()}
    size: int | None = None
    params: dict[str, Any] = {}
    bare: list[str] = []
    for item in (x.strip() for x in rest.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if eq:
            key = key.strip().lower()
            if key == "n":
                size = _size(value, text) if size is None else _conflict(text)
            elif key == fam.positional:
                bare.append(value.strip())  # circulant:jumps=2,3 == circulant:2,3
            elif key in params:
                raise TopologyError(f"parameter {key} given twice in {text!r}")
            else:
                params[key] = value.strip()
        else:
            bare.append(item)
    if bare:
        if fam.positional:
            params[fam.positional] = ",".join(bare)
        elif len(bare) == 1 and size is None:
            size = _size(bare[0], text)
        else:
            raise TopologyError(
                f"{text!r}: {fam.name} takes no bare values other than one size; use KEY=VALUE "
                f"(parameters: {', '.join(p.name for p in fam.params) or 'none'})"
            )
    return fam.name, size, params


def parse_topology_params(
    text: str, n: int | None = None, params: Mapping[str, Any] | None = None
) -> tuple[str, int, dict[str, Any]]:
    """Full parse: family name, size, typed parameters with defaults filled in.

    ``params`` (e.g. from ``--param``) merge with those in ``text``; the same key with
    two different values is an error, as is a size given twice differently. The size
    of a ``file`` topology comes from the file.
    """
    name, size, inline = split_topology(text)
    fam = FAMILIES[name]
    extra = fam.coerce(dict(params or {}), fill=False)
    typed = fam.coerce(inline, fill=False)
    for key, value in extra.items():
        if key in typed and typed[key] != value:
            raise TopologyError(f"parameter {key} given twice: {show_param(typed[key])} and {show_param(value)}")
        typed[key] = value
    typed = fam.coerce(typed)
    if size is not None and n is not None and size != n:
        raise TopologyError(f"conflicting sizes: {text!r} and -n {n}")
    n = size if size is not None else n
    if fam.size_from is not None:
        actual = fam.size_from(typed)
        if n is not None and n != actual:
            raise TopologyError(f"conflicting sizes: {text!r} has {actual} peers, not -n {n}")
        n = actual
    return name, DEFAULT_N if n is None else n, typed


def parse_topology(text: str, n: int | None = None) -> tuple[str, int]:
    """Parse ``"mesh,7"`` / ``"mesh"`` (+ n) into ``(family, n)``; see ``parse_topology_params`` for parameters."""
    name, size, _params = parse_topology_params(text, n)
    return name, size


def build_graph(
    name: str,
    n: int,
    seed: int | None = None,
    params: Mapping[str, Any] | None = None,
    allow_disconnected: bool = False,
) -> nx.Graph:
    """Look up a family by name and build it; the result must be connected unless allowed otherwise."""
    fam = family(name)
    typed = fam.coerce(dict(params or {}))
    g = fam.build(n, seed=seed, **typed)
    if g.number_of_nodes() != n or set(g.nodes) != set(range(n)):  # pragma: no cover - a family bug
        raise TopologyError(f"{name}-{n}: the constructor returned {g.number_of_nodes()} nodes, not 0..{n - 1}")
    if not allow_disconnected and n > 1 and not nx.is_connected(g):
        parts = nx.number_connected_components(g)
        what = ", ".join(f"{k}={show_param(v)}" for k, v in sorted(typed.items()) if k != "path")
        hint = " Try another seed or parameters, or allow disconnected graphs (--allow-disconnected)." if fam.random \
            else " Allow it with --allow-disconnected (allow_disconnected in the spec)."
        raise TopologyError(
            f"{name}-{n}{f' ({what})' if what else ''}{f' seed {seed}' if fam.random else ''} is not connected "
            f"({parts} components).{hint}"
        )
    return g


def describe_families() -> str:
    """Text for ``p2p topologies``."""
    lines = []
    for fam in FAMILIES.values():
        flags = " [seeded]" if fam.random else ""
        size = f"N >= {fam.min_n}"
        if fam.size_from:
            size = "N from the file" if fam.positional == "path" else "N from the network"
        lines.append(f"{fam.name:<10} {fam.description} ({size}){flags}")
        lines.append(f"{'':<10}   e.g. --topology {fam.usage()}")
        for p in fam.params:
            lines.append(f"{'':<10}   {p.describe()}")
    return "\n".join(lines)


def _require(cond: bool, name: str, n: int, why: str) -> None:
    if not cond:
        raise TopologyError(f"{name}-{n} is degenerate: {why}")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    return int(str(value).strip())


def _size(text: str, whole: str) -> int:
    try:
        return int(text.strip())
    except ValueError as e:
        raise TopologyError(f"topology size must be an integer, got {text.strip()!r} in {whole!r}") from e


def _conflict(text: str) -> int:
    raise TopologyError(f"size given twice in {text!r}")


def show_param(value: Any) -> str:
    """A parameter value as it is spelled on the command line."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))
