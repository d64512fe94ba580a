"""One peer: links over asyncio streams, a protocol, logs, and a clean exit.

Termination: a peer exits by itself when (a) it was told how many deliveries to
expect and has received them all, or (b) it has authored, has seen a message from
every other author, and nothing arrived for ``idle`` seconds, or (c) ``max_runtime``
passed. (a) is exact; (b) is the fallback for runs without a prediction; the "seen
every author" condition is what keeps a peer alive while late-starting peers are
still joining. A neighbour whose link was lost counts as seen (it may be dead). If
some other author stays unheard, a peer with a lost link gives up only after a
silence of ``link_deadline``: a peer that lost a neighbour before its link came up
authors only at that deadline, and its message must still reach everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peer.config import PeerConfig
from peer.emulation import LinkShape, Shaper, is_lost
from peer.logfiles import events_file, messages_file, traffic_file, traffic_tmp_file
from peer.protocols import PROTOCOLS
from peer.upload import upload_logs
from peer.wire import (
    HEADER,
    FrameError,
    decode_handshake,
    encode_handshake,
    encode_payload,
    parse_payload,
)

READ_CHUNK = 1 << 18
STREAM_LIMIT = 1 << 20
TICK = 0.1
MAX_PENDING_HANDSHAKES = 64
# Repeated error records (and ``abandoned`` connections) are aggregated: the first of a kind
# in an interval is written at once, the rest only counted and written as one record with
# ``count`` when the interval closes (checked at every monitor tick, and at exit).
AGGREGATE_INTERVAL = 1.0
# How much of the end of its events log a starting peer reads to see whether it already
# finished a run there (a summary record); a longer last record is followed to its start.
SUMMARY_TAIL = 1 << 16

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_LINK_FAILED = 2
PROGRESS_LINKS = 64  # progress records carry per-neighbour counts up to this degree


@dataclass(eq=False)
class Conn:
    """One TCP connection of a link. A link has one, or two while a duplicate is resolved."""

    role: str  # "dial" or "accept": who opened it, seen from this peer
    dialer: int  # the id of the peer that dialed it
    seq: int  # order of arrival at this peer (ties of the preference)
    writer: asyncio.StreamWriter
    frames: int = 0  # complete frames received on it, repeats included
    # What we wrote on it while it was unsettled (no frame received on it yet): the other side
    # may close it unread (a duplicate it did not keep); then these frames are sent again.
    unsent: list[tuple[bytes, int]] | None = field(default_factory=list)
    unsent_bytes: int = 0
    # Payloads received on it while we had written nothing on it: the other side may send
    # them again on another connection (see Peer._conn_closed); None once we wrote on it.
    got: set[bytes] | None = field(default_factory=set)
    eof_sent: bool = False  # we half-closed it: a duplicate that lost


@dataclass
class Link:
    """State and counters of one undirected edge, seen from this peer."""

    nbr: int
    host: str
    port: int
    state: str = "waiting"  # waiting -> up -> closed, or waiting -> failed
    writer: asyncio.StreamWriter | None = None  # the active connection's
    conns: list[Conn] = field(default_factory=list)  # open connections, the active one included
    active: Conn | None = None  # the connection we write on
    # Payload sets of closed connections we never wrote on: a repeat of one is dropped.
    retired: list[set[bytes]] = field(default_factory=list)
    pending: list[tuple[bytes, int, bool]] = field(default_factory=list)  # (data, frames, is a resend)
    pending_frames: int = 0  # new frames among pending (resends were counted when first sent)
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    undelivered: int = 0
    dropped_in: int = 0
    dropped_out: int = 0
    noncanonical: int = 0  # frames in whose JSON was not the compact form
    repeats: int = 0  # frames dropped as repeats (same payload again from this neighbour)
    resent: int = 0  # frames sent again after the connection they went out on closed unsettled
    resend_lost: int = 0  # frames to resend that found no connection before the link ended
    duplicates: int = 0  # connections beyond the first open one (kept for a while, or refused)
    dialing: bool = False  # a dial task runs for this link
    blocked: bool = False
    waiting_since: float = 0.0
    dial_errors: dict[str, int] = field(default_factory=dict)  # failed dial attempts by cause


class Peer:
    def __init__(self, cfg: PeerConfig) -> None:
        if cfg.id in cfg.neighbours:
            raise ValueError(f"peer {cfg.id} lists itself as a neighbour")
        if not 0 <= cfg.id < cfg.n or any(not 0 <= nb < cfg.n for nb in cfg.neighbours):
            raise ValueError(f"peer ids must be in 0..{cfg.n - 1}")
        self.cfg = cfg
        self.me = cfg.id
        self.links = {nb: Link(nb, h, p) for nb, (h, p) in sorted(cfg.neighbours.items())}
        self.proto = PROTOCOLS[cfg.protocol](cfg.id, list(self.links), cfg.n, cfg.seed, **cfg.protocol_params)
        self.recv = 0
        self.sent = 0
        self.errors = 0  # error occurrences (an aggregated record stands for ``count`` of them)
        self.abandoned = 0  # accepted connections that ended before the first handshake byte
        self.noncanonical = 0  # frames whose JSON was valid but not compact: logged re-encoded
        self.authored = False
        self.authors_seen: set[int] = set()
        self._arrived: set[int] = set()  # authors whose first message has an event (--arrivals)
        # Aggregation windows: (ev, nbr, reason) -> [opened (monotonic), count since, first
        # counted (wall clock), last detail]
        self._windows: dict[tuple[str, int | None, str | None], list] = {}
        self._tasks: set[asyncio.Task] = set()
        self._pending_handshakes = 0
        self._conn_seq = 0
        self._done = asyncio.Event()
        self._signalled = asyncio.Event()  # SIGTERM/SIGINT: also cuts the exit-slot wait short
        self.exit_reason = ""
        self._shapers = {
            nb: Shaper(shape, cfg.seed, cfg.id, nb)
            for nb in self.links
            if (shape := cfg.link_shapes.get(nb, cfg.shape)).active
        }
        self._lossy = any(s.shape.loss for s in self._shapers.values())
        self._shape_changes: dict[int, dict[str, float]] = {}  # nbr -> keys a shape fault set (control.json)
        self._in_flight = 0  # delayed writes not yet released
        self._last_delivery: float | None = None
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        events_path = events_file(cfg.log_dir, cfg.id)
        if holds_summary(events_path):
            # A second plain `docker compose up` of the same file reuses the log directory:
            # appending would mix two runs. A SIGKILLed peer (a restart fault) left no summary.
            raise AlreadyFinished(
                f"{events_path} already holds a summary record: peer {cfg.id} finished a run in this "
                f"log directory; render a fresh run (`p2p render ...` or `make compose-mesh`) instead "
                f"of starting the same one again"
            )
        self._msg_fd = _open_log(messages_file(cfg.log_dir, cfg.id))
        self._ev_fd = _open_log(events_path)

    # ---- logging -------------------------------------------------------------

    def event(self, ev: str, **fields: object) -> None:
        rec = {"t": round(time.time(), 6), "peer": self.me, "ev": ev, **fields}
        os.write(self._ev_fd, json.dumps(rec, separators=(",", ":")).encode() + b"\n")

    def error(self, nbr: int | None, reason: str, detail: str = "") -> None:
        self.errors += 1
        self._occurred("error", nbr, reason, detail)

    def _occurred(self, ev: str, nbr: int | None, reason: str | None, detail: str) -> None:
        """One error (or abandoned connection): written at once when it is the first of its
        kind in the interval, else only counted until the interval closes."""
        key = (ev, nbr, reason)
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = [time.monotonic(), 0, 0.0, ""]
            self._write_occurrences(ev, nbr, reason, detail, 1)
        else:
            if not window[1]:
                window[2] = time.time()
            window[1] += 1
            window[3] = detail

    def _close_windows(self, every: bool = False) -> None:
        """Write one record per interval that counted occurrences; ``every``: at exit."""
        if not self._windows:
            return
        now = time.monotonic()
        for key, (opened, count, since, detail) in list(self._windows.items()):
            if every or now - opened >= AGGREGATE_INTERVAL:
                del self._windows[key]
                if count:
                    ev, nbr, reason = key
                    self._write_occurrences(ev, nbr, reason, detail, count, since)

    def _write_occurrences(self, ev: str, nbr: int | None, reason: str | None, detail: str, count: int,
                           since: float | None = None) -> None:
        # A record standing for one occurrence looks the same whether written at once or at
        # the close of its interval; one standing for more says since when it counted.
        extra = {} if count == 1 or since is None else {"since": round(since, 6)}
        if ev != "error":  # abandoned: benign, no stderr line
            self.event(ev, count=count, **extra)
            return
        self.event("error", nbr=nbr, reason=reason, detail=detail, count=count, **extra)
        who = f"link {nbr}" if nbr is not None else "connection"
        if count == 1:
            text = f"{reason}{': ' + detail if detail else ''}"
        else:
            text = f"{reason}: {count} more within {AGGREGATE_INTERVAL:g} s (last: {detail or '-'})"
        print(f"peer {self.me}: {who}: {text}", file=sys.stderr, flush=True)

    def _log_received(self, lines: list[bytes]) -> None:
        # One write of whole lines, before the forwards these lines caused are sent: a
        # neighbour can log a frame from us only if we logged what made us send it. A SIGKILL
        # can only cut at a line boundary or, at worst, inside the last line, which readers detect.
        data = b"\n".join(lines) + b"\n"
        while data:
            written = os.write(self._msg_fd, data)
            data = data[written:]

    # ---- sending -------------------------------------------------------------

    def _send(self, link: Link, data: bytes, frames: int, resend: bool = False) -> None:
        """Write frames on the link's active connection, or queue them while it is waiting.
        A resend (frames of a connection that closed unsettled) was counted when first sent."""
        if link.blocked:
            link.dropped_out += frames
        elif link.state == "up":
            conn = link.active
            assert conn is not None
            conn.writer.write(data)
            self._wrote(link, conn, data, frames)
            if resend:
                link.resent += frames
            else:
                link.frames_out += frames
                link.bytes_out += len(data)
                self.sent += frames
            if conn.writer.transport.get_write_buffer_size() > self.cfg.max_buffer:
                self.error(link.nbr, "slow_consumer", f"more than {self.cfg.max_buffer} bytes unsent")
                self._drop(link)
        elif link.state == "waiting":
            link.pending.append((data, frames, resend))
            if not resend:
                link.pending_frames += frames
        elif resend:
            link.resend_lost += frames
        else:
            link.undelivered += frames

    def _wrote(self, link: Link, conn: Conn, data: bytes, frames: int) -> None:
        # The other side reads what we wrote before any end of this connection it sees, so it
        # settles it and never resends what it wrote here: our record of that is not needed.
        conn.got = None
        if conn.unsent is None:
            return
        if conn.unsent_bytes + len(data) > self.cfg.max_buffer:
            conn.unsent = None  # give up keeping them: say so, a duplicate dropped now loses frames
            self.event("resend_overflow", nbr=link.nbr, role=conn.role, bytes=conn.unsent_bytes)
            return
        conn.unsent.append((data, frames))
        conn.unsent_bytes += len(data)

    def _emit(self, link: Link, frames: list[bytes]) -> None:
        """Send frames over a link, through its emulated loss and delay when it has any."""
        shaper = self._shapers.get(link.nbr)
        if shaper is None:
            self._send(link, b"".join(frames), len(frames))
            return
        loss = shaper.shape.loss
        if loss:
            kept = [f for f in frames if not is_lost(self.cfg.seed, self.me, link.nbr, f[4:], loss)]
            link.dropped_out += len(frames) - len(kept)
            frames = kept
        if not frames:
            return
        data = b"".join(frames)
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        loop.call_at(shaper.release_time(loop.time(), len(data)), self._release, link, data, len(frames))

    def _release(self, link: Link, data: bytes, frames: int) -> None:
        self._in_flight -= 1
        self._last_activity = time.monotonic()
        self._send(link, data, frames)

    def _author(self) -> None:
        self.authored = True
        self._last_activity = time.monotonic()
        payload, targets = self.proto.author()
        frame = HEADER.pack(len(payload)) + payload
        # Logged before the frames go: its time is then no later than their send (or release) time.
        self.event("authored", frames=len(targets))
        for nb in targets:
            self._emit(self.links[nb], [frame])

    # ---- links ---------------------------------------------------------------
    # docs/design.md, "Link set-up": accept from any neighbour; dial a neighbour until its link
    # is up (a lower-id one only after a grace); of two connections for one edge, write on the
    # one the lower id dialed, read both until they end, resend what went out on one that
    # ended unsettled, and drop repeats.

    def _rank(self, link: Link, conn: Conn) -> tuple[bool, int]:
        """Preference among a link's connections: the one the lower id dialed, then the older."""
        return (conn.dialer != min(self.me, link.nbr), conn.seq)

    def _add_conn(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, role: str) -> None:
        self._conn_seq += 1
        conn = Conn(role, self.me if role == "dial" else link.nbr, self._conn_seq, writer)
        link.conns.append(conn)
        self._spawn(self._read_loop(link, conn, reader))
        if len(link.conns) > 1:
            link.duplicates += 1
            best = min(link.conns, key=lambda c: self._rank(link, c))
            link.active, link.writer = best, best.writer
            self.event("duplicate", nbr=link.nbr, role=role, action="kept", active=best.role)
            return
        link.state = "up"
        link.active, link.writer = conn, writer
        self._last_activity = time.monotonic()
        self.event("link_up", nbr=link.nbr, role=role)
        if link.pending:
            self._flush_pending(link)
        if not self.authored and all(lk.state == "up" for lk in self.links.values()):
            self._author()

    def _flush_pending(self, link: Link) -> None:
        """Send what waited for the link, in order; new frames and resends in separate writes."""
        pending, link.pending, link.pending_frames = link.pending, [], 0
        i = 0
        while i < len(pending):
            j = i
            while j < len(pending) and pending[j][2] == pending[i][2]:
                j += 1
            chunk = pending[i:j]
            self._send(link, b"".join(c[0] for c in chunk), sum(c[1] for c in chunk), resend=pending[i][2])
            i = j

    def _drop(self, link: Link) -> None:
        for conn in link.conns:
            conn.writer.close()
        link.conns = []
        link.active = link.writer = None
        link.state = "closed"

    def _start_dial(self, link: Link) -> None:
        """Dial until the link is up: a higher-id neighbour at once, a lower-id one only when it
        has not dialed us within ``dial_grace`` (one connection per edge between our peers, and
        still a link to a peer that dialed us once, was refused, and never dials again)."""
        if not link.dialing:
            link.dialing = True
            self._spawn(self._dial(link, 0.0 if link.nbr > self.me else self.cfg.dial_grace))

    async def _dial(self, link: Link, grace: float) -> None:
        try:
            if grace:
                await asyncio.sleep(grace)
                if link.state != "waiting" or self.exit_reason:
                    return
                self.event("dial", nbr=link.nbr, after=grace)
            await self._dial_loop(link)
        finally:
            link.dialing = False

    async def _dial_loop(self, link: Link) -> None:
        delay = 0.02
        # exit_reason too: asyncio.wait_for (3.11) can swallow a cancellation that races
        # with a failed connect, and this loop must not outlive the peer.
        while link.state == "waiting" and not self.exit_reason:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(link.host, link.port, limit=STREAM_LIMIT), timeout=5
                )
            except (TimeoutError, OSError) as e:
                cause = type(e).__name__
                link.dial_errors[cause] = link.dial_errors.get(cause, 0) + 1
                await asyncio.sleep(delay)
                # Capped at 2 s: a thousand peers retrying faster load the engine's DNS and
                # slow down the start of the very neighbours they wait for.
                delay = min(delay * 2, 2.0)
                continue
            if link.state != "waiting":  # up by the neighbour's dial meanwhile, or failed by the deadline
                writer.close()
                return
            _tune(writer)
            writer.write(encode_handshake(self.me))
            if link.dial_errors:  # where a slow start went: name resolution, refusals, timeouts
                self.event("dial_retries", nbr=link.nbr, host=link.host, errors=link.dial_errors)
            self._add_conn(link, reader, writer, "dial")

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._pending_handshakes >= MAX_PENDING_HANDSHAKES:
            self.error(None, "too_many_connections", f"over {MAX_PENDING_HANDSHAKES} connections awaiting a handshake")
            writer.close()
            return
        self._pending_handshakes += 1
        got = bytearray()
        try:
            await asyncio.wait_for(_read_handshake(reader, got), self.cfg.handshake_timeout)
        except TimeoutError:  # before OSError: TimeoutError is an OSError since 3.11
            self.error(None, "no_handshake", f"TimeoutError after {len(got)} of 4 bytes")
            writer.close()
            return
        except (asyncio.IncompleteReadError, OSError) as e:
            # A reset can leave bytes unread in the stream's buffer: they were sent too.
            if not got and not getattr(reader, "_buffer", None):
                # Gone before a single byte: a dialer that gave up on a slow connect (its
                # attempt timed out and it dialed again), not a hostile client.
                self.abandoned += 1
                self._occurred("abandoned", None, None, "")
            else:
                self.error(None, "no_handshake", f"{type(e).__name__} after {len(got)} of 4 bytes")
            writer.close()
            return
        finally:
            self._pending_handshakes -= 1
        self._accepted(decode_handshake(bytes(got)), reader, writer)

    def _accepted(self, nbr: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection that said its id: a link, a duplicate to keep or refuse, or an error."""
        link = self.links.get(nbr)
        if link is None:
            kind = "not_neighbour" if nbr < self.cfg.n else "unknown_peer"
            self.error(None, kind, f"handshake from id {nbr}")
            writer.close()
        elif link.state == "failed":
            self.error(nbr, "late_link", "neighbour connected after the link deadline")
            writer.close()
        elif link.active is not None and link.active.frames:
            # Settled: the neighbour writes on the connection we have, so it will not use this
            # one (the original tool keeps its first and closes the others unread, as we do here).
            link.duplicates += 1
            self.event("duplicate", nbr=nbr, role="accept", action="refused", active=link.active.role)
            writer.close()
        elif len(link.conns) >= 2:
            self.error(nbr, "duplicate_link", "a third connection for an edge")
            writer.close()
        else:
            _tune(writer)
            self._add_conn(link, reader, writer, "accept")

    async def _read_loop(self, link: Link, conn: Conn, reader: asyncio.StreamReader) -> None:
        buf = b""
        reason = "eof"
        broken = False  # the neighbour broke the protocol: no reason to dial it again
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    if buf:
                        raise FrameError("truncated", f"EOF inside a frame ({len(buf)} bytes pending)")
                    break
                buf = buf + data if buf else data
                consumed = self._process(link, conn, buf)
                buf = buf[consumed:]
        except FrameError as e:
            reason = e.reason
            broken = True
            self.error(link.nbr, e.reason, e.detail)
        except OSError as e:
            reason = type(e).__name__
        finally:
            self._conn_closed(link, conn, reason, broken)

    def _receive_noting_arrival(self, author: int, hops: list[int], payload: bytes,
                                canonical: bool) -> tuple[bytes, list[int]]:
        """The protocol's receive, after an event for the first message of each author (--arrivals)."""
        if author not in self._arrived:
            self._arrived.add(author)
            self.event("first", author=author, hops=len(hops))
        return self.proto.receive(author, hops, payload, canonical)

    def _settle(self, link: Link, conn: Conn, frames: int) -> None:
        """Frames arrived on ``conn``: the neighbour writes on it, so it keeps it (the original
        tool writes only on the connection it kept; our peers only on the preferred one, read
        every connection to its end, and the other side read what we wrote first)."""
        first = not conn.frames
        conn.frames += frames
        if not first:
            return
        conn.unsent, conn.unsent_bytes = None, 0
        if conn is link.active:
            for other in link.conns:
                if other is not conn and not other.eof_sent:
                    # Half-close the loser: the other side reads it to its end and closes it.
                    other.eof_sent = True
                    with contextlib.suppress(OSError, RuntimeError):
                        other.writer.write_eof()
                    self.event("duplicate", nbr=link.nbr, role=other.role, action="closed", active=conn.role)

    def _conn_closed(self, link: Link, conn: Conn, reason: str, broken: bool = False) -> None:
        """A connection ended: the link stays up on the other one, or goes down."""
        if conn not in link.conns:
            return  # closed with its whole link (slow consumer)
        link.conns.remove(conn)
        conn.writer.close()
        if conn.got:  # we never wrote on it: the neighbour may send these again elsewhere
            link.retired.append(conn.got)
        # Ended before a frame came: the other side may have closed it unread; send it again
        # (not while this peer is closing its links: it is done).
        resend = conn.unsent if not conn.frames and conn.unsent and not self.exit_reason else []
        resend_frames = sum(f for _, f in resend)
        if link.conns:
            if conn is link.active:
                link.active = min(link.conns, key=lambda c: self._rank(link, c))
                link.writer = link.active.writer
            self.event("conn_closed", nbr=link.nbr, role=conn.role, reason=reason, frames_in=conn.frames,
                       resent=resend_frames)
            for data, frames in resend:
                self._send(link, data, frames, resend=True)
            return
        link.active = link.writer = None
        link.state = "closed"
        if self.cfg.redial:
            # A run that restarts peers: the link that comes back is most likely the neighbour's
            # new incarnation, which must not get what its predecessor may have read and
            # forwarded (tests/testbed/test_torture.py seed 15: a frame resent to a restarted
            # peer was flooded a second time, repeats no fault explains). The resend is for
            # other implementations that close a duplicate unread, and they never join runs
            # with faults (p2p refuses them).
            link.resend_lost += resend_frames
            resend = []
        extra = {"resend": resend_frames} if resend else {}
        self.event("link_down", nbr=link.nbr, reason=reason, **extra)
        # Sent again if the link comes back (our redial, or the neighbour's dial); else lost.
        link.pending[:0] = [(data, frames, True) for data, frames in resend]
        # Closed before its first frame: the other side never took the link (its handshake
        # timer can fire on a starved host); the dialer (lower id) dials again. The higher id
        # does not: the neighbour that closed may simply have finished (a dial to it would
        # fail at the deadline), and if it kept another connection, that one comes.
        stillborn = link.frames_in == 0 and self.proto.authors_to_every_neighbour and not broken
        if (self.cfg.redial or stillborn) and link.nbr > self.me and not self.exit_reason:
            link.state = "waiting"
            # A restart run (--redial) gives each new dial a full deadline; a stillborn
            # link keeps its first one, so a neighbour that keeps refusing ends as failed.
            # The new deadline starts here, not when the dial task first runs: a monitor
            # tick in between would find the link waiting since its first dial.
            if self.cfg.redial:
                link.waiting_since = time.monotonic()
            self.event("redial", nbr=link.nbr)
            self._start_dial(link)

    def _process(self, link: Link, conn: Conn, buf: bytes) -> int:
        """Handle every complete frame in ``buf`` (received on ``conn``); return the bytes consumed."""
        n = self.cfg.n
        me = self.me
        sender = link.nbr
        max_frame = self.cfg.max_frame
        receive = self._receive_noting_arrival if self.cfg.arrivals else self.proto.receive
        own_id_ok = self.proto.accepts_own_id
        log: list[bytes] = []  # bounded by buf: written before the forwards go out
        seen = self.authors_seen
        pack = HEADER.pack
        unpack_from = HEADER.unpack_from
        out: dict[int, list[bytes]] = {}
        end = len(buf)
        pos = 0
        got = 0
        got_bytes = 0
        noncanonical = 0
        skipped = 0  # frames dropped unread: partition, or a repeat
        # Payloads the neighbour may send again (docs/design.md, "Link set-up"); None on a
        # link that never had a second connection: no look-up at all.
        again = _repeatable(link, conn)
        record = conn.got
        try:
            while end - pos >= 4:
                size = unpack_from(buf, pos)[0]
                if size > max_frame:
                    raise FrameError("oversize", f"frame of {size} bytes exceeds {max_frame}")
                stop = pos + 4 + size
                if stop > end:
                    break
                payload = buf[pos + 4 : stop]
                if link.blocked or (again and any(payload in s for s in again)):
                    pos = stop
                    skipped += 1
                    if link.blocked:
                        link.dropped_in += 1
                    else:  # a resend of what we read on another connection: not a delivery
                        link.repeats += 1
                    continue
                author, hops, canonical = parse_payload(payload, n)
                if hops[-1] != sender:
                    raise FrameError("bad_sender", f"last hop {hops[-1]} is not the sender {sender}")
                if me in hops and not own_id_ok:
                    raise FrameError("bad_hops", f"own id {me} already in hops")
                pos = stop
                if record is not None:
                    record.add(payload)
                got += 1
                got_bytes += size + 4  # the bytes on the wire, canonical or not
                if canonical:
                    log.append(payload)
                else:
                    # Logged as the canonical line: valid JSON with a newline inside would tear
                    # the log, and readers take a line's frame size as 4 + its length.
                    log.append(encode_payload(author, hops))
                    noncanonical += 1
                seen.add(author)
                fwd, targets = receive(author, hops, payload, canonical)
                if targets:
                    frame = pack(len(fwd)) + fwd
                    for t in targets:
                        if t in out:
                            out[t].append(frame)
                        else:
                            out[t] = [frame]
        finally:
            if got or skipped:
                self._settle(link, conn, got + skipped)
            if got:  # frames accepted before an error are kept and forwarded
                self._delivered(link, got, got_bytes, noncanonical, log, out)
        return pos

    def _delivered(self, link: Link, got: int, got_bytes: int, noncanonical: int, log: list[bytes],
                   out: dict[int, list[bytes]]) -> None:
        """Account, log and forward the ``got`` frames of one chunk (logged before forwarded)."""
        self.recv += got
        self._last_delivery = time.time()
        link.frames_in += got
        link.bytes_in += got_bytes
        if noncanonical:
            link.noncanonical += noncanonical
            self.noncanonical += noncanonical
        self._last_activity = time.monotonic()
        self._log_received(log)  # logged before forwarded
        for t, frames in out.items():
            self._emit(self.links[t], frames)
        expect = self.cfg.expect
        if expect is not None and self.recv >= expect and self.authored and not self._in_flight:
            self._finish("expected")  # forwards just written still go out: close() flushes

    # ---- life cycle ----------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_signal(self, name: str) -> None:
        self._signalled.set()
        self._finish(name)

    def _finish(self, reason: str) -> None:
        if not self.exit_reason:
            self.exit_reason = reason
            self._done.set()

    def _progress_in(self) -> dict[str, Any]:
        """Frames and bytes received so far per neighbour, for a watcher of the run (p2p --live):
        it follows these records instead of re-reading the message logs while the peers write
        them. Left out above PROGRESS_LINKS neighbours, where the record would grow too long."""
        if len(self.links) > PROGRESS_LINKS:
            return {}
        return {"in": {str(lk.nbr): [lk.frames_in, lk.bytes_in] for lk in self.links.values() if lk.frames_in}}

    async def _monitor(self) -> None:
        cfg = self.cfg
        last_progress = (-1, -1)
        # Ten looks a second per peer are nothing for ten peers and ten thousand wake-ups
        # a second for a thousand on two cores: slower ticks for big networks (log flushes,
        # progress records, deadlines and idle checks only; the expected count is checked
        # as frames arrive).
        tick = min(1.0, max(TICK, cfg.n / 1000))
        while not self._done.is_set():
            await asyncio.sleep(tick)
            now = time.monotonic()
            self._close_windows()
            if (self.recv, self.sent) != last_progress:
                last_progress = (self.recv, self.sent)
                self.event("progress", recv=self.recv, sent=self.sent, **self._progress_in())
            self._read_control()
            waiting = [lk for lk in self.links.values() if lk.state == "waiting"]
            overdue = [lk for lk in waiting if now - lk.waiting_since >= cfg.link_deadline]
            if overdue:
                for lk in overdue:
                    lk.state = "failed"
                    lk.undelivered += lk.pending_frames
                    lk.resend_lost += sum(p[1] for p in lk.pending if p[2])
                    lk.pending, lk.pending_frames = [], 0
                    self.event("link_failed", nbr=lk.nbr, reason=f"not up within {cfg.link_deadline:g} s")
                    print(
                        f"peer {self.me}: link to peer {lk.nbr} ({lk.host}:{lk.port}) never came up "
                        f"within {cfg.link_deadline:g} s",
                        file=sys.stderr,
                        flush=True,
                    )
                waiting = [lk for lk in waiting if lk.state == "waiting"]
            if not self.authored and not waiting:
                self._author()  # every link is up or given up on: flood over what there is
            if now - self._started >= cfg.max_runtime:
                self._finish("max_runtime")
            elif self._in_flight:
                pass  # emulated delays still hold frames for our neighbours
            elif self.authored and cfg.expect is not None and self.recv >= cfg.expect:
                self._finish("expected")
            elif self.authored and now - self._last_activity >= cfg.idle:
                silence = now - self._last_activity
                lost = {nb for nb, lk in self.links.items() if lk.state in ("failed", "closed")}
                long_silence = lost and silence >= max(cfg.idle, cfg.link_deadline)
                if cfg.expect is None:
                    reaches_all = getattr(self.proto, "reaches_all", True) and not self._lossy
                    heard_all = len((self.authors_seen | lost) - {self.me}) >= cfg.n - 1
                    if not reaches_all or heard_all or long_silence:
                        self._finish("idle")
                elif long_silence:
                    # A neighbour that finished closes its link too, so a closed link alone
                    # is no reason to give up on expected deliveries: only a long silence is.
                    self._finish("idle")

    def _read_control(self) -> None:
        path = self.cfg.control
        if path is None:
            return
        try:
            mtime = path.stat().st_mtime_ns
            if mtime == self._control_mtime:
                return
            control = json.loads(path.read_text())
            blocked = {frozenset(map(int, e)) for e in control.get("blocked", [])}
            shapes = self._control_shapes(control.get("shapes", {}))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as e:
            self.error(None, "bad_control", f"{path}: {e}")
            return
        self._control_mtime = mtime
        for link in self.links.values():
            now_blocked = frozenset((self.me, link.nbr)) in blocked
            if now_blocked != link.blocked:
                link.blocked = now_blocked
                self.event("partition" if now_blocked else "heal", nbr=link.nbr)
        for nb, (keys, shape) in shapes.items():
            self._change_shape(nb, keys, shape)

    def _control_shapes(self, shapes: dict[str, dict[str, float]]) -> dict[int, tuple[dict[str, float], LinkShape]]:
        """control.json's ``shapes`` for my links: nbr -> (the keys set, the link's new shape: its
        configured shape with those keys on top). Raises ValueError/TypeError on a bad entry."""
        out = {}
        for nb in self.links:
            keys = shapes.get(f"{min(self.me, nb)}-{max(self.me, nb)}")
            if keys is not None:
                base = self.cfg.link_shapes.get(nb, self.cfg.shape)
                out[nb] = (dict(keys), LinkShape(**{**vars(base), **keys}))
        return out

    def _change_shape(self, nb: int, keys: dict[str, float], shape: LinkShape) -> None:
        """From now on, frames to ``nb`` go through ``shape`` (its delay queue and jitter stream carry on)."""
        if self._shape_changes.get(nb) == keys:
            return
        self._shape_changes[nb] = keys
        shaper = self._shapers.get(nb)
        if shaper is None:
            self._shapers[nb] = Shaper(shape, self.cfg.seed, self.me, nb)
        else:
            shaper.shape = shape
        self._lossy = any(s.shape.loss for s in self._shapers.values())
        self.event("shape", nbr=nb, **vars(shape))

    async def run(self) -> int:
        """Run to completion; return the process exit code."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self._started = self._last_activity = time.monotonic()
        self._control_mtime = -1
        for link in self.links.values():
            link.waiting_since = self._started
        self._read_control()  # a partition declared from the start holds before the first frame
        wall_start = time.time()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig.name.lower())
            except (NotImplementedError, RuntimeError):
                pass
        self.event("start", n=cfg.n, neighbours=list(self.links), protocol=cfg.protocol, expect=cfg.expect)
        if cfg.listen_fd is not None:
            sock = socket.socket(fileno=cfg.listen_fd)
            server = await asyncio.start_server(self._on_accept, sock=sock, limit=STREAM_LIMIT)
        else:
            server = await asyncio.start_server(
                self._on_accept, *cfg.listen, limit=STREAM_LIMIT, reuse_address=True
            )
        addr = server.sockets[0].getsockname()
        self.event("listen", addr=f"{addr[0]}:{addr[1]}")
        if cfg.start_file is not None:
            await self._await_start_file(cfg.start_file)
        for link in self.links.values():
            self._start_dial(link)
        if not self.links:
            self._author()
        monitor = loop.create_task(self._monitor())
        await self._done.wait()
        monitor.cancel()
        server.close()
        await self._close_links()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        duration = time.time() - wall_start
        self._close_windows(every=True)  # the counts still open
        if cfg.exit_slot > 0:
            self.event("exit_slot", wait=round(exit_slot_wait(self.me, cfg.n, cfg.exit_slot, time.time()), 3))
        self._write_summary(duration)
        if cfg.upload is not None and not upload_logs(cfg.upload, cfg.log_dir, self.me):
            return EXIT_ERROR
        if cfg.exit_slot > 0:  # logs and summary are complete: only the process's end waits
            wait = exit_slot_wait(self.me, cfg.n, cfg.exit_slot, time.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._signalled.wait(), timeout=wait)
            # Done: a stop signal from now on (a runner stopping what it thinks is stuck) must
            # not turn a complete run into exit code 143 while the interpreter shuts down.
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
                    signal.signal(sig, signal.SIG_IGN)
        failed = [lk.nbr for lk in self.links.values() if lk.state == "failed"]
        return EXIT_LINK_FAILED if failed else EXIT_OK

    async def _await_start_file(self, path: Path) -> None:
        # Dials to containers that do not exist yet would only load the engine's DNS and
        # take CPU from the start-up of the very containers they wait for.
        # Bounded by the peer's lifetime only: a thousand containers can take longer to
        # start than any link deadline. Without the file the peer ends at max_runtime.
        deadline = self._started + self.cfg.max_runtime
        # A thousand peers looking five times a second cost a third of a core while the
        # engine still creates containers; the last container takes minutes then anyway.
        poll = min(2.0, max(0.2, self.cfg.n / 500))
        while not path.exists() and not self._done.is_set():
            if time.monotonic() >= deadline:
                self.event("start_file_missing", path=str(path))
                print(f"peer {self.me}: start file {path} did not appear within --max-runtime "
                      f"{self.cfg.max_runtime:g} s", file=sys.stderr, flush=True)
                break
            await asyncio.sleep(poll)
        now = time.monotonic()
        self._last_activity = now
        for link in self.links.values():
            if link.state == "waiting":
                link.waiting_since = now
        self.event("go")

    async def _close_links(self) -> None:
        writers = [c.writer for lk in self.links.values() for c in lk.conns]
        for w in writers:
            w.close()  # the transport still sends what is buffered before closing
        if writers:
            await asyncio.wait(
                [asyncio.ensure_future(w.wait_closed()) for w in writers], timeout=max(5.0, self.cfg.idle)
            )

    def _write_summary(self, duration: float) -> None:
        links = {
            str(lk.nbr): {
                "frames_in": lk.frames_in,
                "bytes_in": lk.bytes_in,
                "frames_out": lk.frames_out,
                "bytes_out": lk.bytes_out,
                "undelivered": lk.undelivered + lk.pending_frames,
                "dropped_in": lk.dropped_in,
                "dropped_out": lk.dropped_out,
                "noncanonical": lk.noncanonical,
                "state": lk.state,
                # Link set-up figures, only where there were any: a run among our own peers
                # without duplicates writes the same summary as before.
                **{k: v for k, v in (("duplicates", lk.duplicates), ("repeats", lk.repeats), ("resent", lk.resent),
                                     ("resend_lost", lk.resend_lost + sum(p[1] for p in lk.pending if p[2])))
                   if v},
            }
            for lk in self.links.values()
        }
        traffic = "".join(
            f"{lk.nbr}; {lk.bytes_in}; {lk.bytes_out}\n"
            for lk in self.links.values()
            if lk.frames_in or lk.frames_out
        )
        tmp = traffic_tmp_file(self.cfg.log_dir, self.me)
        tmp.write_text(traffic)
        os.replace(tmp, traffic_file(self.cfg.log_dir, self.me))
        self.event(
            "summary",
            recv=self.recv,
            sent=self.sent,
            recv_bytes=sum(lk.bytes_in for lk in self.links.values()),
            sent_bytes=sum(lk.bytes_out for lk in self.links.values()),
            links=links,
            errors=self.errors,
            abandoned=self.abandoned,
            noncanonical=self.noncanonical,
            exit_reason=self.exit_reason,
            duration=round(duration, 6),
            last_delivery=self._last_delivery,
            max_rss_kib=_max_rss_kib(),
        )
        os.close(self._msg_fd)
        os.close(self._ev_fd)


class AlreadyFinished(ValueError):
    """This peer's events log already holds a summary: it finished a run in this log directory."""


def holds_summary(path: Path) -> bool:
    """Does the events log at ``path`` hold a ``summary`` record? Reads only its end."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return False
    with f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - SUMMARY_TAIL)
        f.seek(start)
        tail = f.read()
        lines = tail.split(b"\n")
        if start > 0:
            # The window's first line is cut: look at its start (one summary of a peer with
            # hundreds of links can be longer than the whole window).
            lines[0] = _line_start(f, start)
        for line in lines:
            if b'"ev":"summary"' in line[:200]:
                return True
    return False


def _line_start(f, pos: int) -> bytes:
    """The first bytes of the line that holds file offset ``pos``."""
    while pos > 0:
        step = min(SUMMARY_TAIL, pos)
        f.seek(pos - step)
        block = f.read(step)
        nl = block.rfind(b"\n")
        if nl >= 0:
            pos = pos - step + nl + 1
            break
        pos -= step
    f.seek(pos)
    return f.read(200)


def _open_log(path: Path) -> int:
    """Open a log for appending. A torn last line (a killed earlier incarnation) is ended
    first, so that it stays one bad line and does not swallow our first record."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
    except OSError:
        os.close(fd)
        raise
    return fd


def _repeatable(link: Link, conn: Conn) -> list[set[bytes]] | None:
    """The payload sets a frame arriving on ``conn`` may repeat: those of the link's other
    connections we never wrote on, open or closed."""
    if not link.retired and len(link.conns) < 2:
        return None
    sets = [c.got for c in link.conns if c is not conn and c.got] + link.retired
    return sets or None


async def _read_handshake(reader: asyncio.StreamReader, got: bytearray) -> None:
    """Read the 4-byte handshake into ``got``, which shows how far it came if it fails."""
    while len(got) < 4:
        chunk = await reader.read(4 - len(got))
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(got), 4)
        got += chunk


def exit_slot_wait(me: int, n: int, slot: float, now: float) -> float:
    """Seconds from wall-clock ``now`` until peer ``me``'s exit slot, in [0, n*slot)."""
    cycle = n * slot
    return (me * slot - now) % cycle


def _max_rss_kib() -> int | None:
    """Peak resident memory of this process (Linux reports KiB), or None where unknown."""
    try:
        import resource  # Unix only
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _tune(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
