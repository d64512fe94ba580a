"""A real peer against scripted fake neighbours on loopback (port 0)."""

import asyncio
import os
import time

import pytest

from peer.node import Conn, exit_slot_wait
from peer.wire import HEADER, encode_frame, encode_handshake, encode_payload
from tests.peer.support import bad_client_run, events, listening_socket, make_peer


async def read_frames(reader, count):
    frames = []
    for _ in range(count):
        size = HEADER.unpack(await reader.readexactly(4))[0]
        frames.append(await reader.readexactly(size))
    return frames


async def line_topology_exchange(tmp_path):
    """Peer 1 in the line 0-1-2: fake 0 dials it, it dials fake 2 (the lower id dials)."""
    fake2_got = asyncio.Queue()

    async def fake2(reader, writer):
        handshake = await reader.readexactly(4)
        await fake2_got.put(handshake)
        frames = await read_frames(reader, 2)
        await fake2_got.put(frames)
        writer.write(encode_frame(encode_payload(2, [2])))
        await writer.drain()
        await reader.read()  # until the peer closes
        writer.close()

    server2 = await asyncio.start_server(fake2, "127.0.0.1", 0)
    port2 = server2.sockets[0].getsockname()[1]
    sock1 = listening_socket()
    port1 = sock1.getsockname()[1]
    peer = make_peer(tmp_path, 1, 3, {0: ("127.0.0.1", 0), 2: ("127.0.0.1", port2)}, sock1, expect=2, idle=5)
    run = asyncio.create_task(peer.run())

    reader0, writer0 = await asyncio.open_connection("127.0.0.1", port1)
    writer0.write(encode_handshake(0) + encode_frame(encode_payload(0, [0])))
    await writer0.drain()
    got0 = await asyncio.wait_for(read_frames(reader0, 2), 5)
    handshake2 = await asyncio.wait_for(fake2_got.get(), 5)
    got2 = await asyncio.wait_for(fake2_got.get(), 5)
    code = await asyncio.wait_for(run, 10)
    writer0.close()
    server2.close()
    return code, got0, handshake2, got2


def test_peer_floods_and_forwards_exactly(tmp_path):
    code, got0, handshake2, got2 = asyncio.run(line_topology_exchange(tmp_path))
    assert code == 0
    assert handshake2 == encode_handshake(1)
    # Peer 1 authors to both neighbours once its two links are up, and appends its id when forwarding.
    assert sorted(got0) == sorted([b'{"id":1,"hops":[1]}', b'{"id":2,"hops":[2,1]}'])
    assert sorted(got2) == sorted([b'{"id":1,"hops":[1]}', b'{"id":0,"hops":[0,1]}'])
    # The original log format: exactly the wire JSON, one per line.
    assert sorted((tmp_path / "1.txt").read_bytes().splitlines()) == [b'{"id":0,"hops":[0]}', b'{"id":2,"hops":[2]}']
    traffic = dict(line.split("; ", 1) for line in (tmp_path / "1.traffic.txt").read_text().splitlines())
    assert traffic == {"0": "23; 48", "2": "23; 48"}
    summary = events(tmp_path, 1)[-1]
    assert summary["ev"] == "summary" and summary["exit_reason"] == "expected"
    assert (summary["recv"], summary["sent"], summary["recv_bytes"], summary["sent_bytes"]) == (2, 4, 46, 96)


@pytest.mark.parametrize("data,reason", [
    (HEADER.pack(2 << 20), "oversize"),
    (encode_frame(b'{"id":0,"hops":[0,1]}'), "bad_sender"),
    (encode_frame(b"not json"), "bad_json"),
    (HEADER.pack(10) + b"abc", "truncated"),
])
def test_protocol_errors_drop_the_connection_and_are_logged(tmp_path, data, reason):
    asyncio.run(bad_client_run(tmp_path, data))
    errors = [e for e in events(tmp_path, 1) if e["ev"] == "error"]
    assert [e["reason"] for e in errors] == [reason]
    assert errors[0]["nbr"] == 0


async def slow_consumer_run(tmp_path, frames):
    stalled = asyncio.Event()

    async def never_reads(reader, writer):
        await reader.readexactly(4)  # the handshake, then never read again
        await stalled.wait()
        writer.close()

    server2 = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port2 = server2.sockets[0].getsockname()[1]
    sock1 = listening_socket()
    port1 = sock1.getsockname()[1]
    peer = make_peer(tmp_path, 1, 3, {0: ("127.0.0.1", 0), 2: ("127.0.0.1", port2)}, sock1,
                     idle=0.5, max_buffer=1 << 20, expect=frames)
    run = asyncio.create_task(peer.run())
    reader0, writer0 = await asyncio.open_connection("127.0.0.1", port1)
    writer0.write(encode_handshake(0))
    one = encode_frame(encode_payload(0, [0]))
    for _ in range(frames // 1000):
        writer0.write(one * 1000)
        await writer0.drain()
    code = await asyncio.wait_for(run, 30)
    stalled.set()
    writer0.close()
    server2.close()
    return code


def test_a_neighbour_that_stops_reading_is_dropped_not_buffered_forever(tmp_path):
    frames = 400_000  # ~9 MB forwarded towards a peer that never reads: beyond kernel buffers and the 1 MiB cap
    code = asyncio.run(slow_consumer_run(tmp_path, frames))
    assert code == 0
    errors = [e for e in events(tmp_path, 1) if e["ev"] == "error"]
    assert [(e["nbr"], e["reason"]) for e in errors] == [(2, "slow_consumer")]
    summary = events(tmp_path, 1)[-1]
    assert summary["recv"] == frames  # every frame from the healthy link was still delivered and logged
    assert summary["links"]["2"]["bytes_out"] <= (1 << 20) + 8 * 1024 * 1024


async def log_before_forward_run(tmp_path, rounds):
    """Line 0-1-2, peer 1 real: each frame fake 0 sends comes out at fake 2, which then looks
    at peer 1's log. Returns the line counts fake 2 saw, one per forward it read."""
    seen_lines = []
    log = tmp_path / "1.txt"

    async def fake2(reader, writer):
        await reader.readexactly(4)
        await read_frames(reader, 1)  # peer 1's own message
        writer.write(encode_frame(encode_payload(2, [2])))
        await writer.drain()
        for _ in range(rounds):
            await read_frames(reader, 1)  # 0's message forwarded by 1: logged by then?
            seen_lines.append(log.read_bytes().count(b"\n") if log.exists() else 0)
        await reader.read()
        writer.close()

    server2 = await asyncio.start_server(fake2, "127.0.0.1", 0)
    sock1 = listening_socket()
    port1 = sock1.getsockname()[1]
    peer = make_peer(tmp_path, 1, 3, {0: ("127.0.0.1", 0), 2: ("127.0.0.1", server2.sockets[0].getsockname()[1])},
                     sock1, expect=rounds + 1, idle=30)
    run = asyncio.create_task(peer.run())
    reader0, writer0 = await asyncio.open_connection("127.0.0.1", port1)
    writer0.write(encode_handshake(0))
    await read_frames(reader0, 2)  # peer 1's own message and 2's, forwarded: every link is up
    for i in range(rounds):
        writer0.write(encode_frame(encode_payload(0, [0])))
        await writer0.drain()
        while len(seen_lines) <= i and not run.done():  # fake 2 got the forward
            await asyncio.sleep(0.005)
    code = await asyncio.wait_for(run, 10)
    writer0.close()
    server2.close()
    return code, seen_lines


def test_a_received_message_is_logged_before_its_forwards_go_out(tmp_path):
    # Received lines used to wait for the next monitor tick (0.1 s) while the forwards left at
    # once: a peer killed in between had sent frames its own log never showed.
    rounds = 20
    code, seen_lines = asyncio.run(log_before_forward_run(tmp_path, rounds))
    assert code == 0
    # When fake 2 read the forward of 0's (i+1)-th frame, peer 1's log held 2's message and i+1 of 0's.
    assert seen_lines == [i + 2 for i in range(rounds)]
    assert (tmp_path / "1.txt").read_bytes() == b'{"id":2,"hops":[2]}\n' + b'{"id":0,"hops":[0]}\n' * rounds


async def lost_link_run(tmp_path, late_frames, link_deadline):
    """Peer 0 of 4 dials fake 1 (which sends its message and hangs up) and fake 2 (which speaks late)."""

    async def hangs_up(reader, writer):
        await reader.readexactly(4)
        writer.write(encode_frame(encode_payload(1, [1])))  # its own message, then gone
        await writer.drain()
        writer.close()

    async def speaks_late(reader, writer):
        await reader.readexactly(4)
        await read_frames(reader, 1)  # peer 0's own message: it authored with a link already lost
        await asyncio.sleep(0.8)  # as a peer does that waits for a link to a dead peer before authoring
        writer.write(b"".join(encode_frame(encode_payload(a, hops)) for a, hops in late_frames))
        await writer.drain()
        await reader.read()
        writer.close()

    servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in (hangs_up, speaks_late)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    sock0 = listening_socket()
    peer = make_peer(tmp_path, 0, 4, {1: ("127.0.0.1", ports[0]), 2: ("127.0.0.1", ports[1])}, sock0,
                     idle=0.3, link_deadline=link_deadline)
    loop = asyncio.get_running_loop()
    started = loop.time()
    code = await asyncio.wait_for(peer.run(), 60)
    for s in servers:
        s.close()
    return code, loop.time() - started


def test_a_lost_link_does_not_end_the_wait_for_an_unheard_author(tmp_path):
    # Author 3 is never heard: peer 0 must outwait a link deadline of silence, so author 2's
    # late message (0.8 s, beyond the 0.3 s idle) still reaches it.
    code, took = asyncio.run(lost_link_run(tmp_path, [(2, [2])], link_deadline=1.5))
    assert code == 0
    assert b'{"id":2,"hops":[2]}' in (tmp_path / "0.txt").read_bytes().splitlines()
    summary = events(tmp_path, 0)[-1]
    assert summary["exit_reason"] == "idle" and summary["recv"] == 2
    assert took >= 0.8 + 1.5


def test_a_peer_that_heard_every_author_but_lost_neighbours_ends_on_idle(tmp_path):
    # Authors 1, 2 and 3 heard (1 then lost): nothing more can come, so the 30 s link deadline is not waited.
    code, took = asyncio.run(lost_link_run(tmp_path, [(2, [2]), (3, [3, 2])], link_deadline=30))
    assert code == 0
    assert events(tmp_path, 0)[-1]["recv"] == 3
    assert took < 10


async def start_file_run(tmp_path, create_after, max_runtime):
    """Peer 0 of 2 with a start file; fake 1 notes when it is dialed and then speaks."""
    start_file = tmp_path / ".start"
    dialed_at = []

    async def fake1(reader, writer):
        dialed_at.append(time.monotonic())
        await reader.readexactly(4)
        if create_after is not None:  # else stay silent: only max_runtime can end the peer
            writer.write(encode_frame(encode_payload(1, [1])))
            await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(fake1, "127.0.0.1", 0)
    peer = make_peer(tmp_path, 0, 2, {1: ("127.0.0.1", server.sockets[0].getsockname()[1])}, listening_socket(),
                     expect=1, max_runtime=max_runtime, start_file=start_file)
    run = asyncio.create_task(peer.run())
    created_at = None
    if create_after is not None:
        await asyncio.sleep(create_after)
        assert not dialed_at  # nothing dialed while the barrier holds
        created_at = time.monotonic()
        start_file.touch()
    code = await asyncio.wait_for(run, 10)
    server.close()
    return code, dialed_at, created_at


def test_a_start_file_holds_the_dial_until_it_exists(tmp_path):
    code, dialed_at, created_at = asyncio.run(start_file_run(tmp_path, create_after=0.6, max_runtime=30))
    assert code == 0 and len(dialed_at) == 1 and dialed_at[0] >= created_at
    evs = [e["ev"] for e in events(tmp_path, 0)]
    assert evs.index("listen") < evs.index("go") < evs.index("link_up")
    assert "start_file_missing" not in evs


def test_failed_dials_are_counted_by_cause(tmp_path):
    """A neighbour that listens only after a while: the link event says how the dials failed."""

    async def scenario():
        port = listening_socket()
        port_no = port.getsockname()[1]
        port.close()  # nothing listens there yet: refused
        peer = make_peer(tmp_path, 0, 2, {1: ("127.0.0.1", port_no)}, listening_socket(), expect=1, max_runtime=30)
        run = asyncio.create_task(peer.run())
        await asyncio.sleep(0.3)

        async def fake1(reader, writer):
            await reader.readexactly(4)
            writer.write(encode_frame(encode_payload(1, [1])))
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(fake1, "127.0.0.1", port_no)
        code = await asyncio.wait_for(run, 10)
        server.close()
        return code

    assert asyncio.run(scenario()) == 0
    retries = [e for e in events(tmp_path, 0) if e["ev"] == "dial_retries"]
    assert len(retries) == 1 and retries[0]["nbr"] == 1
    assert retries[0]["errors"].get("ConnectionRefusedError", 0) >= 2


def test_a_start_file_that_never_comes_ends_the_peer_at_max_runtime(tmp_path):
    code, dialed_at, _ = asyncio.run(start_file_run(tmp_path, create_after=None, max_runtime=0.5))
    evs = events(tmp_path, 0)
    missing = [e for e in evs if e["ev"] == "start_file_missing"]
    assert len(missing) == 1 and missing[0]["path"].endswith(".start")
    assert evs[-1]["ev"] == "summary" and evs[-1]["exit_reason"] == "max_runtime"


def test_a_link_closed_before_its_first_frame_is_dialed_again(tmp_path):
    # As when the other side's handshake timer fires on a starved host: it takes the
    # connection, then drops it unheard. v1 neighbours always send their own message, so a
    # link that ends before any frame never was one.
    async def scenario():
        connections = []

        async def refuses_once(reader, writer):
            connections.append(1)
            await reader.readexactly(4)
            if len(connections) > 1:
                writer.write(encode_frame(encode_payload(1, [1])))
                await writer.drain()
                await reader.read()
            writer.close()

        server = await asyncio.start_server(refuses_once, "127.0.0.1", 0)
        peer = make_peer(tmp_path, 0, 2, {1: ("127.0.0.1", server.sockets[0].getsockname()[1])},
                         listening_socket(), expect=1, link_deadline=30)
        code = await asyncio.wait_for(peer.run(), 20)
        server.close()
        return code, len(connections)

    code, connections = asyncio.run(scenario())
    assert code == 0 and connections == 2
    evs = events(tmp_path, 0)
    assert [e["nbr"] for e in evs if e["ev"] == "link_up"] == [1, 1]
    assert evs[-1]["recv"] == 1 and evs[-1]["exit_reason"] == "expected"


# ---- exit slots ----------------------------------------------------------------------------


@pytest.mark.parametrize("me,n,slot,now", [(0, 1, 0.1, 5.0), (3, 10, 0.1, 1234.567), (999, 1000, 0.1, 1.7e9 + 0.05),
                                          (7, 8, 0.25, 0.0), (2, 4, 0.5, 3.99)])
def test_exit_slot_wait_lands_in_the_peers_own_slot(me, n, slot, now):
    wait = exit_slot_wait(me, n, slot, now)
    assert 0 <= wait < n * slot
    phase = (now + wait) % (n * slot)
    assert abs(phase - me * slot) < 1e-6 or abs(phase - me * slot - n * slot) < 1e-6


@pytest.fixture
def own_signal_handlers():
    """A done slot peer ignores SIGTERM/SIGINT; give the test process its handlers back."""
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield saved
    for sig, handler in saved.items():
        signal.signal(sig, handler)


async def exit_slot_run(tmp_path, signal_after=None):
    sock = listening_socket()
    peer = make_peer(tmp_path, 2, 4, {}, sock, expect=0, exit_slot=0.5)
    run = asyncio.create_task(peer.run())
    if signal_after is not None:
        await asyncio.sleep(signal_after)
        assert not run.done()
        assert events(tmp_path, 2)[-1]["ev"] == "summary"  # the summary does not wait for the slot
        peer._on_signal("sigterm")
    code = await asyncio.wait_for(run, 10)
    return code, time.time()


def test_a_peer_with_an_exit_slot_ends_inside_its_slot_after_its_summary(tmp_path, own_signal_handlers):
    import signal

    # Peer 2 of 4 with 0.5 s slots owns [1.0, 1.5) of every 2 s wall-clock cycle.
    code, ended = asyncio.run(exit_slot_run(tmp_path))
    assert code == 0
    # Done: a late stop signal can no longer turn this exit into 143.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert 1.0 <= ended % 2.0 < 1.5 + 0.2
    waits = [e for e in events(tmp_path, 2) if e["ev"] == "exit_slot"]
    assert len(waits) == 1 and 0 <= waits[0]["wait"] < 2.0
    assert events(tmp_path, 2)[-1]["ev"] == "summary"  # still the last record: readers rely on it


def test_sigterm_cuts_the_exit_slot_wait_short(tmp_path, own_signal_handlers):
    # Wait for the start of a cycle so that peer 2's slot is still >= 1 s away.
    while time.time() % 2.0 > 0.1:
        time.sleep(0.02)
    started = time.monotonic()
    code, _ = asyncio.run(exit_slot_run(tmp_path, signal_after=0.3))
    assert code == 0
    assert time.monotonic() - started < 0.9


def test_a_redialed_link_gets_its_new_deadline_at_once(tmp_path):
    # --redial (restart runs): a link that drops is dialed again with a full deadline. That
    # deadline must hold from the drop on, not from when the dial task first runs: a monitor
    # tick in between used to find the link "waiting" since the run's start and fail it.
    async def scenario():
        peer = make_peer(tmp_path, 0, 2, {1: ("127.0.0.1", 9)}, listening_socket(), redial=True, link_deadline=2)
        link = peer.links[1]

        class Closed:  # the connection's writer: only closed here
            def close(self):
                pass

        conn = Conn("dial", 0, 1, Closed(), frames=1)
        link.state, link.frames_in, link.conns, link.active = "up", 1, [conn], conn
        link.waiting_since = time.monotonic() - 100  # dialed long ago
        reader = asyncio.StreamReader()
        reader.feed_eof()  # the neighbour ended the link
        await peer._read_loop(link, conn, reader)
        # No await since: the new dial task has not run yet, as when a tick comes first.
        state, waited = link.state, time.monotonic() - link.waiting_since
        peer._finish("test")
        for task in list(peer._tasks):
            task.cancel()
        await asyncio.gather(*peer._tasks, return_exceptions=True)
        os.close(peer._msg_fd)
        os.close(peer._ev_fd)
        return state, waited

    state, waited = asyncio.run(scenario())
    assert state == "waiting" and waited < 1.0
