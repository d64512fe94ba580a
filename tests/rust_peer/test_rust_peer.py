"""The Rust peer (rust-peer/) as local processes: exact v1 counts and bytes, read back by
the analysis of the original log format, plus its command line, signals and handshake.

Skipped with a reason when cargo is missing; the binary is built once per session.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest

from generator.predict import predict
from generator.topologies import cycle_graph, mesh_graph

ROOT = Path(__file__).resolve().parents[2]
CRATE = ROOT / "rust-peer"
BINARY = CRATE / "target" / "release" / "p2p-peer-rs"
RUN_TIMEOUT = 60

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def binary() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed: the Rust peer cannot be built (https://rustup.rs)")
    done = subprocess.run(
        [cargo, "build", "--release", "--locked", "--offline"], cwd=CRATE, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return BINARY


def free_ports(k: int) -> list[int]:
    socks = []
    for _ in range(k):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_network(binary: Path, graph: nx.Graph, logs: Path, idle: float = 1.0) -> list[subprocess.Popen]:
    ports = free_ports(graph.number_of_nodes())
    procs = []
    for i in sorted(graph.nodes):
        cmd = [str(binary), "--id", str(i), "--listen", f"127.0.0.1:{ports[i]}", "--logs", str(logs), "--idle", str(idle)]
        for j in sorted(graph.neighbors(i)):
            cmd += ["--peer", f"{j}=127.0.0.1:{ports[j]}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return procs


def wait_all(procs: list[subprocess.Popen]) -> list[str]:
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=RUN_TIMEOUT)
        assert p.returncode == 0, err
        errs.append(err)
    return errs


def read_traffic(logs: Path, peer: int) -> dict[int, tuple[int, int]]:
    out = {}
    for line in (logs / f"{peer}.traffic.txt").read_text().splitlines():
        nbr, bytes_in, bytes_out = (int(x) for x in line.split("; "))
        out[nbr] = (bytes_in, bytes_out)
    return out


def analyse(logs: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "analyse", "--no-plots", str(logs)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((logs / "summary.json").read_text())


def check_logs(graph: nx.Graph, logs: Path) -> None:
    """Every line is a compact v1 message this peer may receive, each hop list once."""
    for p in graph.nodes:
        seen = set()
        for line in (logs / f"{p}.txt").read_text().splitlines():
            msg = json.loads(line)
            assert line == json.dumps(msg, separators=(",", ":")), line
            hops = tuple(msg["hops"])
            assert hops[0] == msg["id"] and p not in hops and graph.has_edge(hops[-1], p), line
            assert hops not in seen, f"peer {p} logged {line} twice"
            seen.add(hops)


@pytest.mark.parametrize(("family", "graph", "deliveries"), [
    ("cycle", cycle_graph(5), 40),
    ("mesh", mesh_graph(5), 320),
])
def test_exact_v1_counts_and_bytes(binary, tmp_path, family, graph, deliveries):
    wait_all(start_network(binary, graph, tmp_path))
    pred = predict(graph, family)
    assert pred.deliveries == deliveries
    check_logs(graph, tmp_path)
    assert sum(len((tmp_path / f"{p}.txt").read_text().splitlines()) for p in graph.nodes) == deliveries
    # Traffic files: both ends of every directed edge agree with the prediction.
    for v in graph.nodes:
        for u, (bytes_in, bytes_out) in read_traffic(tmp_path, v).items():
            assert bytes_in == pred.per_edge[(u, v)].bytes, (u, v)
            assert bytes_out == pred.per_edge[(v, u)].bytes, (v, u)
        assert set(read_traffic(tmp_path, v)) == set(graph.neighbors(v))
    # The analysis of the original format reaches the same verdict.
    summary = analyse(tmp_path)
    assert summary["format"] == "original"
    assert summary["topology"] == family and summary["ok"], summary["verdict"]
    assert summary["deliveries"] == summary["expected_deliveries"] == deliveries
    assert summary["bytes"] == summary["expected_bytes"] == pred.bytes
    for e in summary["edges"]:
        assert e["bytes"] == e["expected_bytes"] == pred.per_edge[(e["src"], e["dst"])].bytes


def test_late_starters_still_give_exact_counts(binary, tmp_path):
    """Peers started one by one in reverse order: dials retry, the kept connection is
    the lower id's, and no frame is lost or counted twice."""
    graph = mesh_graph(4)
    ports = free_ports(4)
    procs = []
    for i in reversed(range(4)):
        cmd = [str(binary), "--id", str(i), "--listen", f"127.0.0.1:{ports[i]}", "--logs", str(tmp_path), "--idle", "1"]
        cmd += [arg for j in graph.neighbors(i) for arg in ("--peer", f"{j}=127.0.0.1:{ports[j]}")]
        procs.append(subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))
        # The next peer starts only once this one listens: a real, ordered late start.
        wait_listening(ports[i])
    wait_all(procs)
    check_logs(graph, tmp_path)
    assert sum(len((tmp_path / f"{p}.txt").read_text().splitlines()) for p in graph.nodes) == predict(graph).deliveries


def wait_listening(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def test_sigterm_writes_the_traffic_file_and_exits_0(binary, tmp_path):
    port, absent = free_ports(2)
    proc = subprocess.Popen(
        [str(binary), "--id", "0", "--listen", f"127.0.0.1:{port}", "--peer", f"1=127.0.0.1:{absent}", "--logs", str(tmp_path)],
        stderr=subprocess.PIPE, text=True,
    )
    wait_listening(port)  # the probe is an accepted connection that ends before a byte: no error
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, err
    assert "exit (signal)" in err
    assert (tmp_path / "0.traffic.txt").read_text() == ""  # no frame exchanged with anyone
    assert (tmp_path / "0.txt").read_text() == ""


def test_a_non_neighbour_handshake_is_refused(binary, tmp_path):
    port, other = free_ports(2)
    proc = subprocess.Popen(
        [str(binary), "--id", "0", "--listen", f"127.0.0.1:{port}", "--peer", f"1=127.0.0.1:{other}", "--logs", str(tmp_path)],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_listening(port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall((7).to_bytes(4, "big"))
            assert s.recv(1) == b""  # closed by the peer
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0
    assert "not_neighbour: handshake from id 7" in err


@pytest.mark.parametrize(("argv", "code", "text"), [
    (["--help"], 0, "Usage: p2p-peer-rs"),
    (["--id", "x"], 2, "p2p-peer-rs: error: --id: not a non-negative integer"),
    (["--id", "1", "--listen", "h:1"], 2, "p2p-peer-rs: error: --logs is required"),
])
def test_command_line(binary, argv, code, text):
    done = subprocess.run([str(binary), *argv], capture_output=True, text=True, timeout=30)
    assert done.returncode == code
    out = done.stdout if code == 0 else done.stderr
    assert text in out
    if code:
        assert out.count("\n") == 1 and not done.stdout


def recv_exact(s: socket.socket, k: int) -> bytes:
    data = b""
    while len(data) < k:
        chunk = s.recv(k - len(data))
        if not chunk:
            break
        data += chunk
    return data


def wait_peek(s: socket.socket, k: int, timeout: float = 10.0) -> None:
    """Until ``k`` bytes wait unread on ``s``."""
    s.settimeout(timeout)
    end = time.monotonic() + timeout
    while len(s.recv(k, socket.MSG_PEEK)) < k:
        assert time.monotonic() < end, "the peer wrote nothing"
        time.sleep(0.01)


def test_resends_what_a_neighbour_closed_unread(binary, tmp_path):
    """Neighbour 1 behaves like the original tool: it keeps the connection it registered
    first (its own dial) and closes the other one unread. The frame the Rust peer had
    written there is resent on the surviving connection, and counted once."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.settimeout(10)
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        [str(binary), "--id", "0", "--listen", f"127.0.0.1:{port}", "--peer", f"1=127.0.0.1:{lsock.getsockname()[1]}",
         "--logs", str(tmp_path), "--idle", "1"],
        stderr=subprocess.PIPE, text=True,
    )
    own = b'{"id":0,"hops":[0]}'
    c1, _ = lsock.accept()  # dialed by the lower id: the Rust peer writes its message here at once
    lsock.close()  # no redial can land anywhere but on refusal
    assert recv_exact(c1, 4) == (0).to_bytes(4, "big")
    wait_peek(c1, 4 + len(own))
    c2 = socket.create_connection(("127.0.0.1", port), timeout=10)
    c2.sendall((1).to_bytes(4, "big"))
    c1.close()  # unread: the Rust peer sees a reset
    c2.settimeout(RUN_TIMEOUT)
    assert recv_exact(c2, 4 + len(own)) == len(own).to_bytes(4, "big") + own
    mine = b'{"id":1,"hops":[1]}'
    c2.sendall(len(mine).to_bytes(4, "big") + mine)
    rest = b"".join(iter(lambda: c2.recv(4096), b""))  # until the peer idles out and closes
    c2.close()
    _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, err
    assert rest == b"", "a frame arrived twice or a forward went back to its sender"
    assert "resent 1," in err
    assert (tmp_path / "0.txt").read_bytes() == mine + b"\n"
    assert read_traffic(tmp_path, 0) == {1: (23, 23)}
