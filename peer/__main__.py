"""``python -m peer``: run one peer (standard library only).

The flags, the ``--config`` file and their defaults are declared in peer/config.py.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # The peer speaks plain TCP: without this, asyncio imports ssl, and OpenSSL's start-up
    # costs ~4 MB of memory per peer, a thousand times over in a 1000-container run.
    sys.modules.setdefault("ssl", None)

import asyncio

from peer.config import PeerConfig
from peer.node import EXIT_ERROR, Peer


def main(argv: list[str] | None = None) -> int:
    cfg = PeerConfig.from_argv(argv)
    try:
        peer = Peer(cfg)
    except (ValueError, OSError) as e:
        print(f"peer {cfg.id}: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return asyncio.run(peer.run())
    except OSError as e:
        print(f"peer {cfg.id}: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
