"""Signal guards every runner uses while it owns peers (processes or containers).

Only the main thread can set signal handlers; elsewhere the guards do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the peers exist, SIGTERM (``kill``, ``timeout``) raises KeyboardInterrupt, so the
    run cleans up as on Ctrl-C; the previous handler is back afterwards."""
    if not _in_main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Let clean-up finish: ignore Ctrl-C and SIGTERM meanwhile (children started here inherit that)."""
    if not _in_main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
