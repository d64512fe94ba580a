"""Readers for a run's logs (docs/run-directory.md, docs/design.md "Logs").

Per peer id ``p`` a log directory may hold

- ``p.txt``            one received message per line: ``{"id":A,"hops":[A,...,s]}``;
                       the sender is ``s = hops[-1]``, the frame was ``4 + len(line)`` bytes;
- ``p.traffic.txt``    ``<peer>; <in_bytes>; <out_bytes>`` per neighbour (written at exit);
- ``p.events.jsonl``   our own event log (absent in the original tool's format).

The message reader is the hot path (a mesh-9 run has 986,400 lines). It reads the
file in binary blocks and validates a whole block at once with C-level operations
(one multi-line regex, ``bytes.translate``/``split``, a ``Counter``); only a block
that fails a check is re-read line by line, which is where problems get their line
numbers. Memory is bounded by the block size, the per-sender/per-author counters
and the world-view edge set: nothing is kept per line.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peer.logfiles import EVENTS, MESSAGES, TRAFFIC, events_file, messages_file, parse_log_name, traffic_file
from peer.protocols import PROTOCOLS as PROTOCOL_CLASSES

BLOCK = 4 << 20  # bytes read per block
MAX_LINE = 16 << 20  # a "line" longer than this is reported and skipped
MAX_PROBLEMS_PER_FILE = 50

_ID = rb"(?:0|[1-9][0-9]*)"
# A canonical message whose first hop is the author (back-reference); group 2 is
# the sender when there are at least two hops, else empty (sender = author).
_LINE_M = re.compile(
    rb'^\{"id":(' + _ID + rb'),"hops":\[\1(?:\]|(?:,' + _ID + rb')*,(' + _ID + rb')\])\}$', re.M
)
_LINE = re.compile(rb'\{"id":(' + _ID + rb'),"hops":\[(' + _ID + rb'(?:,' + _ID + rb')*)\]\}')
# A hop list repeating a peer: some hop reappears later in the same list.
_DUP = re.compile(rb"[\[,](" + _ID + rb"),(?:[0-9,]*,)?\1[,\]]")
_BRACKETS = bytes.maketrans(b"[]", b",,")


@dataclass
class LogProblem:
    """Something wrong in a log file; ``line`` is 1-based, or None for the whole file."""

    file: str
    line: int | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "problem": self.problem}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.problem}"


class _Problems:
    """Collects problems for one file, keeping the first few and counting the rest."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[LogProblem] = []
        self.dropped = 0

    def add(self, line: int | None, problem: str) -> None:
        if len(self.items) < MAX_PROBLEMS_PER_FILE:
            self.items.append(LogProblem(self.file, line, problem))
        else:
            self.dropped += 1

    def result(self) -> list[LogProblem]:
        if self.dropped:
            return [*self.items, LogProblem(self.file, None, f"... and {self.dropped} more problems not listed")]
        return list(self.items)


# ---- messages ----------------------------------------------------------------


@dataclass
class MessageLog:
    """What one peer's ``<id>.txt`` says, aggregated (no per-line data)."""

    peer: int
    file: str
    exists: bool = True
    deliveries: int = 0
    bytes: int = 0
    # sender -> [frames, bytes] of the messages this peer received over that link
    by_sender: dict[int, list[int]] = field(default_factory=dict)
    # author -> messages received that it authored
    by_author: dict[int, int] = field(default_factory=dict)
    # undirected edges (a < b) of this peer's world view (docs/design.md "World view")
    view: set[tuple[int, int]] = field(default_factory=set)
    max_id: int = -1
    problems: list[LogProblem] = field(default_factory=list)


class LineError(ValueError):
    """A log line that is not a valid message."""


# The dedup flood legitimately sends a peer hop lists that name it; v1 never does.
# Set for the duration of one analysis (module state so that reader processes forked
# by read_all inherit it) by ``receiver_in_hops_allowed``.
RECEIVER_IN_HOPS_OK = False


def receiver_in_hops_ok(protocol: str | None) -> bool:
    """Whether ``protocol``'s peers may receive hop lists that name them (the dedup flood)."""
    return bool(getattr(PROTOCOL_CLASSES.get(protocol or ""), "accepts_own_id", False))


class receiver_in_hops_allowed:  # noqa: N801 - used as a context manager
    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed

    def __enter__(self) -> None:
        global RECEIVER_IN_HOPS_OK
        self.saved, RECEIVER_IN_HOPS_OK = RECEIVER_IN_HOPS_OK, self.allowed

    def __exit__(self, *exc: object) -> None:
        global RECEIVER_IN_HOPS_OK
        RECEIVER_IN_HOPS_OK = self.saved


def parse_line(line: bytes, receiver: int, n: int | None = None) -> tuple[int, list[int]]:
    """Parse and check one message line (without its newline): ``(author, hops)``.

    Accepts any JSON spelling of ``{"id": A, "hops": [A, ..., s]}``; raises
    ``LineError`` with a short reason otherwise.
    """
    m = _LINE.fullmatch(line)
    if m is not None:
        author = int(m.group(1))
        hops = [int(h) for h in m.group(2).split(b",")]
    else:
        if not line.strip():
            raise LineError("empty line")
        try:
            obj = json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise LineError(f"invalid JSON: {str(e)[:80]}") from None
        if not isinstance(obj, dict) or set(obj) != {"id", "hops"}:
            raise LineError("not a message: expected an object with exactly the keys id and hops")
        author, hops = obj["id"], obj["hops"]
        if type(author) is not int or author < 0:
            raise LineError(f"id must be a non-negative integer, got {author!r}"[:120])
        if not isinstance(hops, list) or not hops:
            raise LineError("hops must be a non-empty list")
        if not all(type(h) is int and h >= 0 for h in hops):
            raise LineError("hops must be non-negative integers")
    if hops[0] != author:
        raise LineError(f"first hop {hops[0]} is not the author {author}")
    if n is not None:
        bad = [h for h in hops if h >= n]
        if bad:
            raise LineError(f"peer id {bad[0]} out of range (n={n})")
    if receiver in hops and not RECEIVER_IN_HOPS_OK:
        raise LineError(f"receiver {receiver} already in hops {hops}")
    if len(set(hops)) != len(hops):
        raise LineError(f"hop list repeats a peer: {hops}")
    return author, hops


def read_messages(path: Path, peer: int, n: int | None = None, block: int = BLOCK) -> MessageLog:
    """Read ``<peer>.txt``; ``n`` (when known) bounds the valid peer ids."""
    path = Path(path)
    log = MessageLog(peer=peer, file=path.name)
    probs = _Problems(path.name)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        log.exists = False
        return log
    except OSError as e:
        log.exists = False
        probs.add(None, f"cannot read: {e}")
        log.problems = probs.result()
        return log
    by_key: Counter = Counter()  # ((author, sender-or-b""), line length) -> count
    by_sender: dict[int, list[int]] = {}
    by_author: dict[int, int] = {}
    view: set[tuple[bytes, bytes]] = set()  # raw digit pairs from the fast path
    view_int: set[tuple[int, int]] = set()
    line_no = 0  # lines completed before the current block
    carry = b""
    skipping = False  # inside an over-long line
    with f:
        while True:
            chunk = f.read(block)
            if not chunk:
                break
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) > MAX_LINE:
                    if not skipping:
                        probs.add(line_no + 1, f"line longer than {MAX_LINE} bytes, skipped")
                    skipping = True
                    carry = b""
                else:
                    carry = data
                continue
            body, carry = data[:cut], data[cut:]
            if skipping:
                first = body.index(b"\n") + 1
                body = body[first:]
                line_no += 1
                skipping = False
            if body:
                count = body.count(b"\n")
                _account(body, count, line_no, peer, n, by_key, view, by_sender, by_author, view_int, probs)
                line_no += count
    if carry and not skipping:
        probs.add(line_no + 1, f"torn last line (no trailing newline, {len(carry)} bytes), skipped")
    # Fold the fast path's byte-keyed counters into int-keyed ones.
    for (key, length), count in by_key.items():
        author = int(key[0])
        sender = int(key[1]) if key[1] else author
        fb = by_sender.get(sender)
        if fb is None:
            by_sender[sender] = [count, count * (length + 4)]
        else:
            fb[0] += count
            fb[1] += count * (length + 4)
        by_author[author] = by_author.get(author, 0) + count
    for a, b in view:
        x, y = int(a), int(b)
        view_int.add((x, y) if x < y else (y, x))
    for s in by_sender:
        view_int.add((s, peer) if s < peer else (peer, s))
    log.by_sender = dict(sorted(by_sender.items()))
    log.by_author = dict(sorted(by_author.items()))
    log.view = view_int
    log.deliveries = sum(fb[0] for fb in by_sender.values())
    log.bytes = sum(fb[1] for fb in by_sender.values())
    ids = [peer, *by_author, *by_sender, *(x for e in view_int for x in e)]
    log.max_id = max(ids)
    log.problems = probs.result()
    return log


SPLIT_LINES = 2048  # a failing block larger than this is split to find its bad lines


def _account(body, count, line_no, peer, n, by_key, view, by_sender, by_author, view_int, probs) -> None:
    """Count a block of whole lines: fast path, else split it (so a few bad lines do
    not send a whole block down the slow path), else line by line."""
    if _fast_block(body, peer, n, by_key, view):
        return
    if count <= SPLIT_LINES:
        _slow_block(body, line_no, peer, n, by_sender, by_author, view_int, probs)
        return
    parts = 16
    step = len(body) // parts
    start = 0
    for k in range(1, parts + 1):
        end = len(body) if k == parts else body.find(b"\n", max(start, k * step)) + 1
        if end <= start:
            continue
        part = body[start:end]
        c = part.count(b"\n")
        _account(part, c, line_no, peer, n, by_key, view, by_sender, by_author, view_int, probs)
        line_no += c
        start = end


def _fast_block(body: bytes, peer: int, n: int | None, by_key: Counter, view: set) -> bool:
    """Account a block of whole lines if every line is a valid canonical message.

    Returns False (having changed nothing) when any line fails; the caller then
    re-reads the block line by line to say which.
    """
    count = body.count(b"\n")
    matches = _LINE_M.findall(body)
    if len(matches) != count:
        return False
    flat = body.translate(_BRACKETS)  # hops "[a,b,c]" -> ",a,b,c,"
    if not RECEIVER_IN_HOPS_OK and flat.find(b",%d," % peer) >= 0:  # receiver in a hop list
        return False
    tokens = flat.split(b",")
    ids = {int(t) for t in set(tokens) if t.isdigit()}  # every hop; authors are first hops
    if n is not None and ids and max(ids) >= n:
        return False
    if _has_repeated_hop(body, flat, ids, count):
        return False
    view |= _pairs(flat, tokens, ids - {peer}, view)
    by_key.update(zip(matches, map(len, body.split(b"\n"))))
    return True


DUP_PER_ID = 12  # up to this many distinct ids, look for repeats id by id
SET_PER_LINE = 256  # from this mean line length on, compare each hop list with its set


def _has_repeated_hop(body: bytes, flat: bytes, ids: set[int], count: int) -> bool:
    """True when some line's hop list names a peer twice.

    With few ids, one literal-prefixed search per id (",d" then ",d," later on the
    same line) is ~2.5x faster than the general back-reference pattern. That
    pattern backtracks over the rest of the list from every hop, quadratic in the
    list's length: 1.7 s for one cycle-500 peer's 1 MB log, where a set per line
    takes milliseconds; so long lines (cycle-1000: ~2,000 bytes) are checked with sets.
    """
    if len(ids) <= DUP_PER_ID:
        for d in ids:
            if re.search(rb",%d(?=,)[^\n]*,%d," % (d, d), flat) is not None:
                return True
        return False
    if len(body) < SET_PER_LINE * count:
        return _DUP.search(body) is not None
    # Lines already matched _LINE_M: one "[...]" each, canonical ids, so equal ids are equal bytes.
    for line in body.split(b"\n"):
        start = line.find(b"[") + 1
        if start:
            hops = line[start : line.find(b"]", start)].split(b",")
            if len(set(hops)) != len(hops):
                return True
    return False


PAIR_PREFIX = 1 << 17
MAX_PAIR_FINDS = 24


def _pairs(flat: bytes, tokens: list[bytes], ids: set[int], known: set) -> set[tuple[bytes, bytes]]:
    """Distinct adjacent hop pairs ``(a, b)`` (digit strings) in a translated block.

    Exact either way: a set over all adjacent token pairs costs ~70 ns a token, so
    when the pairs in the first 128 kB leave only a few candidate pairs unresolved,
    those are looked up with ``bytes.find`` instead (",a,b," can only match hops).
    """
    def zip_pairs(toks: list[bytes]) -> set[tuple[bytes, bytes]]:
        return {p for p in set(zip(toks, toks[1:])) if p[0].isdigit() and p[1].isdigit()}

    if len(flat) <= PAIR_PREFIX or len(ids) > 64:
        return zip_pairs(tokens)
    head = flat[: flat.find(b"\n", PAIR_PREFIX) + 1 or len(flat)]
    found = zip_pairs(head.split(b","))
    seen = known | found
    names = [b"%d" % i for i in sorted(ids)]
    todo = [(a, b) for a in names for b in names if a != b and (a, b) not in seen]
    if len(todo) > MAX_PAIR_FINDS:
        return zip_pairs(tokens)
    start = len(head) - 1
    for a, b in todo:
        if flat.find(b"," + a + b"," + b + b",", start) >= 0:
            found.add((a, b))
    return found


def _slow_block(
    body: bytes,
    line_no: int,
    peer: int,
    n: int | None,
    by_sender: dict[int, list[int]],
    by_author: dict[int, int],
    view: set[tuple[int, int]],
    probs: _Problems,
) -> None:
    lines = body.split(b"\n")
    lines.pop()  # body ends with "\n"
    for i, line in enumerate(lines, start=line_no + 1):
        try:
            author, hops = parse_line(line, peer, n)
        except LineError as e:
            probs.add(i, f"{e}, skipped")
            continue
        sender = hops[-1]
        size = len(line) + 4
        fb = by_sender.get(sender)
        if fb is None:
            by_sender[sender] = [1, size]
        else:
            fb[0] += 1
            fb[1] += size
        by_author[author] = by_author.get(author, 0) + 1
        for a, b in zip(hops, hops[1:]):
            view.add((a, b) if a < b else (b, a))


# ---- traffic -----------------------------------------------------------------


@dataclass
class TrafficLog:
    """``<id>.traffic.txt``: neighbour -> (bytes in, bytes out) as the peer counted them."""

    peer: int
    file: str
    exists: bool = True
    links: dict[int, tuple[int, int]] = field(default_factory=dict)
    problems: list[LogProblem] = field(default_factory=list)


def read_traffic(path: Path, peer: int) -> TrafficLog:
    path = Path(path)
    log = TrafficLog(peer=peer, file=path.name)
    probs = _Problems(path.name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.exists = False
        return log
    except OSError as e:
        probs.add(None, f"cannot read: {e}")
        log.problems = probs.result()
        return log
    lines = data.split(b"\n")
    torn = lines.pop()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split(b";")
        try:
            if len(parts) != 3:
                raise ValueError
            nbr, bin_, bout = (int(x.strip()) for x in parts)
            if nbr < 0 or bin_ < 0 or bout < 0:
                raise ValueError
        except ValueError:
            probs.add(i, f"malformed traffic line {line[:60]!r} (expected '<peer>; <in>; <out>'), skipped")
            continue
        if nbr in log.links:
            probs.add(i, f"neighbour {nbr} listed twice, the later line wins")
        log.links[nbr] = (bin_, bout)
    if torn:
        probs.add(len(lines) + 1, f"torn last line (no trailing newline, {len(torn)} bytes), skipped")
    log.problems = probs.result()
    return log


# ---- events ------------------------------------------------------------------


@dataclass
class EventLog:
    """The parts of ``<id>.events.jsonl`` the analysis uses."""

    peer: int
    file: str
    exists: bool = True
    start: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    link_failures: list[dict[str, Any]] = field(default_factory=list)
    # (t, recv, sent) per progress event, in file order
    progress: list[tuple[float, int, int]] = field(default_factory=list)
    last_t: float | None = None
    problems: list[LogProblem] = field(default_factory=list)

    def last_growth(self) -> float | None:
        """When this peer's receive count was last seen to grow: a progress event, or the
        summary event when it reports more than the last progress event."""
        last: float | None = None
        prev = 0
        for t, recv, _sent in self.progress:
            if recv > prev:
                last = t if last is None else max(last, t)
            prev = max(prev, recv)
        s = self.summary
        if s is not None and isinstance(s.get("recv"), int) and s["recv"] > prev:
            last = s["t"] if last is None else max(last, s["t"])
        return last


def _parse_event(raw: bytes) -> tuple[dict[str, Any], Any, float]:
    """Decode one events line into ``(record, ev, t)``; raises on a malformed record."""
    rec = json.loads(raw)
    if not isinstance(rec, dict):
        raise ValueError("not an object")
    ev = rec["ev"]
    t = float(rec["t"])
    return rec, ev, t


def _apply_event(log: EventLog, probs: _Problems, i: int, rec: dict[str, Any], ev: Any, t: float) -> None:
    """Record one well-formed event (line ``i``) in ``log``."""
    if ev == "progress":
        log.progress.append((t, int(rec["recv"]), int(rec["sent"])))
    elif ev == "start":
        if log.start is not None:
            probs.add(i, "second start event (peer restarted, or two runs in one log)")
        else:
            log.start = rec
    elif ev == "summary":
        if log.summary is not None:
            probs.add(i, "second summary event")
        log.summary = rec
    elif ev == "error":
        log.errors.append(rec)
    elif ev == "link_failed":
        log.link_failures.append(rec)


def _read_event_line(log: EventLog, probs: _Problems, i: int, raw: bytes, peer: int) -> None:
    """Check and account one complete events line (line ``i``)."""
    try:
        rec, ev, t = _parse_event(raw)
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        if raw.strip():
            probs.add(i, f"malformed event ({str(e)[:60]}), skipped")
        else:
            probs.add(i, "empty line, skipped")
        return
    if rec.get("peer", peer) != peer:
        probs.add(i, f"event of peer {rec.get('peer')!r} in peer {peer}'s log")
    log.last_t = t if log.last_t is None else max(log.last_t, t)
    try:
        _apply_event(log, probs, i, rec, ev, t)
    except (KeyError, TypeError, ValueError) as e:
        probs.add(i, f"event {ev!r} lacks a field ({e}), skipped")


def read_events(path: Path, peer: int) -> EventLog:
    path = Path(path)
    log = EventLog(peer=peer, file=path.name)
    probs = _Problems(path.name)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        log.exists = False
        return log
    except OSError as e:
        probs.add(None, f"cannot read: {e}")
        log.problems = probs.result()
        return log
    with f:
        for i, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                probs.add(i, f"torn last line (no trailing newline, {len(raw)} bytes), skipped")
                break
            _read_event_line(log, probs, i, raw, peer)
    log.problems = probs.result()
    return log


# ---- a whole log directory ---------------------------------------------------


@dataclass
class LogDir:
    """Which peer ids have which files in a log directory."""

    path: Path
    messages: dict[int, Path] = field(default_factory=dict)
    traffic: dict[int, Path] = field(default_factory=dict)
    events: dict[int, Path] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return sorted(set(self.messages) | set(self.traffic) | set(self.events))

    @property
    def original_format(self) -> bool:
        """True when there are no events logs at all (the original tool's files only)."""
        return not self.events


def find_log_dir(run_dir: Path) -> Path:
    """``run_dir/logs`` when it exists, else ``run_dir`` itself (original tool's layout)."""
    logs = Path(run_dir) / "logs"
    return logs if logs.is_dir() else Path(run_dir)


def scan(log_dir: Path) -> LogDir:
    out = LogDir(Path(log_dir))
    try:
        names = os.listdir(log_dir)
    except OSError:
        return out
    tables = {MESSAGES: out.messages, TRAFFIC: out.traffic, EVENTS: out.events}
    for name in names:
        parsed = parse_log_name(name)
        if parsed is not None and parsed[1] in tables:
            tables[parsed[1]][parsed[0]] = out.path / name
    return out


@dataclass
class PeerLogs:
    """Everything read for one peer."""

    peer: int
    messages: MessageLog
    traffic: TrafficLog
    events: EventLog

    @property
    def problems(self) -> list[LogProblem]:
        return [*self.messages.problems, *self.traffic.problems, *self.events.problems]


def read_peer(log_dir: Path, peer: int, n: int | None = None) -> PeerLogs:
    d = Path(log_dir)
    return PeerLogs(
        peer=peer,
        messages=read_messages(messages_file(d, peer), peer, n),
        traffic=read_traffic(traffic_file(d, peer), peer),
        events=read_events(events_file(d, peer), peer),
    )


def _read_peer_args(args: tuple[str, int, int | None]) -> PeerLogs:
    return read_peer(Path(args[0]), args[1], args[2])


def read_all(log_dir: Path, ids: list[int], n: int | None = None, workers: int | None = None) -> dict[int, PeerLogs]:
    """Read every peer's logs; large directories are read by several processes.

    ``workers=None`` picks one per CPU when the message logs total more than 16 MB;
    ``workers=1`` forces a serial read.
    """
    log_dir = Path(log_dir)
    if workers is None:
        total = 0
        for p in ids:
            try:
                total += messages_file(log_dir, p).stat().st_size
            except OSError:
                pass
        workers = min(os.cpu_count() or 1, len(ids)) if total > (16 << 20) else 1
    if workers > 1:
        try:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("fork")
            # Largest files first so the slowest peer does not start last.
            order = sorted(ids, key=lambda p: -_size(messages_file(log_dir, p)))
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                results = pool.map(_read_peer_args, [(str(log_dir), p, n) for p in order])
                got = {r.peer: r for r in results}
            return {p: got[p] for p in ids}
        except (OSError, ValueError, ImportError, RuntimeError):
            pass  # no fork or no processes here: fall back to a serial read
    return {p: read_peer(log_dir, p, n) for p in ids}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
