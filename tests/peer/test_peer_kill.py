"""Peers SIGKILLed mid-flood: every frame a neighbour logged from them is explained by their own log.

Real ``python -m peer`` processes on 127.0.0.1 (listening sockets bound to port 0 here and
passed with ``--listen-fd``, as the local runner does), a mesh flooding with protocol v1.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
N = 8
PER_PEER = 13_699  # mesh-8, v1: 109,592 deliveries over 8 peers


def wait_for(condition, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what} not met in {timeout} s")
        time.sleep(0.001)


def lines_of(log_dir, peer) -> int:
    try:
        return (log_dir / f"{peer}.txt").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def start_mesh(log_dir, n):
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {}
    try:
        for p, s in enumerate(sockets):
            cmd = [sys.executable, "-m", "peer", "--listen-fd", str(s.fileno()), "--id", str(p), "--n", str(n),
                   "--log-dir", str(log_dir), "--idle", "1.0", "--link-deadline", "20", "--max-runtime", "120"]
            for q in range(n):
                if q != p:
                    cmd += ["-p", f"{q}=127.0.0.1:{ports[q]}"]
            with open(log_dir / f"{p}.stderr.txt", "wb") as err:
                procs[p] = subprocess.Popen(cmd, pass_fds=(s.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                            stdout=err, stderr=err)
    finally:
        for s in sockets:
            s.close()
    return procs


def logged(log_dir, peer):
    """The hop lists a peer logged (a torn last line, cut by the kill, is left out)."""
    data = (log_dir / f"{peer}.txt").read_bytes()
    lines = data.split(b"\n")[:-1]  # the part after the last newline is empty or torn
    return [tuple(json.loads(line)["hops"]) for line in lines]


@pytest.mark.slow
def test_every_frame_from_a_killed_peer_is_in_its_own_log(tmp_path):
    rng = random.Random(20240611)
    victims = rng.sample(range(N), 2)
    procs = start_mesh(tmp_path, N)
    try:
        # Mid-flood, at a random point of each victim's own flood: its log holds a random
        # number of lines (written as they arrive, so the count is current), then SIGKILL.
        others = [p for p in range(N) if p not in victims]
        for victim in victims:
            at = rng.randint(200, PER_PEER // 2)
            wait_for(lambda v=victim, k=at: lines_of(tmp_path, v) >= k, what=f"peer {victim} at {at} lines")
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(timeout=10)
        for p in others:  # the survivors end on their own once the flood is over
            procs[p].wait(timeout=90)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(procs[v].returncode == -signal.SIGKILL for v in victims)
    assert all(procs[p].returncode == 0 for p in others), [procs[p].returncode for p in others]
    logs = {p: logged(tmp_path, p) for p in range(N)}
    # The kills did cut the flood short for the victims (else this test would prove nothing).
    assert all(len(logs[v]) < PER_PEER for v in victims), [len(logs[v]) for v in victims]
    sets = {p: set(hops) for p, hops in logs.items()}
    checked = {v: 0 for v in victims}
    unexplained = []
    for p, hops_list in logs.items():
        for hops in hops_list:
            if len(hops) < 2:
                continue  # the sender's own message
            sender = hops[-1]
            if sender in checked:
                checked[sender] += 1
            if hops[:-1] not in sets[sender]:
                unexplained.append((p, hops))
    # Frames forwarded by the victims reached their neighbours' logs ...
    assert all(count > 0 for count in checked.values()), checked
    # ... and each was caused by a message already in the forwarder's own log.
    assert unexplained == [], f"{len(unexplained)} logged frames unexplained by their sender's log: {unexplained[:5]}"
