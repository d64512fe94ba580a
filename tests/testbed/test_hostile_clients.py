"""A running network under attack from a scripted hostile client still completes exactly."""

import json
import threading
import time
from collections import Counter

import pytest

from generator.predict import predict
from generator.spec import PeerOptions, RunSpec
from peer.wire import encode_handshake
from testbed.base import Progress, prepare_run
from testbed.hostile import connect  # the battery's own connections (testbed/hostile.py)
from testbed.local import LocalRunner


def wait_for(condition, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def events(path):
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.mark.slow
def test_hostile_connections_are_rejected_and_the_flood_stays_exact(tmp_path):
    spec = RunSpec.parse("cycle", 8, options=PeerOptions(handshake_timeout=0.5, idle=2.0))
    prediction = predict(spec.graph(), "cycle")
    plan = prepare_run(spec, tmp_path, prediction)
    # Peers start 0.4 s apart, so peer 0 is mid-run (its link to 7 still pending) while attacked.
    runner = LocalRunner(stagger=0.4)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", runner.run(plan, Progress(interval=60))))
    thread.start()
    try:
        ev0 = plan.log_dir / "0.events.jsonl"
        listen = wait_for(lambda: next((e["addr"] for e in events(ev0) if e["ev"] == "listen"), None))
        host, port = listen.rsplit(":", 1)
        addr = (host, int(port))
        # The edge 0-1 is settled (0 received a frame from 1): a second connection for it is
        # refused unread, as the original tool refuses a connection for an edge it has.
        wait_for(lambda: any(e["ev"] == "progress" and "1" in e.get("in", {}) for e in events(ev0)))
        connect(addr, encode_handshake(99))                  # unknown peer id
        connect(addr, encode_handshake(4))                   # a peer, but not a neighbour of 0
        connect(addr, encode_handshake(1) + b"\x00" * 64)    # second connection for the settled edge 0-1
        connect(addr, b"\x00\x01")                           # EOF inside the handshake
        silent = [connect(addr, close=False) for _ in range(100)]  # connection flood that never speaks
        # Repeats of a reason within 1 s are aggregated: one record stands for ``count`` of them.
        wait_for(lambda: sum(e["count"] for e in events(ev0) if e["ev"] == "error") >= 103, timeout=10)
        for s in silent:
            s.close()
    finally:
        thread.join(timeout=60)
    result = outcome["result"]
    assert result.failed_peers == []
    lines = [line for p in range(8) for line in (plan.log_dir / f"{p}.txt").read_bytes().splitlines()]
    assert len(lines) == prediction.deliveries == 112
    assert sum(len(line) + 4 for line in lines) == prediction.bytes
    reasons = Counter()
    for e in events(ev0):
        if e["ev"] == "error":
            reasons[e["reason"]] += e["count"]
    assert reasons["unknown_peer"] == 1
    assert reasons["not_neighbour"] == 1
    # Not an error since peers accept a neighbour's second connection (docs/design.md, "Link
    # set-up"): refused unread, its 64 bytes never parsed. (A third one would be duplicate_link.)
    assert reasons["duplicate_link"] == 0 and reasons["bad_json"] == 0
    refused = [e for e in events(ev0) if e["ev"] == "duplicate" and e["action"] == "refused"]
    assert [(e["nbr"], e["role"]) for e in refused] == [(1, "accept")]
    assert reasons["no_handshake"] + reasons["too_many_connections"] == 101
    assert reasons["too_many_connections"] >= 100 - 64  # at most 64 handshakes are awaited at once
    summary = events(ev0)[-1]
    assert summary["ev"] == "summary" and summary["exit_reason"] == "expected"
    assert summary["errors"] == sum(reasons.values()) == 103
    assert summary["links"]["1"]["duplicates"] == 1
