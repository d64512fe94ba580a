"""Link set-up with other implementations: real peers on loopback against a scripted neighbour
that sets up links as the original tool does (docs/design.md, "Link set-up")."""

import asyncio
import contextlib
import socket

import networkx as nx
import pytest

from peer.wire import HEADER, encode_frame, encode_handshake, encode_payload
from tests.peer.support import events, listening_socket, make_peer, wait_until


def expected_hop_lists(graph: nx.Graph, receiver: int) -> list[tuple[int, ...]]:
    """What v1 delivers to ``receiver``: one frame per simple path from another peer to it."""
    return sorted(tuple(path[:-1]) for a in graph if a != receiver
                  for path in nx.all_simple_paths(graph, a, receiver))


def received(tmp_path, peer) -> list[tuple[int, ...]]:
    import json

    return sorted(tuple(json.loads(line)["hops"]) for line in (tmp_path / f"{peer}.txt").read_bytes().splitlines())


class OriginalTool:
    """A v1 peer with the original tool's link set-up: it dials every neighbour once (a failed
    dial is never retried) and accepts from any; the first connection registered for an edge
    wins and any other is closed unread; it forwards only over links up when a frame arrives,
    and authors once every neighbour is registered.

    ``hold_dials``: before sending its id on a dial, it waits (up to a second) until the
    neighbour's own connection has reached it, and registers its dial first (the neighbour's
    connection waits for that): the neighbour's
    connection, on which the neighbour may already have written, is then the newer one and is
    closed unread — the case where frames are lost unless the neighbour sends them again."""

    def __init__(self, me: int, neighbours: dict[int, int], hold_dials: bool = False) -> None:
        self.me, self.neighbours, self.hold_dials = me, neighbours, hold_dials
        self.links: dict[int, asyncio.StreamWriter] = {}
        self.got: list[tuple[int, ...]] = []
        self.refused: list[int] = []  # neighbours whose connection was closed unread
        self.failed_dials: list[int] = []
        self.arrived = {nb: asyncio.Event() for nb in neighbours}
        self.registered = {nb: asyncio.Event() for nb in neighbours}
        self.authored = False
        self.tasks: list[asyncio.Task] = []

    async def start_server(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def dial_all(self) -> None:
        await asyncio.gather(*(self._dial(nb, port) for nb, port in self.neighbours.items()))

    async def _dial(self, nb: int, port: int) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            self.failed_dials.append(nb)  # never retried
            return
        if self.hold_dials:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived[nb].wait(), 1.0)
        await asyncio.sleep(0.01)  # the original waits about 10 ms before its id
        writer.write(encode_handshake(self.me))
        self._register(nb, reader, writer)

    async def _accept(self, reader, writer) -> None:
        try:
            nb = HEADER.unpack(await reader.readexactly(4))[0]
        except (asyncio.IncompleteReadError, OSError):
            writer.close()  # a dialer that gave up before its id
            return
        self.arrived[nb].set()
        if self.hold_dials:
            await self.registered[nb].wait()
        self._register(nb, reader, writer)

    def _register(self, nb: int, reader, writer) -> None:
        if nb in self.links:
            self.refused.append(nb)
            writer.close()  # unread
            return
        self.links[nb] = writer
        self.registered[nb].set()
        self.tasks.append(asyncio.get_running_loop().create_task(self._read(nb, reader)))
        if not self.authored and len(self.links) == len(self.neighbours):
            self.authored = True
            for w in self.links.values():
                w.write(encode_frame(encode_payload(self.me, [self.me])))

    async def _read(self, nb: int, reader) -> None:
        import json

        with contextlib.suppress(asyncio.IncompleteReadError, OSError):
            while True:
                size = HEADER.unpack(await reader.readexactly(4))[0]
                msg = json.loads(await reader.readexactly(size))
                hops = msg["hops"]
                self.got.append(tuple(hops))
                for t, w in self.links.items():  # v1, over the links up now
                    if t not in hops:
                        w.write(encode_frame(encode_payload(msg["id"], [*hops, self.me])))

    def close(self) -> None:
        self.server.close()
        for w in self.links.values():
            w.close()
        for t in self.tasks:
            t.cancel()


def triangle() -> nx.Graph:
    return nx.complete_graph(3)


async def run_against_original(tmp_path, tool_id: int, tool_first: bool, hold_dials: bool):
    """Triangle 0-1-2: ``tool_id`` is the scripted original tool, the others real peers.
    ``tool_first``: it starts and dials before the real peers listen (its dials are refused)."""
    graph = triangle()
    real = [p for p in graph if p != tool_id]
    # Bound but not listening yet: a dial to them is refused until they start.
    socks = {p: socket.socket() for p in real}
    for s in socks.values():
        s.bind(("127.0.0.1", 0))
    ports = {p: s.getsockname()[1] for p, s in socks.items()}
    tool = OriginalTool(tool_id, {p: ports[p] for p in real}, hold_dials=hold_dials)
    ports[tool_id] = await tool.start_server()
    if tool_first:
        await tool.dial_all()
        assert sorted(tool.failed_dials) == real  # nobody listened yet: refused, never retried
    peers = []
    for p in real:
        socks[p].listen(128)
        nbrs = {q: ("127.0.0.1", ports[q]) for q in graph[p]}
        peers.append(make_peer(tmp_path, p, 3, nbrs, socks[p], expect=len(expected_hop_lists(graph, p)),
                               dial_grace=0.2, link_deadline=20, max_runtime=30))
    runs = [asyncio.create_task(peer.run()) for peer in peers]
    if not tool_first:
        # The real peers' connections reach the tool first (a lower id dials at once, a higher
        # one after its grace); only then does the tool dial them.
        await asyncio.wait_for(asyncio.gather(*(tool.arrived[p].wait() for p in real)), 10)
        await tool.dial_all()
    codes = await asyncio.wait_for(asyncio.gather(*runs), 20)
    tool_got = sorted(tool.got)
    tool.close()
    return graph, real, codes, tool, tool_got


def check_exact(tmp_path, graph, real, codes, tool, tool_got, tool_id):
    assert codes == [0, 0]
    assert sorted(tool.links) == real  # every edge of the tool formed
    assert tool_got == expected_hop_lists(graph, tool_id)  # exactly once each: no frame lost
    for p in real:
        assert received(tmp_path, p) == expected_hop_lists(graph, p)
        summary = events(tmp_path, p)[-1]
        assert summary["ev"] == "summary" and summary["exit_reason"] == "expected"
        assert summary["errors"] == 0
        # Traffic counts every frame once: what the tool received from p is what p says it sent.
        sent = sum(len(encode_payload(h[0], list(h))) + 4 for h in tool_got if h[-1] == p)
        assert summary["links"][str(tool_id)]["bytes_out"] == sent


def test_a_tool_that_dialed_before_we_listened_still_gets_its_links(tmp_path):
    # The tool (id 0) started first; its dials were refused and it never dials again. The
    # real peers 1 and 2 (higher ids) dial it after their grace: its edges form.
    graph, real, codes, tool, tool_got = asyncio.run(
        run_against_original(tmp_path, tool_id=0, tool_first=True, hold_dials=False))
    check_exact(tmp_path, graph, real, codes, tool, tool_got, 0)
    for p in real:
        evs = events(tmp_path, p)
        assert any(e["ev"] == "dial" and e["nbr"] == 0 for e in evs)  # the grace dial
        assert any(e["ev"] == "link_up" and e["nbr"] == 0 and e["role"] == "dial" for e in evs)


@pytest.mark.parametrize("tool_id", [2, 0], ids=["tool-highest", "tool-lowest"])
def test_frames_on_a_connection_the_tool_closed_unread_are_sent_again(tmp_path, tool_id):
    # The real peers' connections reach the tool before it dials them (2: the lower ids dial
    # it at once; 0: the higher ids after their grace). It registers its own dials first and
    # closes their connections unread: what they wrote there (their own messages at least)
    # is sent again on the tool's connection.
    graph, real, codes, tool, tool_got = asyncio.run(
        run_against_original(tmp_path, tool_id=tool_id, tool_first=False, hold_dials=True))
    check_exact(tmp_path, graph, real, codes, tool, tool_got, tool_id)
    assert sorted(tool.refused) == real  # both newer connections were dropped unread
    key = str(tool_id)
    assert sum(events(tmp_path, p)[-1]["links"][key].get("resent", 0) for p in real) >= 2
    for p in real:
        evs = events(tmp_path, p)
        assert evs[-1]["links"][key].get("repeats", 0) == 0  # the tool resends nothing
        assert any(e["ev"] in ("conn_closed", "link_down") and e["nbr"] == tool_id for e in evs)


async def repeat_run(tmp_path):
    """Real peer 0 and scripted peer 1 (our own link set-up, played by hand): 0 dials 1 (A); 1
    then dials 0 (C) and writes its message on C; it then takes A, the preferred connection
    (dialed by the lower id), and sends what it wrote on C again there, as our peer does when C
    ends before it read anything on it. Peer 0 must log the message once."""
    got_a = asyncio.Event()
    a_streams = {}

    async def on_a(reader, writer):
        assert await reader.readexactly(4) == encode_handshake(0)
        a_streams["r"], a_streams["w"] = reader, writer
        got_a.set()

    server = await asyncio.start_server(on_a, "127.0.0.1", 0)
    sock0 = listening_socket()
    port0 = sock0.getsockname()[1]
    peer = make_peer(tmp_path, 0, 2, {1: ("127.0.0.1", server.sockets[0].getsockname()[1])}, sock0,
                     expect=1, dial_grace=0.0, idle=5)
    run = asyncio.create_task(peer.run())
    await asyncio.wait_for(got_a.wait(), 5)
    mine = encode_frame(encode_payload(1, [1]))
    c_reader, c_writer = await asyncio.open_connection("127.0.0.1", port0)
    c_writer.write(encode_handshake(1) + mine)
    await c_writer.drain()
    # Peer 0 authored on A (its only link was up): read its message there, then resend ours on A.
    size = HEADER.unpack(await asyncio.wait_for(a_streams["r"].readexactly(4), 5))[0]
    theirs = await a_streams["r"].readexactly(size)
    a_streams["w"].write(mine)
    await a_streams["w"].drain()
    # A settled for peer 0 (a frame came on it): it half-closes C, the loser, and we see EOF there.
    assert await asyncio.wait_for(c_reader.read(), 5) == b""
    c_writer.close()
    code = await asyncio.wait_for(run, 10)
    a_streams["w"].close()
    server.close()
    return code, theirs


def test_a_repeated_frame_from_a_neighbour_is_dropped_not_delivered(tmp_path):
    code, theirs = asyncio.run(repeat_run(tmp_path))
    assert code == 0 and theirs == encode_payload(0, [0])
    assert (tmp_path / "0.txt").read_bytes() == b'{"id":1,"hops":[1]}\n'  # once
    summary = events(tmp_path, 0)[-1]
    link = summary["links"]["1"]
    assert (summary["recv"], link["frames_in"], link["bytes_in"], link["repeats"]) == (1, 1, 23, 1)
    assert link["duplicates"] == 1
    actions = [(e["role"], e["action"]) for e in events(tmp_path, 0) if e["ev"] == "duplicate"]
    assert actions == [("accept", "kept"), ("accept", "closed")]
    assert "traffic" not in summary  # (the traffic file is checked below)
    assert (tmp_path / "0.traffic.txt").read_text() == "1; 23; 23\n"


async def full_slots_run(tmp_path):
    """Peer 1's 64 handshake slots are held by silent connections when peer 0 dials it: that dial
    is cut (too_many_connections) after peer 0 wrote its message into it. Then the slots free up."""
    sock0, sock1 = listening_socket(), listening_socket()
    port0, port1 = sock0.getsockname()[1], sock1.getsockname()[1]
    target = make_peer(tmp_path, 1, 2, {0: ("127.0.0.1", port0)}, sock1, expect=1, dial_grace=30,
                       link_deadline=30, max_runtime=30)
    run1 = asyncio.create_task(target.run())
    silent = [await asyncio.open_connection("127.0.0.1", port1) for _ in range(64)]
    await wait_until(lambda: target._pending_handshakes == 64)
    dialer = make_peer(tmp_path, 0, 2, {1: ("127.0.0.1", port1)}, sock0, expect=1, link_deadline=30,
                       max_runtime=30)
    run0 = asyncio.create_task(dialer.run())
    await wait_until(lambda: target.errors >= 1)  # peer 0's dial, cut
    await wait_until(lambda: any(e["ev"] == "authored" for e in events(tmp_path, 0)))
    for _reader, writer in silent:
        writer.close()
    return await asyncio.wait_for(asyncio.gather(run0, run1), 30)


def test_a_dial_cut_by_too_many_connections_loses_no_frame(tmp_path):
    """The compose --hostile replay's loss (56/60): frames written into a dial the acceptor cut
    for want of handshake slots are sent again once the link is up (docs/design.md, Link set-up)."""
    codes = asyncio.run(full_slots_run(tmp_path))
    assert codes == [0, 0]
    ev1 = events(tmp_path, 1)
    cuts = [e for e in ev1 if e["ev"] == "error"]  # peer 0 redials (with backoff) while the slots are full
    assert {e["reason"] for e in cuts} == {"too_many_connections"} and sum(e["count"] for e in cuts) >= 1
    ev0 = events(tmp_path, 0)
    assert sum(e["ev"] == "link_up" for e in ev0) >= 2  # the cut dial, and the one that held
    first_down = next(e for e in ev0 if e["ev"] == "link_down")
    assert first_down["resend"] == 1  # its message, written into the cut dial, kept to send again
    assert received(tmp_path, 0) == [(1,)] and received(tmp_path, 1) == [(0,)]
    assert ev0[-1]["exit_reason"] == ev1[-1]["exit_reason"] == "expected"
