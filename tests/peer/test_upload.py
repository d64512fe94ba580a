"""Log upload (peer/upload.py) and collector (peer/collector.py) over real sockets on port 0 (no Docker)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from peer.collector import Collector
from peer.upload import (
    ACK_NO,
    ACK_OK,
    HELLO,
    MAGIC,
    NAME_LEN,
    SIZE,
    VERSION,
    log_files,
    send_upload,
    upload_logs,
    valid_name,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class Running:
    """A collector serving in a thread; ``result`` is what ``serve()`` returned."""

    def __init__(self, out: Path, peers: int | None = 1, **kw) -> None:
        self.stream = io.StringIO()
        self.collector = Collector(out, "127.0.0.1", 0, peers=peers, stream=self.stream, **kw)
        self.result: bool | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.result = self.collector.serve(timeout=20)

    @property
    def address(self) -> tuple[str, int]:
        return self.collector.address

    def stop(self) -> bool | None:
        self.collector.stop()
        self.thread.join(10)
        return self.result

    @property
    def log(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def collector(tmp_path):
    started: list[Running] = []

    def start(peers: int | None = 1, **kw) -> Running:
        started.append(Running(tmp_path / "out", peers, **kw))
        return started[-1]

    yield start
    for r in started:
        r.stop()


def peer_logs(d: Path, peer: int, sizes: dict[str, int] | None = None) -> dict[str, bytes]:
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for suffix, size in (sizes or {"txt": 200, "traffic.txt": 20, "events.jsonl": 300}).items():
        data = os.urandom(size)
        (d / f"{peer}.{suffix}").write_bytes(data)
        files[f"{peer}.{suffix}"] = data
    return files


def raw_upload(address, peer: int, records: list[tuple[bytes, bytes]], end: bool = True,
               cut: int | None = None) -> bytes:
    """Speak the wire format by hand; ``cut`` sends only that many bytes and closes. Returns the reply."""
    data = HELLO.pack(MAGIC, VERSION, peer)
    for name, body in records:
        data += NAME_LEN.pack(len(name)) + name + SIZE.pack(len(body)) + body
    if end:
        data += NAME_LEN.pack(0)
    if cut is not None:
        data = data[:cut]
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    return reply


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def stored(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


# ---- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["3.txt", "3.traffic.txt", "3.events.jsonl", "3.stderr.txt", "0.txt", "12.x_y-z"])
def test_valid_names(name):
    assert valid_name(name)


@pytest.mark.parametrize(
    "name",
    ["../3.txt", "3.txt/../../x", "/etc/passwd", "3/../x", ".3.txt", "3..txt", "3.a..b", "..", ".", "",
     "3", "x.txt", "03.txt", "3.txt\x00", "3.\\..\\x", "3. txt", "-1.txt", "3." + "a" * 300],
)
def test_invalid_names(name):
    assert not valid_name(name)


def test_name_must_belong_to_the_uploader():
    assert valid_name("3.txt", 3)
    assert not valid_name("4.txt", 3)
    assert not valid_name("33.txt", 3)


def test_log_files_takes_only_this_peers_files(tmp_path):
    peer_logs(tmp_path, 3)
    peer_logs(tmp_path, 4)
    (tmp_path / ".3.traffic.txt.tmp").write_text("partial")
    (tmp_path / "3.sub").mkdir()
    (tmp_path / "3.link").symlink_to(tmp_path / "4.txt")
    assert [p.name for p in log_files(tmp_path, 3)] == ["3.events.jsonl", "3.traffic.txt", "3.txt"]


# ---- round trips ------------------------------------------------------------------------


def test_upload_round_trip(tmp_path, collector):
    files = peer_logs(tmp_path / "src", 3, {"txt": 3 << 20, "traffic.txt": 0, "events.jsonl": 1234})
    peer_logs(tmp_path / "src", 4)  # someone else's: not uploaded
    c = collector(peers=None)
    err = io.StringIO()
    assert upload_logs(c.address, tmp_path / "src", 3, stream=err)
    out = tmp_path / "out"
    assert stored(out) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert "uploaded 3 file(s)" in err.getvalue()
    assert c.collector.stats.peers == {3}


def test_collector_ends_when_every_peer_uploaded(tmp_path, collector):
    c = collector(peers=3)
    for p in range(3):
        peer_logs(tmp_path / f"src{p}", p)
        assert upload_logs(c.address, tmp_path / f"src{p}", p, stream=io.StringIO())
    c.thread.join(10)
    assert c.result is True
    assert len(stored(tmp_path / "out")) == 9
    assert "3 peer(s) uploaded, 9 file(s)" in c.log


def test_collector_timeout_names_missing_peers(tmp_path):
    stream = io.StringIO()
    c = Collector(tmp_path / "out", "127.0.0.1", 0, peers=3, stream=stream)
    peer_logs(tmp_path / "src", 1)
    threading.Timer(0.2, lambda: upload_logs(c.address, tmp_path / "src", 1, stream=io.StringIO())).start()
    assert c.serve(timeout=1.5) is False
    assert "no upload from peers [0, 2]" in stream.getvalue()


def test_a_repeated_upload_replaces_the_files(tmp_path, collector):
    c = collector(peers=None)
    peer_logs(tmp_path / "src", 2)
    assert upload_logs(c.address, tmp_path / "src", 2, stream=io.StringIO())
    newer = peer_logs(tmp_path / "src", 2, {"txt": 10, "traffic.txt": 5, "events.jsonl": 7})
    assert upload_logs(c.address, tmp_path / "src", 2, stream=io.StringIO())
    assert {n: (tmp_path / "out" / n).read_bytes() for n in stored(tmp_path / "out")} == newer


def test_raw_upload_acknowledged(tmp_path, collector):
    c = collector(peers=None)
    reply = raw_upload(c.address, 0, [(b"0.txt", b"line\n"), (b"0.traffic.txt", b"")])
    assert reply == ACK_OK + (2).to_bytes(4, "big")
    assert (tmp_path / "out" / "0.txt").read_bytes() == b"line\n"
    assert (tmp_path / "out" / "0.traffic.txt").read_bytes() == b""


# ---- hostile or broken uploads ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [b"../evil.txt", b"3.txt/../../evil.txt", b"/tmp/evil.txt", b"3/../../evil.txt", b".3.txt", b"..", b"4.txt",
     b"3.\xff.txt"],
)
def test_path_traversal_and_foreign_names_refused(tmp_path, collector, name):
    c = collector(peers=None)
    reply = raw_upload(c.address, 3, [(b"3.txt", b"fine\n"), (name, b"evil\n")])
    assert reply.startswith(ACK_NO), reply
    assert b"bad_name" in reply
    assert stored(tmp_path / "out") == []  # all or nothing: not even the good file
    assert not (tmp_path / "evil.txt").exists()
    assert "refused upload from peer 3" in c.log


def test_unknown_peer_and_bad_magic_refused(tmp_path, collector):
    c = collector(peers=2)
    assert b"unknown_peer" in raw_upload(c.address, 5, [(b"5.txt", b"x\n")])
    with socket.create_connection(c.address, timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = s.recv(100)
    assert reply.startswith(ACK_NO) and b"bad_magic" in reply
    assert stored(tmp_path / "out") == []


def test_oversize_file_refused(tmp_path, collector):
    c = collector(peers=None, max_file=100)
    assert b"too_large" in raw_upload(c.address, 1, [(b"1.txt", b"x" * 101)])
    assert stored(tmp_path / "out") == []


@pytest.mark.parametrize("where", ["inside_hello", "inside_name", "inside_file", "before_end_marker"])
def test_truncated_upload_reported_and_nothing_stored(tmp_path, collector, where):
    c = collector(peers=None)
    records = [(b"3.txt", b"a" * 1000), (b"3.events.jsonl", b"b" * 1000)]
    full = len(HELLO.pack(MAGIC, VERSION, 3)) + sum(2 + len(n) + 8 + len(b) for n, b in records)
    cut = {"inside_hello": 5, "inside_name": HELLO.size + 4, "inside_file": full - 500,
           "before_end_marker": full}[where]
    reply = raw_upload(c.address, 3, records, end=False, cut=cut)
    assert reply == b""  # no acknowledgement
    assert wait_for(lambda: "truncated upload" in c.log), c.log
    assert c.collector.stats.errors and "truncated" in c.collector.stats.errors[0]
    assert stored(tmp_path / "out") == []  # no files and no leftover .part files
    assert c.collector.stats.peers == set()


def test_stalled_upload_times_out(tmp_path, collector):
    c = collector(peers=None, conn_timeout=0.5)
    with socket.create_connection(c.address, timeout=5) as s:
        s.sendall(HELLO.pack(MAGIC, VERSION, 0) + NAME_LEN.pack(5) + b"0.txt" + SIZE.pack(100) + b"x" * 10)
        assert wait_for(lambda: "truncated upload" in c.log, 5), c.log
    assert stored(tmp_path / "out") == []


def test_client_sees_refusal_and_stops_at_once(tmp_path, collector):
    c = collector(peers=2)
    peer_logs(tmp_path / "src", 7)
    err = io.StringIO()
    t = time.monotonic()
    assert upload_logs(c.address, tmp_path / "src", 7, deadline=30, stream=err) is False
    assert time.monotonic() - t < 5
    assert "refused" in err.getvalue() and "unknown_peer" in err.getvalue()


def test_client_retries_until_the_collector_listens(tmp_path):
    peer_logs(tmp_path / "src", 0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "ok", upload_logs(("127.0.0.1", port), tmp_path / "src", 0, deadline=20, stream=io.StringIO())))
    t.start()
    time.sleep(0.8)
    c = Collector(tmp_path / "out", "127.0.0.1", port, peers=1, stream=io.StringIO())
    assert c.serve(timeout=15) is True
    t.join(10)
    assert result["ok"] is True
    assert len(stored(tmp_path / "out")) == 3


def test_client_gives_up_after_its_deadline(tmp_path):
    peer_logs(tmp_path / "src", 0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = io.StringIO()
    t = time.monotonic()
    assert upload_logs(("127.0.0.1", port), tmp_path / "src", 0, deadline=1.0, stream=err) is False
    assert time.monotonic() - t < 4
    assert "failed after" in err.getvalue()


def test_client_sees_a_truncating_server(tmp_path):
    """A server that closes without acknowledging: send_upload raises (upload_logs would retry)."""
    peer_logs(tmp_path / "src", 0)
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = srv.accept()
        conn.recv(10)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    with pytest.raises(OSError):
        with socket.create_connection(srv.getsockname(), timeout=5) as s:
            send_upload(s, 0, log_files(tmp_path / "src", 0))
    srv.close()


# ---- the command lines: python -m peer.collector and python -m peer --upload ------------


def test_peer_uploads_at_exit_to_the_collector_command(tmp_path):
    """A real peer process with --upload and a real collector process: the logs arrive, both exit 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = tmp_path / "out"
    col = subprocess.Popen([sys.executable, "-m", "peer.collector", "--listen", f"127.0.0.1:{port}", "--out", str(out),
                            "--peers", "1", "--timeout", "30"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        peer = subprocess.run(
            [sys.executable, "-m", "peer", "--id", "0", "--n", "1", "--listen", "127.0.0.1:0",
             "--log-dir", str(tmp_path / "private"), "--idle", "0.1", "--upload", f"127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, timeout=30,
        )
        assert peer.returncode == 0, peer.stderr
        assert "uploaded 3 file(s)" in peer.stderr
        assert col.wait(timeout=15) == 0
    finally:
        if col.poll() is None:
            col.kill()
        log = col.communicate()[0]
    assert "1 peer(s) uploaded, 3 file(s)" in log
    assert stored(out) == ["0.events.jsonl", "0.traffic.txt", "0.txt"]
    events = [json.loads(line) for line in (out / "0.events.jsonl").read_text().splitlines()]
    assert events[-1]["ev"] == "summary"
    assert (out / "0.events.jsonl").read_bytes() == (tmp_path / "private" / "0.events.jsonl").read_bytes()


def test_peer_exits_non_zero_when_its_upload_fails(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import asyncio

    import peer.node as node
    from peer.node import EXIT_ERROR, Peer, PeerConfig

    cfg = PeerConfig(id=0, n=1, neighbours={}, log_dir=tmp_path, listen=("127.0.0.1", 0), idle=0.1,
                     upload=("127.0.0.1", port))
    calls = []
    real = node.upload_logs

    def quick(address, log_dir, peer):
        calls.append(address)
        return real(address, log_dir, peer, deadline=0.5, stream=io.StringIO())

    node.upload_logs = quick
    try:
        assert asyncio.run(Peer(cfg).run()) == EXIT_ERROR
    finally:
        node.upload_logs = real
    assert calls == [("127.0.0.1", port)]


def test_collector_command_stops_on_sigterm(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    col = subprocess.Popen([sys.executable, "-m", "peer.collector", "--listen", "127.0.0.1:0", "--out",
                            str(tmp_path / "out"), "--peers", "2"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert col.stdout.readline().startswith("collector: listening on")
        col.terminate()
        assert col.wait(timeout=10) == 1
    finally:
        if col.poll() is None:
            col.kill()
    assert "no upload from peers [0, 1]" in col.communicate()[0]
