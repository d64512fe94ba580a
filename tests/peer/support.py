"""What the peer tests share: a real peer on a port-0 socket, its events, and scripted neighbours."""

from __future__ import annotations

import asyncio
import json
import socket
import time

from peer.config import PeerConfig
from peer.node import Peer
from peer.wire import encode_frame, encode_handshake, encode_payload


def listening_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def make_peer(tmp_path, me, n, neighbours, sock, **kw) -> Peer:
    cfg = PeerConfig(id=me, n=n, neighbours=neighbours, log_dir=tmp_path, listen_fd=sock.detach(), **kw)
    return Peer(cfg)


def events(tmp_path, peer_id) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / f"{peer_id}.events.jsonl").read_text().splitlines()]


async def wait_until(condition, timeout=10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def bad_client_run(tmp_path, payload_bytes) -> int:
    """Peer 1 of 2; its neighbour 0 says hello, sends ``payload_bytes`` and EOF; the peer's exit code."""
    sock1 = listening_socket()
    port1 = sock1.getsockname()[1]
    peer = make_peer(tmp_path, 1, 2, {0: ("127.0.0.1", 0)}, sock1, idle=0.3, link_deadline=30)
    run = asyncio.create_task(peer.run())
    reader, writer = await asyncio.open_connection("127.0.0.1", port1)
    writer.write(encode_handshake(0) + payload_bytes)
    writer.write_eof()  # "truncated" is EOF inside a frame; the other errors are caught before EOF
    await writer.drain()
    await asyncio.wait_for(reader.read(), 5)  # the peer drops the connection
    writer.close()
    return await asyncio.wait_for(run, 10)


async def finish_as_peer_0(port1, run) -> int:
    """Neighbour 0 connects and sends its own message: a peer expecting one delivery ends; its exit code."""
    _reader0, writer0 = await asyncio.open_connection("127.0.0.1", port1)
    writer0.write(encode_handshake(0) + encode_frame(encode_payload(0, [0])))
    await writer0.drain()
    code = await asyncio.wait_for(run, 10)
    writer0.close()
    return code
