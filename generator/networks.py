"""Real networks (Internet Topology Zoo, SNDlib) from the ``topohub`` package, and link lengths.

topohub (MIT, pure Python, data included) stores each network as networkx node-link
data: nodes carry ``name`` and ``pos`` = [longitude, latitude], links carry ``dist``
(length in km). ``network_graph`` turns one into a peer graph: nodes relabelled 0..n-1
in the order of topohub's node ids (numerically), ``name`` and ``pos`` kept as node
attributes (pictures draw on them), the length as the link attribute ``km``; parallel
links collapse into one (the shortest), self-loops are dropped.

``link_latencies`` gives each link's one-way propagation delay: length / speed of light
in fibre (2/3 c = 199,861.6 km/s). A link without a length gets the great-circle
distance between its ends' positions; a link with neither is an error.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import math
from collections.abc import Mapping
from typing import Any

import networkx as nx

from generator.errors import TopologyError

# Family name on the command line -> topohub's collection.
COLLECTIONS = {"zoo": "topozoo", "sndlib": "sndlib"}
COLLECTION_TITLES = {"zoo": "Internet Topology Zoo", "sndlib": "SNDlib"}
SPEED_OF_LIGHT_KM_S = 299_792.458
# Light in optical fibre (refractive index ~1.5) travels at about two thirds of c.
FIBRE_KM_S = SPEED_OF_LIGHT_KM_S * 2 / 3  # 199,861.638... km/s
EARTH_RADIUS_KM = 6371.0  # mean radius (IUGG)

Edge = tuple[int, int]


def _data_dir(family: str):
    try:
        import topohub
    except ImportError:  # pragma: no cover - a dependency of the package
        raise TopologyError("real networks need the topohub package: pip install topohub") from None
    return importlib.resources.files(topohub) / "data" / COLLECTIONS[family]


@functools.cache
def network_names(family: str) -> tuple[str, ...]:
    """The networks of a collection (``zoo`` or ``sndlib``), sorted case-insensitively."""
    names = (f.name[: -len(".json")] for f in _data_dir(family).iterdir() if f.name.endswith(".json"))
    return tuple(sorted(names, key=lambda s: (s.lower(), s)))


def canonical_name(family: str, name: str) -> str:
    """``name`` as topohub spells it (matched case-insensitively); an unknown one is an error with suggestions."""
    names = network_names(family)
    if name in names:
        return name
    folded = {x.lower(): x for x in names}
    if name.lower() in folded:
        return folded[name.lower()]
    close = difflib.get_close_matches(name.lower(), folded, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(folded[c] for c in close)}?" if close else ""
    raise TopologyError(f"no {COLLECTION_TITLES[family]} network {name!r}{hint} (`p2p topologies --{family}` lists "
                        f"the {len(names)})")


@functools.cache
def _raw(family: str, name: str) -> dict[str, Any]:
    with (_data_dir(family) / f"{canonical_name(family, name)}.json").open() as f:
        return json.load(f)


def network_graph(family: str, name: str) -> nx.Graph:
    """The peer graph of a topohub network (a fresh copy each call)."""
    return graph_from_node_link(_raw(family, name), f"{family}:{canonical_name(family, name)}")


def network_size(family: str, name: str) -> tuple[int, int]:
    """(nodes, links) of a network, as ``network_graph`` builds it."""
    g = network_graph(family, name)
    return g.number_of_nodes(), g.number_of_edges()


def graph_from_node_link(data: Mapping[str, Any], where: str) -> nx.Graph:
    """Node-link data (topohub's shape) as a graph on 0..n-1; see the module docstring."""
    nodes = list(data.get("nodes") or ())
    if not nodes:
        raise TopologyError(f"{where} has no nodes")
    ids = [node["id"] for node in nodes]
    try:
        order = sorted(ids, key=int)
        if len({int(x) for x in ids}) != len(ids):
            raise ValueError
    except (TypeError, ValueError):
        order = sorted(ids, key=str)
    index = {node_id: i for i, node_id in enumerate(order)}
    g = nx.Graph()
    g.add_nodes_from(range(len(order)))
    for node in nodes:
        attrs = g.nodes[index[node["id"]]]
        attrs["name"] = str(node.get("name", node["id"]))
        pos = node.get("pos")
        if pos is not None and len(pos) == 2 and all(isinstance(x, (int, float)) for x in pos):
            attrs["pos"] = (float(pos[0]), float(pos[1]))
    for link in data.get("edges", data.get("links", ())):
        u, v = index[link["source"]], index[link["target"]]
        if u == v:
            continue  # a self-loop carries no gossip
        km = link.get("dist")
        old = g.edges[u, v].get("km") if g.has_edge(u, v) else None
        if g.has_edge(u, v) and (km is None or (old is not None and old <= km)):
            continue  # parallel links: keep the shortest length
        g.add_edge(u, v)
        if km is not None:
            g.edges[u, v]["km"] = float(km)
    return g


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance in km between two (longitude, latitude) points on a sphere of the Earth's mean radius."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def link_lengths(graph: nx.Graph, name: str = "the topology") -> dict[Edge, float]:
    """Length in km of every link (u < v): its ``km`` attribute, else the great-circle
    distance between its ends' ``pos``; a TopologyError names the first link with neither."""
    out: dict[Edge, float] = {}
    for u, v, attrs in graph.edges(data=True):
        edge = (u, v) if u < v else (v, u)
        km = attrs.get("km")
        if km is None:
            pu, pv = graph.nodes[u].get("pos"), graph.nodes[v].get("pos")
            if pu is None or pv is None:
                raise TopologyError(
                    f"--latency-from distance: link {edge[0]}-{edge[1]} of {name} has no length and "
                    f"{'neither end has' if pu is None and pv is None else 'one end has no'} position "
                    "(only real networks such as zoo:NAME or sndlib:NAME have them)")
            km = great_circle_km(pu, pv)
        out[edge] = km
    return out


def link_latencies(graph: nx.Graph, name: str = "the topology", speed_km_s: float = FIBRE_KM_S) -> dict[Edge, float]:
    """One-way propagation delay in seconds of every link (u < v): length / ``speed_km_s``."""
    return {edge: km / speed_km_s for edge, km in link_lengths(graph, name).items()}


def positions(graph: nx.Graph) -> dict[int, tuple[float, float]] | None:
    """(longitude, latitude) of every node, or None unless every node has one."""
    pos = {p: graph.nodes[p].get("pos") for p in graph.nodes}
    return None if not pos or any(xy is None for xy in pos.values()) else pos


def map_positions(graph: nx.Graph) -> dict[int, tuple[float, float]] | None:
    """Plane coordinates for drawing a graph whose nodes all have positions (None otherwise):
    equirectangular, x = longitude * cos(mean latitude), y = latitude, in degrees (y up).

    A network spanning the antimeridian is drawn in 0..360 degrees of longitude; nodes at
    one place (several routers of one city) are spread on a small circle so that each shows.
    """
    pos = positions(graph)
    if pos is None:
        return None
    lons = [lon for lon, _ in pos.values()]
    wrap = max(lons) - min(lons) > 180
    mean_lat = sum(lat for _, lat in pos.values()) / len(pos)
    squeeze = math.cos(math.radians(mean_lat))
    out = {p: ((lon % 360 if wrap else lon) * squeeze, lat) for p, (lon, lat) in pos.items()}
    xs, ys = [x for x, _ in out.values()], [y for _, y in out.values()]
    radius = 0.02 * (max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0)
    places: dict[tuple[float, float], list[int]] = {}
    for p in sorted(out):
        places.setdefault(out[p], []).append(p)
    for (x, y), group in places.items():
        if len(group) > 1:
            for k, p in enumerate(group):
                angle = 2 * math.pi * k / len(group)
                out[p] = (x + radius * math.cos(angle), y + radius * math.sin(angle))
    return out


def describe_networks(family: str) -> str:
    """Text for ``p2p topologies --zoo`` / ``--sndlib``: one network per line, name, nodes and links."""
    names = network_names(family)
    lines = [f"{COLLECTION_TITLES[family]} ({len(names)} networks, from the topohub package): "
             f"-t {family}:NAME, nodes and links as the peers get them"]
    width = max(map(len, names))
    for name in names:
        nodes, links = network_size(family, name)
        lines.append(f"  {name:<{width}}  {nodes:>4} nodes  {links:>4} links")
    return "\n".join(lines)
