"""Gossip protocols behind one small interface (standard library only).

A protocol decides what a peer sends when it authors and what it forwards when a
message arrives; the peer does framing, links, logging and accounting (it logs every
received frame, duplicates included, before asking the protocol).

| name | forwards | reaches every peer |
|---|---|---|
| ``v1`` | every copy, to every neighbour not in the hop list | yes (connected graph) |
| ``flood`` | only the first copy of each author's message, to every neighbour not in its hop list | yes |
| ``gossip`` | every copy, to ``fanout`` random neighbours not in the hop list (the author too) | not guaranteed |
| ``ttl`` | like v1, while the hop list is shorter than ``ttl`` | when ttl >= n-1 |

``flood`` skips every neighbour in the hop list, not only the sender: a peer already in
the hop list has the message, and the wire rule (docs/design.md, "Validation") makes a frame that
carries the receiver's id a protocol error.

``gossip``'s choices are a function of (seed, peer, hop list) only — each copy draws
from its own ``random.Random`` seeded with that string — so a run replays exactly,
whatever order the copies arrive in, and the host can predict it by simulation.
Without a seed the choices are not reproducible.
"""

from __future__ import annotations

import random

from peer.wire import encode_payload


class Protocol:
    """Interface: ``author()`` once, then ``receive()`` per delivered message."""

    name = "abstract"
    # Does the protocol deliver every author's message to every peer of a connected
    # graph? The peer's idle exit waits for "a message from every author" only then.
    reaches_all: bool = False
    # Whether a peer may receive a hop list that already names it (the dedup flood sends
    # to every neighbour but the sender); v1 treats that as a protocol error.
    accepts_own_id: bool = False
    # Does a peer send its own message to every neighbour? Then a link that closes before
    # its first frame was never really up (the other side refused or timed out the
    # handshake) and the dialer dials again.
    authors_to_every_neighbour: bool = True
    # Protocol parameters and their defaults (positive integers), passed as --<name> (the peer's
    # flags are generated from these, peer/config.py), and what each means (its --help text).
    params: dict[str, int] = {}
    param_help: dict[str, str] = {}
    # Do the protocol's decisions depend on the seed?
    uses_seed: bool = False

    def __init__(self, me: int, neighbours: list[int], n: int, seed: int | None = None, **params: int) -> None:
        """``params`` may hold parameters of other protocols too (the peer passes all it has); they are ignored."""
        self.me = me
        self.neighbours = sorted(neighbours)
        self.n = n
        self.seed = seed
        for key, default in self.params.items():
            value = params.get(key)
            value = default if value is None else value
            if type(value) is not int or value < 1:
                raise ValueError(f"protocol {self.name}: {key} must be a positive integer, got {value!r}")
            setattr(self, key, value)
        self._suffix = b",%d]}" % me

    def author(self) -> tuple[bytes, list[int]]:
        """The peer's own message payload (hops ``[me]``) and the neighbours to send it to."""
        raise NotImplementedError

    def receive(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> tuple[bytes, list[int]]:
        """Payload to forward (sender's id appended) and the neighbours to forward it to."""
        raise NotImplementedError

    def _forward(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> bytes:
        if canonical:
            # payload ends with b"]}": splice our id in rather than re-encoding.
            return payload[:-2] + self._suffix
        return encode_payload(author, [*hops, self.me])


class HopListFlood(Protocol):
    """Protocol v1: forward every copy to every neighbour not already in the hop list."""

    name = "v1"
    reaches_all = True

    def author(self) -> tuple[bytes, list[int]]:
        return encode_payload(self.me, [self.me]), list(self.neighbours)

    def receive(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> tuple[bytes, list[int]]:
        targets = [nb for nb in self.neighbours if nb not in hops]
        if not targets:
            return b"", targets
        return self._forward(author, hops, payload, canonical), targets


class DedupFlood(Protocol):
    """Classic flood: forward only the first copy of each author's message; later copies are only logged."""

    name = "flood"
    reaches_all = True
    accepts_own_id = True

    def __init__(self, me: int, neighbours: list[int], n: int, seed: int | None = None, **params: int) -> None:
        super().__init__(me, neighbours, n, seed, **params)
        self.seen: set[int] = {me}

    def author(self) -> tuple[bytes, list[int]]:
        return encode_payload(self.me, [self.me]), list(self.neighbours)

    def receive(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> tuple[bytes, list[int]]:
        if author in self.seen:
            return b"", []
        self.seen.add(author)
        sender = hops[-1]
        targets = [nb for nb in self.neighbours if nb != sender]
        if not targets:
            return b"", targets
        return self._forward(author, hops, payload, canonical), targets


class Gossip(Protocol):
    """Push gossip: every copy (and the author's own message) goes to ``fanout`` random neighbours not in hops."""

    name = "gossip"
    reaches_all = False
    authors_to_every_neighbour = False
    params = {"fanout": 2}
    param_help = {"fanout": "neighbours each copy goes to"}
    uses_seed = True

    def __init__(self, me: int, neighbours: list[int], n: int, seed: int | None = None, **params: int) -> None:
        super().__init__(me, neighbours, n, seed, **params)
        # No seed: a private random salt, so choices still differ between copies but do not replay.
        self._salt = str(seed) if seed is not None else f"r{random.SystemRandom().getrandbits(64)}"

    def choose(self, hops: list[int]) -> list[int]:
        """The neighbours a copy with these hops goes to: a function of (seed, me, hops) only."""
        candidates = [nb for nb in self.neighbours if nb not in hops]
        k = self.fanout
        if len(candidates) <= k:
            return candidates
        rng = random.Random(f"{self._salt}:{self.me}:{','.join(map(str, hops))}")
        # Partial Fisher-Yates on rng.random() only (stable across Python versions).
        for i in range(k):
            j = i + int(rng.random() * (len(candidates) - i))
            candidates[i], candidates[j] = candidates[j], candidates[i]
        return sorted(candidates[:k])

    def author(self) -> tuple[bytes, list[int]]:
        return encode_payload(self.me, [self.me]), self.choose([self.me])

    def receive(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> tuple[bytes, list[int]]:
        targets = self.choose(hops)
        if not targets:
            return b"", targets
        return self._forward(author, hops, payload, canonical), targets


class HopLimitedFlood(HopListFlood):
    """v1 bounded by a hop limit: a copy is forwarded only while ``len(hops) < ttl``.

    So a message travels at most ``ttl`` links; with ttl >= n-1 this is exactly v1.
    ``reaches_all`` is an instance attribute here: True only when ttl >= n-1.
    """

    name = "ttl"
    reaches_all = False
    params = {"ttl": 3}
    param_help = {"ttl": "forward only while the hop list is shorter than this"}

    def __init__(self, me: int, neighbours: list[int], n: int, seed: int | None = None, **params: int) -> None:
        super().__init__(me, neighbours, n, seed, **params)
        self.reaches_all = self.ttl >= n - 1

    def receive(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> tuple[bytes, list[int]]:
        if len(hops) >= self.ttl:
            return b"", []
        return super().receive(author, hops, payload, canonical)


PROTOCOLS: dict[str, type[Protocol]] = {
    "v1": HopListFlood,
    "flood": DedupFlood,
    "gossip": Gossip,
    "ttl": HopLimitedFlood,
}
