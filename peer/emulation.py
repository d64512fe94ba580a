"""Link emulation inside the peer (the kernels here have no netem): latency, jitter,
loss and bandwidth per link, on the sending side, reproducible from the run's seed.

Loss is decided by a hash of (seed, sender, receiver, frame), not by arrival order, so
two runs with the same seed drop the same frames even though timing differs. Delays
keep each link first-in first-out, as TCP would.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

try:
    # hashlib would also load OpenSSL's libcrypto (~4 MB per peer process, x1000 containers);
    # blake2b is CPython's own module either way, and hashlib.blake2b is this very function.
    from _blake2 import blake2b
except ImportError:  # another interpreter
    from hashlib import blake2b

SHAPE_KEYS = ("latency", "jitter", "loss", "bandwidth")
_SHAPE_RULES = {
    "latency": "a finite number >= 0 (seconds)",
    "jitter": "a finite number >= 0 (seconds)",
    "bandwidth": "a finite number >= 0 (bytes/s, 0: unlimited)",
}


def show_value(x: object) -> str:
    """A value as the user would have typed it: ``2`` for 2.0, ``-0.1``, ``nan``, ``inf``, ``'x'``."""
    if isinstance(x, float) and math.isfinite(x) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def is_number(x: object) -> bool:
    """An int or a float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def shape_problem(key: str, value: object) -> str | None:
    """What is wrong with one link shape value, starting with its key (None: nothing)."""
    if key == "loss":
        if not is_number(value) or not 0 <= value <= 1:  # NaN fails both comparisons
            return f"loss must be in [0, 1], got {show_value(value)}"
        return None
    if not is_number(value) or not math.isfinite(value) or value < 0:
        return f"{key} must be {_SHAPE_RULES[key]}, got {show_value(value)}"
    return None


@dataclass(frozen=True)
class LinkShape:
    """latency and jitter in seconds, loss a probability, bandwidth in bytes/s (0: unlimited)."""

    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    bandwidth: float = 0.0

    def __post_init__(self) -> None:
        for key in SHAPE_KEYS:
            problem = shape_problem(key, getattr(self, key))
            if problem:
                raise ValueError(problem)

    @property
    def active(self) -> bool:
        return any((self.latency, self.jitter, self.loss, self.bandwidth))

    @classmethod
    def parse(cls, text: str, base: LinkShape | None = None) -> LinkShape:
        """``latency=0.02,loss=0.1`` (keys of SHAPE_KEYS), on top of ``base``."""
        values = dict(vars(base or cls()))
        for item in filter(None, text.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key.strip() not in SHAPE_KEYS:
                raise ValueError(f"bad link shape item {item!r}; expected KEY=VALUE with KEY in {', '.join(SHAPE_KEYS)}")
            try:
                values[key.strip()] = float(value)
            except ValueError:
                raise ValueError(f"{key.strip()} must be a number, got {value.strip()!r}") from None
        return cls(**values)


def is_lost(seed: int | None, sender: int, receiver: int, payload: bytes, loss: float) -> bool:
    if loss <= 0:
        return False
    digest = blake2b(b"%d|%d|%d|" % (seed or 0, sender, receiver) + payload, digest_size=8).digest()
    return int.from_bytes(digest, "big") < loss * 2**64


class Shaper:
    """Release times for one directed link."""

    def __init__(self, shape: LinkShape, seed: int | None, sender: int, receiver: int) -> None:
        self.shape = shape
        self.rng = random.Random(f"{seed}:{sender}:{receiver}")
        self.busy_until = 0.0
        self.last_release = 0.0

    def release_time(self, now: float, nbytes: int) -> float:
        s = self.shape
        start = max(now, self.busy_until)
        if s.bandwidth:
            self.busy_until = start + nbytes / s.bandwidth
            start = self.busy_until
        delay = s.latency + (self.rng.uniform(-s.jitter, s.jitter) if s.jitter else 0.0)
        release = max(start + max(0.0, delay), self.last_release)  # first in, first out
        self.last_release = release
        return release
