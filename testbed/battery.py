"""The hostile-input battery itself: standard library and peer.wire only, so that it also runs inside
a container on a run's network (``python3 -c`` with this file's text, in the peer image, which holds
the peer package). testbed/hostile.py aims it; see its docstring for the cases.

As a script: ``python3 battery.py HOST PORT N STRANGER LOG [WAIT]`` waits (up to WAIT seconds) for the
attacked peer's first logged message in LOG (its sender's link is up), fires, and prints the result
as JSON; STRANGER ``-1``: none.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from peer.wire import encode_handshake

SILENT_CONNECTIONS = 100
CONNECT_TIMEOUT = 5.0


def connect(addr: tuple[str, int], payload: bytes = b"", close: bool = True) -> socket.socket:
    """One connection to ``addr``, ``payload`` sent, closed unless ``close`` is False."""
    s = socket.create_connection(addr, timeout=CONNECT_TIMEOUT)
    if payload:
        s.sendall(payload)
    if close:
        s.close()
    return s


@dataclass(frozen=True)
class Target:
    """The attacked peer: its address, the run's size, an established neighbour and a non-neighbour."""

    addr: tuple[str, int]
    n: int
    linked: int | None  # a neighbour whose link is up (None: skip the duplicate-link case)
    stranger: int | None  # a peer that is no neighbour (None in a mesh)


def _cases(t: Target) -> list[tuple[str, Callable[[], None]]]:
    oversize = struct.pack(">I", 1 << 30) + b"{"
    cases = [
        ("unknown peer id in the handshake", lambda: connect(t.addr, encode_handshake(t.n + 99))),
        ("EOF inside the handshake", lambda: connect(t.addr, b"\x00\x01")),
        ("frame of 1 GiB announced after an unknown id", lambda: connect(t.addr, encode_handshake(t.n + 98) + oversize)),
    ]
    if t.stranger is not None:
        cases.append(("handshake from a peer that is no neighbour", lambda: connect(t.addr, encode_handshake(t.stranger))))
    if t.linked is not None:
        cases.append(("second connection for an established edge, then garbage",
                      lambda: connect(t.addr, encode_handshake(t.linked) + b"\x00" * 64)))
    return cases


@dataclass
class BatteryResult:
    """What each case did: sent, or refused (the peer no longer listened)."""

    sent: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    silent_opened: int = 0


def fire(target: Target) -> BatteryResult:
    """Run every case against ``target`` once, then open and close the silent flood."""
    out = BatteryResult()
    for name, case in _cases(target):
        try:
            case()
            out.sent.append(name)
        except OSError as e:
            out.refused.append(f"{name} ({type(e).__name__}: {e})")
    silent = []
    for _ in range(SILENT_CONNECTIONS):
        try:
            silent.append(connect(target.addr, close=False))
        except OSError:
            break
    out.silent_opened = len(silent)
    time.sleep(0.2)  # let the peer see them all before they go
    for s in silent:
        s.close()
    return out


def first_sender(path: str, wait: float) -> int | None:
    """The sender (last hop) of the first line of a message log, once there (a neighbour whose link is
    up); None if none came within ``wait`` seconds."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            with open(path, "rb") as f:
                line = f.readline()
        except OSError:
            line = b""
        if line.endswith(b"\n"):
            hops = line[line.find(b"[") + 1 : line.find(b"]")].split(b",")
            return int(hops[-1]) if hops[-1].isdigit() else None
        time.sleep(0.01)
    return None


def main(argv: list[str]) -> int:
    host, port, n, stranger, log = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    linked = first_sender(log, float(argv[5]) if len(argv) > 5 else 60.0)
    result = fire(Target((host, port), n, linked, None if stranger < 0 else stranger))
    print(json.dumps(asdict(result)))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
