"""A real peer on loopback against scripted clients: what it logs for unusual input.

Non-canonical frames, ids too long for ``int()``, connection floods (aggregated error
records), connections abandoned before their handshake, and a log directory that already
holds a finished run.
"""

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peer.node import EXIT_ERROR
from peer.wire import HEADER, encode_frame, encode_handshake, encode_payload
from tests.peer.support import bad_client_run, events, finish_as_peer_0, listening_socket, make_peer, wait_until

REPO = Path(__file__).resolve().parents[2]


# ---- non-canonical frames ----------------------------------------------------------------


NONCANONICAL = [
    b'{"id": 0, "hops": [0]}',
    b'{"id":0,\n"hops":[0]}',
    b'{\n"hops" : [ 0 ] ,\r\n "id" : 0\n}',
]


async def noncanonical_run(tmp_path, payloads):
    """Peer 1 of 3 in the line 0-1-2: fake 0 sends ``payloads``, fake 2 records what peer 1 forwards."""
    forwarded = []

    async def fake2(reader, writer):
        await reader.readexactly(4)
        for _ in range(len(payloads) + 1):  # peer 1's own message and one forward per payload
            size = HEADER.unpack(await reader.readexactly(4))[0]
            forwarded.append(await reader.readexactly(size))
        await reader.read()
        writer.close()

    server2 = await asyncio.start_server(fake2, "127.0.0.1", 0)
    sock1 = listening_socket()
    port1 = sock1.getsockname()[1]
    peer = make_peer(tmp_path, 1, 3, {0: ("127.0.0.1", 0), 2: ("127.0.0.1", server2.sockets[0].getsockname()[1])},
                     sock1, idle=0.3)
    run = asyncio.create_task(peer.run())
    reader0, writer0 = await asyncio.open_connection("127.0.0.1", port1)
    writer0.write(encode_handshake(0) + b"".join(encode_frame(p) for p in payloads))
    await writer0.drain()
    await wait_until(lambda: len(forwarded) == len(payloads) + 1)
    peer._finish("test")
    code = await asyncio.wait_for(run, 10)
    writer0.close()
    server2.close()
    return code, forwarded


def test_non_canonical_frames_are_logged_in_canonical_form_and_counted(tmp_path):
    payloads = [encode_payload(0, [0]), *NONCANONICAL]
    code, forwarded = asyncio.run(noncanonical_run(tmp_path, payloads))
    assert code == 0
    # One whole line per delivery, the compact form: the log is never torn by a newline inside a frame.
    assert (tmp_path / "1.txt").read_bytes() == b'{"id":0,"hops":[0]}\n' * 4
    assert sorted(forwarded) == [b'{"id":0,"hops":[0,1]}'] * 4 + [b'{"id":1,"hops":[1]}']
    summary = events(tmp_path, 1)[-1]
    assert summary["ev"] == "summary"
    assert summary["noncanonical"] == 3 and summary["links"]["0"]["noncanonical"] == 3
    assert summary["links"]["2"]["noncanonical"] == 0
    # The byte counters still count what was on the wire.
    wire = sum(4 + len(p) for p in payloads)
    assert summary["links"]["0"]["bytes_in"] == wire == summary["recv_bytes"]
    assert (tmp_path / "1.traffic.txt").read_text().splitlines()[0] == f"0; {wire}; 23"
    assert summary["errors"] == 0


# ---- ids beyond Python's int() digit limit -------------------------------------------------


HUGE = b"1" * 5000  # int() refuses strings of more than 4300 digits (ValueError)


@pytest.mark.parametrize("payload,reason", [
    (b'{"id":' + HUGE + b',"hops":[0]}', "bad_id"),  # canonical form: the regex path
    (b'{"id":0,"hops":[0,' + HUGE + b"]}", "bad_hops"),
    (b'{"id": ' + HUGE + b', "hops": [0]}', "bad_id"),  # non-canonical: json.loads
    (b'{"id": 0, "hops": [0, ' + HUGE + b"]}", "bad_hops"),
    (b'{"id": -' + HUGE + b', "hops": [0]}', "bad_id"),
    (b'{"hops": [0], "id": 0, "x": ' + HUGE + b"}", "bad_type"),
])
def test_ids_too_long_for_int_are_protocol_errors(tmp_path, payload, reason):
    code = asyncio.run(bad_client_run(tmp_path, encode_frame(payload)))
    evs = events(tmp_path, 1)
    errors = [e for e in evs if e["ev"] == "error"]
    assert [(e["nbr"], e["reason"], e["count"]) for e in errors] == [(0, reason, 1)]
    assert [e["reason"] for e in evs if e["ev"] == "link_down"] == [reason]
    assert evs[-1]["ev"] == "summary" and evs[-1]["errors"] == 1 and evs[-1]["recv"] == 0
    assert code == 0


# ---- connection floods: aggregated error records -----------------------------------------


async def flood_run(tmp_path, connections, handshake):
    """Peer 1 of 10 (neighbour 0 only) gets ``connections`` connections that each send
    ``handshake`` and wait to be closed; then fake 0 speaks and the peer ends."""
    sock1 = listening_socket()
    port1 = sock1.getsockname()[1]
    peer = make_peer(tmp_path, 1, 10, {0: ("127.0.0.1", 0)}, sock1, expect=1, idle=30)
    run = asyncio.create_task(peer.run())

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port1)
        writer.write(handshake)
        await writer.drain()
        await reader.read()  # closed by the peer
        writer.close()

    for start in range(0, connections, 25):
        await asyncio.gather(*(one() for _ in range(min(25, connections - start))))
    await wait_until(lambda: peer.errors == connections)
    return await finish_as_peer_0(port1, run)


def test_a_connection_flood_writes_aggregated_error_records(tmp_path, capsys):
    connections = 500
    started = time.monotonic()
    code = asyncio.run(flood_run(tmp_path, connections, encode_handshake(5)))  # 5 is a peer, not a neighbour
    took = time.monotonic() - started
    assert code == 0
    evs = events(tmp_path, 1)
    errors = [e for e in evs if e["ev"] == "error"]
    assert {e["reason"] for e in errors} <= {"not_neighbour", "too_many_connections"}
    assert sum(e["count"] for e in errors) == connections
    assert evs[-1]["ev"] == "summary" and evs[-1]["errors"] == connections
    # One record when a reason first occurs in an interval, one more at its close: a handful
    # per second and reason, not one per connection.
    bound = 2 * 2 * (int(took / 1.0) + 2)  # 2 reasons, 2 records per 1 s interval
    assert len(errors) <= bound < 50
    assert len(evs) < 100
    first = next(e for e in errors if e["reason"] == "not_neighbour")
    assert first["count"] == 1 and first["detail"] == "handshake from id 5" and "since" not in first
    aggregated = [e for e in errors if e["count"] > 1]
    assert aggregated and all(e["since"] <= e["t"] for e in aggregated)
    stderr = capsys.readouterr().err.splitlines()
    assert len([line for line in stderr if line.startswith("peer 1: connection:")]) == len(errors)


def test_an_error_alone_in_its_interval_is_one_record_with_count_1(tmp_path, capsys):
    code = asyncio.run(flood_run(tmp_path, 1, encode_handshake(99)))
    assert code == 0
    errors = [e for e in events(tmp_path, 1) if e["ev"] == "error"]
    assert [(e["nbr"], e["reason"], e["detail"], e["count"]) for e in errors] == [
        (None, "unknown_peer", "handshake from id 99", 1)]
    assert capsys.readouterr().err.splitlines() == ["peer 1: connection: unknown_peer: handshake from id 99"]


# ---- connections abandoned before the handshake ------------------------------------------


async def abandoned_run(tmp_path, silent_closes, resets):
    sock1 = listening_socket()
    port1 = sock1.getsockname()[1]
    peer = make_peer(tmp_path, 1, 2, {0: ("127.0.0.1", 0)}, sock1, expect=1, idle=30, handshake_timeout=0.5)
    run = asyncio.create_task(peer.run())
    await wait_until(lambda: any(e["ev"] == "listen" for e in events(tmp_path, 1)))
    for _ in range(silent_closes):  # connect, then close without a byte (EOF)
        socket.create_connection(("127.0.0.1", port1)).close()
    for _ in range(resets):  # connect, then reset without a byte (RST)
        s = socket.create_connection(("127.0.0.1", port1))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    partial = socket.create_connection(("127.0.0.1", port1))
    partial.sendall(b"\x00\x00")  # half a handshake, then EOF: an error
    partial.close()
    mute = socket.create_connection(("127.0.0.1", port1))  # silent until the handshake timeout: an error
    await wait_until(lambda: peer.errors + getattr(peer, "abandoned", 0) == silent_closes + resets + 2)
    mute.close()
    return await finish_as_peer_0(port1, run)


def test_connections_gone_before_their_first_byte_are_abandoned_not_errors(tmp_path, capsys):
    silent_closes, resets = 40, 10
    code = asyncio.run(abandoned_run(tmp_path, silent_closes, resets))
    assert code == 0
    evs = events(tmp_path, 1)
    abandoned = [e for e in evs if e["ev"] == "abandoned"]
    assert sum(e["count"] for e in abandoned) == silent_closes + resets
    assert abandoned[0]["count"] == 1 and len(abandoned) < 10
    assert set(abandoned[0]) == {"t", "peer", "ev", "count"}
    errors = [e for e in evs if e["ev"] == "error"]
    # The same reason within one interval: the second is counted and written at its close.
    assert [(e["reason"], e["count"]) for e in errors] == [("no_handshake", 1), ("no_handshake", 1)]
    assert sorted(e["detail"] for e in errors) == ["IncompleteReadError after 2 of 4 bytes",
                                                   "TimeoutError after 0 of 4 bytes"]
    summary = evs[-1]
    assert summary["ev"] == "summary"
    assert (summary["errors"], summary["abandoned"]) == (2, silent_closes + resets)
    # Benign: no stderr line for an abandoned connection; the two errors have theirs.
    stderr = capsys.readouterr().err.splitlines()
    assert len(stderr) == 2 and all("no_handshake" in line for line in stderr)


# ---- a log directory that already holds a finished run -----------------------------------


def peer_process(log_dir, *args):
    """``python -m peer`` as peer 0 of 2, neighbour 1 at a port nobody listens on."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "peer", "--id", "0", "--n", "2", "--listen", "127.0.0.1:0",
           "--log-dir", str(log_dir), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished_run(tmp_path):
    """Peer 0 of 2 runs to its summary (its neighbour never comes: link deadline, exit 2)."""
    proc = peer_process(tmp_path, "-p", "1=127.0.0.1:9", "--link-deadline", "0.3", "--idle", "0.1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert events(tmp_path, 0)[-1]["ev"] == "summary"


def test_a_peer_refuses_to_start_on_logs_of_a_run_it_finished(tmp_path):
    finished_run(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = peer_process(tmp_path, "-p", "1=127.0.0.1:9", "--link-deadline", "0.3", "--idle", "0.1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_ERROR == 1
    events_file = str(tmp_path / "0.events.jsonl")
    assert len(err.splitlines()) == 1
    assert events_file in err and "already holds a summary" in err
    assert "p2p render" in err and "make compose-mesh" in err
    # Nothing was appended: the finished run's logs are exactly as they were.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_peer_killed_mid_run_starts_again_and_appends(tmp_path):
    # First incarnation: its neighbour is not there yet; SIGKILLed while it dials (no summary).
    first = peer_process(tmp_path, "-p", "1=127.0.0.1:9", "--link-deadline", "60", "--expect", "1")
    deadline = time.monotonic() + 20
    while not (tmp_path / "0.events.jsonl").exists() or not any(
            e["ev"] == "listen" for e in events(tmp_path, 0)):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert events(tmp_path, 0)[-1]["ev"] != "summary"

    async def second():
        async def fake1(reader, writer):
            await reader.readexactly(4)
            writer.write(encode_frame(encode_payload(1, [1])))
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(fake1, "127.0.0.1", 0)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "peer", "--id", "0", "--n", "2", "--listen", "127.0.0.1:0",
            "--log-dir", str(tmp_path), "-p", f"1=127.0.0.1:{server.sockets[0].getsockname()[1]}",
            "--expect", "1", env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        server.close()
        return proc.returncode, err

    code, err = asyncio.run(second())
    assert code == 0, err
    evs = events(tmp_path, 0)
    # A new incarnation in the same files: a second start record, one summary at the end.
    assert [e["ev"] for e in evs].count("start") == 2
    assert [e["ev"] for e in evs].count("summary") == 1 and evs[-1]["ev"] == "summary"
    assert evs[-1]["recv"] == 1
    assert (tmp_path / "0.txt").read_bytes() == b'{"id":1,"hops":[1]}\n'


def test_a_restarted_peer_ends_a_torn_last_line_before_appending(tmp_path):
    torn_event, torn_line = b'{"t":1.0,"peer":0,"ev":"progr', b'{"id":1,"ho'
    (tmp_path / "0.events.jsonl").write_bytes(b'{"t":0.5,"peer":0,"ev":"start"}\n' + torn_event)
    (tmp_path / "0.txt").write_bytes(b'{"id":1,"hops":[1]}\n' + torn_line)
    peer = make_peer(tmp_path, 0, 1, {}, listening_socket(), expect=0)
    assert asyncio.run(asyncio.wait_for(peer.run(), 10)) == 0
    lines = (tmp_path / "0.events.jsonl").read_bytes().splitlines()
    # The torn line stays one bad line of its own; the new incarnation's records are whole.
    assert lines[:2] == [b'{"t":0.5,"peer":0,"ev":"start"}', torn_event]
    assert [json.loads(x)["ev"] for x in lines[2:]][0] == "start"
    assert json.loads(lines[-1])["ev"] == "summary"
    assert (tmp_path / "0.txt").read_bytes() == b'{"id":1,"hops":[1]}\n' + torn_line + b"\n"


@pytest.mark.parametrize("links", [2, 3000])
def test_holds_summary_reads_the_tail_and_follows_a_long_last_record(tmp_path, links):
    from peer.node import holds_summary

    path = tmp_path / "0.events.jsonl"
    assert not holds_summary(path)
    progress = b"".join(b'{"t":%d.5,"peer":0,"ev":"progress","recv":%d,"sent":%d}\n' % (i, i, i)
                        for i in range(20_000))  # about 1 MB before the summary
    path.write_bytes(progress)
    assert not holds_summary(path)
    summary = {"t": 2.0, "peer": 0, "ev": "summary", "recv": 1,
               "links": {str(i): {"frames_in": i, "bytes_in": i, "state": "closed"} for i in range(links)}}
    line = json.dumps(summary, separators=(",", ":")).encode() + b"\n"
    assert (len(line) > (1 << 16)) == (links == 3000)  # longer than the tail the peer reads
    path.write_bytes(progress + line)
    assert holds_summary(path)
