"""``python -m peer.collector``: receive the peers' log files and store them in one directory.

The receiving end of peer/upload.py (wire format there). Runs as one service of a
Docker Swarm stack, on the node that holds the run directory, with
``runs/<run-id>/logs`` bind-mounted as ``--out``. Standard library only.

Guarantees:
- an upload is stored all or nothing: every file goes to a hidden temporary file
  in ``--out`` and all are renamed into place only after the end marker arrived;
- a file name must be ``<uploader-id>.<suffix>`` (no directory part, no leading
  dot): anything else is refused, so no upload can write outside ``--out`` nor
  overwrite another peer's files;
- a truncated upload (connection ends early or stalls past ``--conn-timeout``)
  stores nothing and is reported on stdout with the peer and the byte count.

It exits 0 once every one of ``--peers`` peers (ids 0..N-1) has uploaded, 1 when
``--timeout`` passes or it is told to stop (SIGTERM/SIGINT) before that.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from peer.upload import ACK_NO, ACK_OK, COUNT, HELLO, MAGIC, MAX_NAME, NAME_LEN, SIZE, VERSION, valid_name

CHUNK = 1 << 20
DEFAULT_MAX_FILE = 1 << 32  # 4 GiB per file


class _Refuse(Exception):
    """Refuse this upload with a reason sent back to the client."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


class _Truncated(Exception):
    pass


@dataclass
class Stats:
    uploads: int = 0
    files: int = 0
    bytes: int = 0
    peers: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


class Collector:
    """A threaded TCP server storing uploads into ``out_dir``; ``serve()`` runs it to the end."""

    def __init__(
        self,
        out_dir: Path,
        host: str = "0.0.0.0",
        port: int = 0,
        *,
        peers: int | None = None,
        max_file: int = DEFAULT_MAX_FILE,
        conn_timeout: float = 60.0,
        stream=None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.expected = None if peers is None else set(range(peers))
        self.max_file = max_file
        self.conn_timeout = conn_timeout
        self.stream = stream or sys.stdout
        self.stats = Stats()
        self.done = threading.Event()
        self._lock = threading.Lock()
        collector = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                collector._handle(self.request, self.client_address)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((host, port), Handler)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    def log(self, text: str) -> None:
        with self._lock:
            print(f"collector: {text}", file=self.stream, flush=True)

    # ---- one connection ----------------------------------------------------------------

    def _handle(self, sock: socket.socket, client: tuple) -> None:
        """Serve one upload: read hello and files into staging, then store them all or nothing."""
        sock.settimeout(self.conn_timeout)
        who = f"{client[0]}:{client[1]}"
        staged: list[tuple[Path, Path]] = []
        received = 0
        try:
            peer = self._read_hello(sock)
            who = f"peer {peer} ({who})"
            self._check_known(peer)
            # The loop stays here, not in a helper, so that ``received`` is current when a
            # truncation is reported and ``staged`` is current for the cleanup in ``finally``.
            while (header := self._read_file_header(sock, peer)) is not None:
                name, size = header
                tmp = self.out_dir / f".{name}.{secrets.token_hex(4)}.part"
                staged.append((tmp, self.out_dir / name))
                received += self._receive_file(sock, tmp, size)
            for tmp, final in staged:
                os.replace(tmp, final)
            stored = len(staged)
            staged = []
            complete = self._record(peer, stored, received)
            self.log(f"stored {stored} file(s), {received} bytes from {who}")
            _send(sock, ACK_OK + COUNT.pack(stored))
            if complete:
                self.done.set()
        except _Refuse as e:
            _discard(staged)  # before the refusal: once it is read, nothing of this upload may be left
            staged = []
            self._error(f"refused upload from {who}: {e}")
            reason = str(e).encode()[:1000]
            _send(sock, ACK_NO + NAME_LEN.pack(len(reason)) + reason)
            _drain(sock)
        except _Truncated as e:
            self._error(f"truncated upload from {who}: {e} (after {received} file bytes); nothing stored")
        except TimeoutError:
            self._error(f"truncated upload from {who}: no data for {self.conn_timeout:g} s; nothing stored")
        except OSError as e:
            self._error(f"upload from {who} failed: {type(e).__name__}: {e}; nothing stored")
        finally:
            _discard(staged)

    def _read_hello(self, sock: socket.socket) -> int:
        """Read the hello frame and return the uploading peer's id; refuse a wrong magic or version."""
        magic, version, peer = HELLO.unpack(_read(sock, HELLO.size))
        if magic != MAGIC:
            raise _Refuse("bad_magic", f"not an upload (starts with {magic!r})")
        if version != VERSION:
            raise _Refuse("bad_version", f"version {version}, expected {VERSION}")
        return peer

    def _check_known(self, peer: int) -> None:
        """Refuse a peer id outside the expected set (when one is set)."""
        if self.expected is not None and peer not in self.expected:
            raise _Refuse("unknown_peer", f"peer id {peer} is not in 0..{len(self.expected) - 1}")

    def _read_file_header(self, sock: socket.socket, peer: int) -> tuple[str, int] | None:
        """Read the next file's name and size; None at the end marker. Refuses bad names and sizes."""
        (length,) = NAME_LEN.unpack(_read(sock, NAME_LEN.size))
        if length == 0:
            return None
        if length > MAX_NAME:
            raise _Refuse("bad_name", f"name of {length} bytes")
        raw = _read(sock, length)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refuse("bad_name", f"name is not UTF-8: {raw[:60]!r}") from None
        if not valid_name(name, peer):
            raise _Refuse("bad_name", f"refused file name {name!r} (expected {peer}.<suffix>, no path)")
        (size,) = SIZE.unpack(_read(sock, SIZE.size))
        if size > self.max_file:
            raise _Refuse("too_large", f"{name}: {size} bytes exceeds {self.max_file}")
        return name, size

    def _record(self, peer: int, stored: int, received: int) -> bool:
        """Count a stored upload; True once every expected peer has uploaded."""
        with self._lock:
            self.stats.uploads += 1
            self.stats.files += stored
            self.stats.bytes += received
            self.stats.peers.add(peer)
            return self.expected is not None and self.expected <= self.stats.peers

    def _receive_file(self, sock: socket.socket, tmp: Path, size: int) -> int:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            left = size
            while left:
                chunk = sock.recv(min(CHUNK, left))
                if not chunk:
                    raise _Truncated(f"EOF inside {tmp.name[1:].rsplit('.', 2)[0]} ({size - left} of {size} bytes)")
                os.write(fd, chunk)
                left -= len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        return size

    def _error(self, text: str) -> None:
        with self._lock:
            self.stats.errors.append(text)
        self.log(text)

    # ---- life cycle ----------------------------------------------------------------------

    def serve(self, timeout: float | None = None) -> bool:
        """Serve until every expected peer uploaded (True), or ``timeout``/``stop()`` (False)."""
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        self.log(f"listening on {self.address[0]}:{self.address[1]}, storing into {self.out_dir}"
                 + (f", expecting {len(self.expected)} peers" if self.expected is not None else ""))
        try:
            self.done.wait(timeout)
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()
        complete = self.expected is not None and self.expected <= self.stats.peers
        missing = sorted((self.expected or set()) - self.stats.peers)
        self.log(
            f"{len(self.stats.peers)} peer(s) uploaded, {self.stats.files} file(s), {self.stats.bytes} bytes, "
            f"{len(self.stats.errors)} error(s)"
            + (f"; no upload from peers {missing[:20]}{'...' if len(missing) > 20 else ''}" if missing else "")
        )
        return complete

    def stop(self) -> None:
        self.done.set()


def _read(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _Truncated(f"EOF after {len(buf)} of {n} header bytes")
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


DRAIN_LIMIT = 1 << 20  # bytes of a refused upload read and dropped before closing
DRAIN_TIMEOUT = 1.0


def _drain(sock: socket.socket) -> None:
    """Half-close, then read what the uploader still sends (bounded) before the socket closes.

    Closing with unread input makes the kernel answer with a reset, which can destroy the
    refusal before the uploader reads it (tests/peer/test_upload.py saw ENOTCONN about once
    in seven runs); after the drain the uploader gets the reason instead."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(DRAIN_TIMEOUT)
        drained = 0
        while drained < DRAIN_LIMIT and (chunk := sock.recv(65536)):
            drained += len(chunk)
    except OSError:
        pass


def _discard(staged: list[tuple[Path, Path]]) -> None:
    """Remove staged part files of an upload that was not stored (best effort)."""
    for tmp, _ in staged:
        try:
            tmp.unlink()
        except OSError:
            pass


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m peer.collector",
                                description="Receive the peers' log uploads (peer --upload) into one directory.")
    p.add_argument("--listen", type=_address, default=("0.0.0.0", 7999), help="HOST:PORT (default 0.0.0.0:7999)")
    p.add_argument("--out", type=Path, default=Path("/logs"), help="directory to store the files in (default /logs)")
    p.add_argument("--peers", type=int, default=None, help="exit 0 once peers 0..N-1 have all uploaded")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 1)")
    p.add_argument("--conn-timeout", type=float, default=60.0, help="seconds a silent upload connection is kept")
    p.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE, help="largest file accepted")
    args = p.parse_args(argv)
    try:
        collector = Collector(args.out, *args.listen, peers=args.peers, max_file=args.max_file_bytes,
                              conn_timeout=args.conn_timeout)
    except OSError as e:
        print(f"collector: cannot start: {e}", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: collector.stop())
    started = time.monotonic()
    ok = collector.serve(args.timeout)
    collector.log(f"exiting after {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
