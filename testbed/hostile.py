"""The hostile-input battery: connections a peer must refuse without harm to its other links.

Each case opens connections to one peer's listening port and sends what a well-behaved
neighbour never would (docs/design.md, wire format): a handshake from an unknown id, from
a peer that is no neighbour, a second connection for an established edge followed by
garbage, EOF inside the handshake, a frame longer than any message, and a flood of
connections that never speak. ``p2p grade --hostile`` replays a run (local backend) and
fires the battery at one peer of each other implementation mid-run; that peer passes
when it survives (its exit is clean) and its other links keep working (its counts and
every edge of it stay exact). tests/testbed/test_hostile_clients.py fires it at ours.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from generator.predict import predict
from generator.spec import RunSpec
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
        except OSError:
            out.refused.append(name)
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


# ---- p2p grade --hostile ---------------------------------------------------------------------


def _first_sender(path: Path) -> int | None:
    """The sender (last hop) of the first line of a message log: a neighbour whose link is up."""
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except OSError:
        return None
    if not line.endswith(b"\n"):
        return None
    hops = line[line.find(b"[") + 1 : line.find(b"]")].split(b",")
    return int(hops[-1]) if hops and hops[-1].isdigit() else None


def hostile_grades(run_dir: Path, grades: list, say: Callable[[str], None], wait: float = 60.0) -> None:
    """Replay ``run_dir``'s spec locally with the battery fired at one peer of each other implementation;
    add the outcome to ``grades`` (analysis.grade.ImplGrade of the original run)."""
    from analysis.grade import grade
    from generator.errors import P2PError
    from testbed.base import Progress, prepare_run, write_exits
    from testbed.local import LocalRunner

    spec = RunSpec.load(run_dir / "spec.json")
    if any(i.image and not i.program for i in spec.implementations):
        raise P2PError("--hostile: replays the run with the local backend, which runs programs: the run has "
                       "an implementation given by an image (--peer-image); not supported yet")
    graph = spec.graph()
    targets = {impl.name: impl.ids[0] for impl in spec.implementations}
    plan = prepare_run(spec, run_dir / "hostile", predict(graph, spec.topology))
    say(f"hostile: replaying {spec.name} in {plan.run_dir}; battery against peer(s) "
        f"{', '.join(f'{p} ({name})' for name, p in targets.items())}")
    # Peers 0.3 s apart: the attacked peer is mid-run (some links up, some not) when hit.
    runner = LocalRunner(stagger=0.3)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", runner.run(plan, Progress(interval=60))))
    thread.start()
    outcomes: dict[str, BatteryResult] = {}
    try:
        for name, p in targets.items():
            outcomes[name] = _attack_when_linked(plan, runner, graph, p, wait)
    finally:
        thread.join()
    write_exits(plan.run_dir, box["result"])
    replay = {g.name: g for g in grade(plan.run_dir, attacked=frozenset(targets.values()))}
    for g in grades:
        if g.name not in targets:
            continue
        _judge(g, targets[g.name], outcomes[g.name], replay[g.name])


def _attack_when_linked(plan, runner, graph, p: int, wait: float) -> BatteryResult:
    """Once peer ``p`` logged its first message (a link is up), fire the battery at its port."""
    from peer.logfiles import messages_file

    end = time.monotonic() + wait
    linked = None
    while time.monotonic() < end and linked is None:
        linked = _first_sender(messages_file(plan.log_dir, p))
        if linked is None:
            time.sleep(0.02)
    strangers = [q for q in range(plan.spec.n) if q != p and not graph.has_edge(p, q)]
    target = Target(("127.0.0.1", runner.ports[p]), plan.spec.n, linked, strangers[0] if strangers else None)
    return fire(target)


def _judge(g, p: int, battery: BatteryResult, replay) -> None:
    """Into the original grade: the replay's verdict for the attacked implementation, and what was sent."""
    g.hostile = {"peer": p, "sent": battery.sent, "refused": battery.refused,
                 "silent_connections": battery.silent_opened, "replay_verdict": replay.verdict,
                 "replay_reasons": replay.reasons}
    if battery.refused:
        g.hostile_problems.append(f"peer {p} stopped listening during the battery (refused: "
                                  f"{', '.join(battery.refused)})")
    for reason in replay.reasons:
        g.hostile_problems.append(f"under attack: {reason}")
