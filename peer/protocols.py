"""Gossip protocols behind one small interface.

A protocol decides what a peer sends when it authors and what it forwards when a
message arrives; the peer does framing, links, logging and accounting.
"""

from __future__ import annotations

from peer.wire import encode_payload


class Protocol:
    """Interface: ``author()`` once, then ``receive()`` per delivered message."""

    name = "abstract"

    def __init__(self, me: int, neighbours: list[int], n: int, seed: int | None = None) -> None:
        self.me = me
        self.neighbours = sorted(neighbours)
        self.n = n
        self.seed = seed

    def author(self) -> tuple[bytes, list[int]]:
        """The peer's own message payload (hops ``[me]``) and the neighbours to send it to."""
        raise NotImplementedError

    def receive(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> tuple[bytes, list[int]]:
        """Payload to forward (sender's id appended) and the neighbours to forward it to."""
        raise NotImplementedError


class HopListFlood(Protocol):
    """Protocol v1: forward every copy to every neighbour not already in the hop list."""

    name = "v1"

    def __init__(self, me: int, neighbours: list[int], n: int, seed: int | None = None) -> None:
        super().__init__(me, neighbours, n, seed)
        self._suffix = b",%d]}" % me

    def author(self) -> tuple[bytes, list[int]]:
        return encode_payload(self.me, [self.me]), list(self.neighbours)

    def receive(self, author: int, hops: list[int], payload: bytes, canonical: bool) -> tuple[bytes, list[int]]:
        targets = [nb for nb in self.neighbours if nb not in hops]
        if not targets:
            return b"", targets
        if canonical:
            # payload ends with b"]}": splice our id in rather than re-encoding.
            return payload[:-2] + self._suffix, targets
        return encode_payload(author, [*hops, self.me]), targets


PROTOCOLS: dict[str, type[Protocol]] = {"v1": HopListFlood}
