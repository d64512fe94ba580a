"""Hand a peer's log files to a collector over TCP (standard library only).

Used where the peers share no file system (Docker Swarm across hosts): each peer
writes its logs to a private directory and, once it has written its summary,
uploads them to ``python -m peer.collector`` (see peer/collector.py).

Wire format (all integers big-endian), one upload per connection:

    client: b"P2PU" u8 version=1 u32 peer-id
            then per file:  u16 name-length (> 0)  name (UTF-8)  u64 size  size bytes
            then u16 0      (end of upload)
    server: b"OK" u32 files-written          the upload is stored (all files, atomically)
         or b"NO" u16 length  reason (UTF-8)  refused for good (bad name, too large, ...)

A connection that ends before the end marker is a truncated upload: the collector
keeps nothing of it and says so in its log; the client retries the whole upload.
A file name is a plain base name of the uploading peer, ``<peer-id>.<suffix>``
(``3.txt``, ``3.events.jsonl``): no directory part, no leading dot.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import sys
import time
from pathlib import Path

MAGIC = b"P2PU"
VERSION = 1
HELLO = struct.Struct(">4sBI")  # magic, version, peer id
NAME_LEN = struct.Struct(">H")
SIZE = struct.Struct(">Q")
COUNT = struct.Struct(">I")
MAX_NAME = 255
ACK_OK = b"OK"
ACK_NO = b"NO"
DEFAULT_PORT = 7999
_NAME_RE = re.compile(r"^(0|[1-9][0-9]{0,8})\.[A-Za-z0-9_][A-Za-z0-9._-]{0,200}$")


class UploadRefused(Exception):
    """The collector refused the upload for good (retrying would not help)."""


def valid_name(name: str, peer: int | None = None) -> bool:
    """A plain log-file name ``<id>.<suffix>`` (of ``peer`` when given): no path, no leading dot, no ``..``."""
    m = _NAME_RE.match(name)
    if not m or ".." in name or len(name.encode()) > MAX_NAME:
        return False
    return peer is None or int(m.group(1)) == peer


def log_files(log_dir: Path, peer: int) -> list[Path]:
    """This peer's regular files in ``log_dir`` (``<peer>.*``), sorted; temporary dot-files are skipped."""
    out = []
    try:
        entries = sorted(os.scandir(log_dir), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if valid_name(entry.name, peer) and entry.is_file(follow_symlinks=False):
            out.append(Path(entry.path))
    return out


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"collector closed the connection ({len(buf)} of {n} reply bytes)")
        buf += chunk
    return buf


def send_upload(sock: socket.socket, peer: int, files: list[Path]) -> tuple[int, int]:
    """Send one complete upload over a connected socket and read the reply: (files, bytes) stored.

    Raises ``UploadRefused`` on a refusal and ``OSError`` on any transport problem.
    """
    sock.sendall(HELLO.pack(MAGIC, VERSION, peer))
    total = 0
    for path in files:
        name = path.name.encode()
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            sock.sendall(NAME_LEN.pack(len(name)) + name + SIZE.pack(size))
            sent = sock.sendfile(f, 0, size) if size else 0
            if sent != size:
                raise ConnectionError(f"{path.name}: sent {sent} of {size} bytes (file shrank?)")
        total += size
    sock.sendall(NAME_LEN.pack(0))
    status = _recv_exact(sock, 2)
    if status == ACK_OK:
        return COUNT.unpack(_recv_exact(sock, COUNT.size))[0], total
    if status == ACK_NO:
        (length,) = NAME_LEN.unpack(_recv_exact(sock, NAME_LEN.size))
        raise UploadRefused(_recv_exact(sock, length).decode("utf-8", "replace"))
    raise ConnectionError(f"unexpected reply {status!r} from the collector")


def upload_logs(
    address: tuple[str, int],
    log_dir: Path,
    peer: int,
    *,
    deadline: float = 120.0,
    timeout: float = 30.0,
    stream=None,
) -> bool:
    """Upload this peer's log files to the collector at ``address``; True once it acknowledged them.

    Retries (connection refused, name not resolvable yet, truncated transfer) with
    backoff until ``deadline`` seconds have passed; a refusal ends it at once. Every
    outcome is reported on ``stream`` (stderr by default).
    """
    stream = stream or sys.stderr
    host, port = address
    files = log_files(Path(log_dir), peer)
    end = time.monotonic() + deadline
    delay, attempt, last = 0.1, 0, ""
    while True:
        attempt += 1
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                stored, size = send_upload(sock, peer, files)
        except UploadRefused as e:
            print(f"peer {peer}: upload to {host}:{port} refused: {e}", file=stream, flush=True)
            return False
        except OSError as e:  # includes socket.gaierror, timeouts, ConnectionError
            last = f"{type(e).__name__}: {e}"
            if time.monotonic() + delay > end:
                print(f"peer {peer}: upload to {host}:{port} failed after {attempt} attempt(s) "
                      f"in {deadline:g} s: {last}", file=stream, flush=True)
                return False
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        print(f"peer {peer}: uploaded {stored} file(s), {size} bytes to {host}:{port}"
              + (f" (attempt {attempt})" if attempt > 1 else ""), file=stream, flush=True)
        return True
