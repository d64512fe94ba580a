"""Wire format of the original tool (docs/design.md, "Wire format"): framing, messages, validation.

A frame is a 4-byte big-endian length L followed by L bytes of compact JSON
``{"id":<author>,"hops":[...]}``. The dialer of a link first sends its own id as a
4-byte big-endian unsigned int.
"""

from __future__ import annotations

import json
import re
import struct

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20

# The canonical encoding (what the original Go tool and we emit), one pattern per network
# size n: numbers have at most len(str(n - 1)) digits, because a longer one cannot be a peer
# and must never reach int(), which refuses more than 4300 digits (a ValueError). Anything
# else (a longer number too) goes to the slow path: still accepted when it is valid JSON of
# the right shape, and re-encoded on forward and in the peer's log.
_CANONICAL_N: dict[int, re.Pattern[bytes]] = {}


def _canonical_pattern(n: int) -> re.Pattern[bytes]:
    pattern = _CANONICAL_N.get(n)
    if pattern is None:
        num = rb"(?:0|[1-9][0-9]{0,%d})" % (_id_width(n) - 1)
        pattern = re.compile(rb'\{"id":(' + num + rb'),"hops":\[(' + num + rb"(?:," + num + rb')*)\]\}')
        _CANONICAL_N[n] = pattern
    return pattern


class FrameError(ValueError):
    """A protocol error on one connection: ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def encode_payload(author: int, hops: list[int]) -> bytes:
    """Compact JSON with keys in the original order, no spaces."""
    return b'{"id":%d,"hops":[%s]}' % (author, ",".join(map(str, hops)).encode())


def encode_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def encode_handshake(peer_id: int) -> bytes:
    return HEADER.pack(peer_id)


def decode_handshake(data: bytes) -> int:
    return HEADER.unpack(data)[0]


def parse_payload(payload: bytes, n: int) -> tuple[int, list[int], bool]:
    """Validate a message against a network of ``n`` peers.

    Returns ``(author, hops, canonical)``; raises ``FrameError`` for invalid UTF-8 or
    JSON, wrong types, ids outside ``0..n-1``, an empty or repeating hop list, or an
    author that is not the first hop. ``canonical`` is True when ``payload`` is exactly
    ``encode_payload(author, hops)``.

    An id with more digits than ``n - 1`` is rejected before any ``int()``: Python
    refuses to convert more than 4300 digits (a ``ValueError``, not a ``FrameError``).
    """
    m = (_CANONICAL_N.get(n) or _canonical_pattern(n)).fullmatch(payload)
    if m is not None:
        author = int(m.group(1))
        hops = [int(h) for h in m.group(2).split(b",")]
        canonical = True
    else:
        author, hops = _parse_slow(payload, n)
        canonical = False
    if author >= n:
        raise FrameError("bad_id", f"author {author} is not a peer (n={n})")
    for h in hops:
        if h >= n:
            raise FrameError("bad_hops", f"hop {h} is not a peer (n={n})")
    if hops[0] != author:
        raise FrameError("bad_hops", f"first hop {hops[0]} is not the author {author}")
    if len(set(hops)) != len(hops):
        raise FrameError("bad_hops", f"hop list repeats a peer: {hops}")
    return author, hops, canonical


_WIDTHS: dict[int, int] = {}


def _id_width(n: int) -> int:
    """Digits of the largest peer id, ``n - 1``: a longer number cannot be a peer."""
    width = _WIDTHS.get(n)
    if width is None:
        width = _WIDTHS[n] = len(str(max(n - 1, 0)))
    return width


class _LongInt:
    """A JSON integer with more digits than any peer id, kept unconverted."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_slow(payload: bytes, n: int) -> tuple[int, list[int]]:
    width = _id_width(n)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FrameError("bad_utf8", str(e)) from e

    def parse_int(s: str) -> int | _LongInt:
        digits = len(s) - (s[0] == "-")
        return _LongInt(digits) if digits > width else int(s)

    try:
        obj = json.loads(text, parse_int=parse_int)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise FrameError("bad_json", str(e)[:200]) from e
    if not isinstance(obj, dict) or set(obj) != {"id", "hops"}:
        raise FrameError("bad_type", "message must be an object with exactly the keys id and hops")
    author, hops = obj["id"], obj["hops"]
    if isinstance(author, _LongInt):
        raise FrameError("bad_id", f"author of {author.digits} digits is not a peer (n={n})")
    if not _is_id(author):
        raise FrameError("bad_id", f"id must be a non-negative integer, got {author!r}"[:200])
    if not isinstance(hops, list) or not hops:
        raise FrameError("bad_hops", "hops must be a non-empty list")
    for h in hops:
        if isinstance(h, _LongInt):
            raise FrameError("bad_hops", f"a hop of {h.digits} digits is not a peer (n={n})")
    if not all(_is_id(h) for h in hops):
        raise FrameError("bad_hops", "hops must be non-negative integers")
    return author, hops


def _is_id(x: object) -> bool:
    # bool is an int subclass; true/false are not peer ids.
    return type(x) is int and x >= 0
