"""Wire format of the original tool (DESIGN.md §3): framing, messages, validation.

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

# The canonical encoding (what the original Go tool and we emit). Anything else is
# still accepted when it is valid JSON of the right shape, and re-encoded on forward.
_CANONICAL = re.compile(rb'\{"id":(0|[1-9][0-9]*),"hops":\[((?:0|[1-9][0-9]*)(?:,(?:0|[1-9][0-9]*))*)\]\}')


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
    author that is not the first hop.
    """
    m = _CANONICAL.fullmatch(payload)
    if m is not None:
        author = int(m.group(1))
        hops = [int(h) for h in m.group(2).split(b",")]
        canonical = True
    else:
        author, hops = _parse_slow(payload)
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


def _parse_slow(payload: bytes) -> tuple[int, list[int]]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FrameError("bad_utf8", str(e)) from e
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise FrameError("bad_json", str(e)[:200]) from e
    if not isinstance(obj, dict) or set(obj) != {"id", "hops"}:
        raise FrameError("bad_type", "message must be an object with exactly the keys id and hops")
    author, hops = obj["id"], obj["hops"]
    if not _is_id(author):
        raise FrameError("bad_id", f"id must be a non-negative integer, got {author!r}"[:200])
    if not isinstance(hops, list) or not hops:
        raise FrameError("bad_hops", "hops must be a non-empty list")
    if not all(_is_id(h) for h in hops):
        raise FrameError("bad_hops", "hops must be non-negative integers")
    return author, hops


def _is_id(x: object) -> bool:
    # bool is an int subclass; true/false are not peer ids.
    return type(x) is int and x >= 0
