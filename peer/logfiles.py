"""The names of a peer's log files (docs/run-directory.md), defined once.

A peer writes them (peer/node.py); the analysis, the runners and the sweep read
them. Standard library only, so that every package may import it.

Per peer id ``p`` in a log directory:

- ``p.txt``            one received message per line;
- ``p.traffic.txt``    bytes in and out per neighbour, written at exit
                       (through ``.p.traffic.txt.tmp``, replaced atomically);
- ``p.events.jsonl``   the peer's event log;
- ``p.stderr.txt``     the peer's own output, saved by the runner.
"""

from __future__ import annotations

import re
from pathlib import Path

# The part of a file name after "<id>.".
MESSAGES = "txt"
TRAFFIC = "traffic.txt"
EVENTS = "events.jsonl"
STDERR = "stderr.txt"
KINDS = (MESSAGES, TRAFFIC, EVENTS, STDERR)

_NAME = re.compile(r"(0|[1-9][0-9]*)\.(.+)")  # canonical ids only: "03.txt" is no peer's


def log_name(peer: int, kind: str) -> str:
    """``log_name(3, TRAFFIC)`` -> ``"3.traffic.txt"``."""
    return f"{peer}.{kind}"


def parse_log_name(name: str) -> tuple[int, str] | None:
    """``"3.traffic.txt"`` -> ``(3, TRAFFIC)``; None for a name that is no peer's log file."""
    m = _NAME.fullmatch(name)
    if m is None or m.group(2) not in KINDS:
        return None
    return int(m.group(1)), m.group(2)


def messages_file(log_dir: Path | str, peer: int) -> Path:
    return Path(log_dir) / log_name(peer, MESSAGES)


def traffic_file(log_dir: Path | str, peer: int) -> Path:
    return Path(log_dir) / log_name(peer, TRAFFIC)


def traffic_tmp_file(log_dir: Path | str, peer: int) -> Path:
    """Where the traffic file is written before it replaces ``p.traffic.txt`` (a dot-file: no peer's log)."""
    return Path(log_dir) / f".{log_name(peer, TRAFFIC)}.tmp"


def events_file(log_dir: Path | str, peer: int) -> Path:
    return Path(log_dir) / log_name(peer, EVENTS)


def stderr_file(log_dir: Path | str, peer: int) -> Path:
    return Path(log_dir) / log_name(peer, STDERR)
