"""``python -m peer``: run one peer (standard library only)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # The peer speaks plain TCP: without this, asyncio imports ssl, and OpenSSL's start-up
    # costs ~4 MB of memory per peer, a thousand times over in a 1000-container run.
    sys.modules.setdefault("ssl", None)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from peer.emulation import SHAPE_KEYS, LinkShape  # noqa: E402
from peer.node import EXIT_ERROR, Peer, PeerConfig  # noqa: E402
from peer.protocols import PROTOCOLS  # noqa: E402


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "0.0.0.0", int(port)


def _neighbour(text: str) -> tuple[int, tuple[str, int]]:
    ident, sep, addr = text.partition("=")
    if not sep or not ident.isdigit():
        raise argparse.ArgumentTypeError(f"expected ID=HOST:PORT, got {text!r}")
    return int(ident), _address(addr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m peer",
        description="Run one p2p peer: connect to its neighbours, run the gossip protocol, log what it receives.",
    )
    p.add_argument("--config", type=Path, help="JSON file with the same keys as the flags (flags override it)")
    p.add_argument("--id", type=int, help="this peer's id (0..n-1)")
    p.add_argument("--n", type=int, help="number of peers in the network")
    p.add_argument("--listen", type=_address, help="HOST:PORT to listen on (default 0.0.0.0:7000)")
    p.add_argument("--listen-fd", type=int, help="inherit an already listening socket (used by the local runner)")
    p.add_argument(
        "--neighbour", "-p", type=_neighbour, action="append", default=None, metavar="ID=HOST:PORT",
        help="a neighbour; repeat for each",
    )
    p.add_argument("--log-dir", type=Path, help="directory for the logs (default ./logs)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), help="gossip protocol (default v1)")
    p.add_argument("--seed", type=int, help="seed for randomised protocols")
    p.add_argument("--fanout", type=int, help="protocol gossip: neighbours each copy goes to (default 2)")
    p.add_argument("--ttl", type=int, help="protocol ttl: forward only while the hop list is shorter than this (default 3)")
    p.add_argument("--expect", type=int, help="deliveries this peer expects; it exits as soon as it has them")
    p.add_argument("--idle", type=float, help="seconds of silence before exiting when --expect is not given (default 3)")
    p.add_argument("--link-deadline", type=float, help="seconds to wait for every link to come up (default 60)")
    p.add_argument("--control", type=Path, help="fault-injection file: JSON {\"blocked\": [[u, v], ...]} re-read on change")
    p.add_argument("--start-file", type=Path, metavar="PATH",
                   help="start barrier: listen at once, dial and author only once PATH exists (the Compose runner "
                        "creates it when every container runs); link deadlines count from then; without it the peer "
                        "ends at --max-runtime")
    p.add_argument("--exit-slot", type=float, metavar="SECONDS",
                   help="after writing its summary, peer ID exits only in the wall-clock slot [ID*S, (ID+1)*S) "
                        "modulo N*S, so that N containers do not all end at once (default 0: at once)")
    p.add_argument("--redial", action="store_true", default=None, help="redial dropped links (runs that restart peers)")
    p.add_argument("--handshake-timeout", type=float, help="seconds an accepted connection may take to say its id (default 10)")
    p.add_argument("--max-runtime", type=float, help="hard limit on the peer's lifetime in seconds (default 900)")
    p.add_argument("--latency", type=float, help="emulated one-way delay of every link, seconds")
    p.add_argument("--jitter", type=float, help="emulated delay varies uniformly by ± this, seconds (seeded)")
    p.add_argument("--loss", type=float, help="emulated loss probability per frame (seeded, by content)")
    p.add_argument("--bandwidth", type=float, help="emulated bandwidth of every link, bytes/s")
    p.add_argument("--link-shape", action="append", default=[], metavar="NBR:KEY=VALUE,...",
                   help="override the emulation for the link to NBR, e.g. 3:latency=0.05,loss=0.1")
    p.add_argument("--upload", type=_address, metavar="HOST:PORT",
                   help="at exit, upload the log files to this collector (python -m peer.collector)")
    return p


# Flags copied over the config file's values when given (argparse leaves the rest None).
_FLAG_KEYS = ("id", "n", "protocol", "seed", "expect", "idle", "link_deadline", "max_runtime", "listen_fd", "control",
              "start_file", "redial", "handshake_timeout", "fanout", "ttl", "exit_slot")


def _read_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The ``--config`` JSON file as a dict ({} without one); exits via the parser if unreadable."""
    if not args.config:
        return {}
    try:
        return json.loads(args.config.read_text())
    except (OSError, json.JSONDecodeError) as e:
        parser.error(f"cannot read config {args.config}: {e}")
        raise  # unreachable: parser.error exits


def _apply_flags(args: argparse.Namespace, data: dict) -> None:
    """Overwrite the config values with the flags that were given."""
    for key in _FLAG_KEYS:
        value = getattr(args, key)
        if value is not None:
            data[key] = value


def _take_addresses(args: argparse.Namespace, data: dict) -> tuple[dict, tuple[str, int], Path]:
    """Pop neighbours, listen address and log directory out of ``data``; flags win over the config."""
    neighbours = {int(k): _address(v) for k, v in data.pop("neighbours", {}).items()}
    if args.neighbour is not None:
        neighbours = dict(args.neighbour)
    listen = args.listen or (_address(data.pop("listen")) if "listen" in data else ("0.0.0.0", 7000))
    data.pop("listen", None)
    log_dir = args.log_dir or Path(data.pop("log_dir", "logs"))
    data.pop("log_dir", None)
    return neighbours, listen, log_dir


def _normalise_paths_and_upload(parser: argparse.ArgumentParser, args: argparse.Namespace, data: dict) -> None:
    """Turn the config's path strings into Paths and its upload text into (host, port)."""
    for key in ("control", "start_file"):
        if data.get(key) is not None:
            data[key] = Path(data[key])
    if args.upload is not None:
        data["upload"] = args.upload
    elif data.get("upload") is not None:
        try:
            data["upload"] = _address(str(data["upload"]))
        except argparse.ArgumentTypeError as e:
            parser.error(f"config upload: {e}")


def _link_shapes(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 data: dict) -> tuple[LinkShape, dict[int, LinkShape]]:
    """The default link emulation and the per-neighbour ``--link-shape`` overrides; pops the shape keys."""
    try:
        base = LinkShape(**{k: float(getattr(args, k) if getattr(args, k) is not None else data.pop(k, 0.0))
                            for k in SHAPE_KEYS})
        for k in SHAPE_KEYS:
            data.pop(k, None)
        overrides = {}
        for item in args.link_shape:
            nbr, sep, text = item.partition(":")
            if not sep or not nbr.isdigit():
                raise ValueError(f"expected NBR:KEY=VALUE,..., got {item!r}")
            overrides[int(nbr)] = LinkShape.parse(text, base)
    except ValueError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits
    return base, overrides


def config_from_args(argv: list[str] | None = None) -> PeerConfig:
    """Build the peer's config from the flags, on top of the ``--config`` file if given."""
    parser = build_parser()
    args = parser.parse_args(argv)
    data = _read_config(parser, args)
    _apply_flags(args, data)
    neighbours, listen, log_dir = _take_addresses(args, data)
    _normalise_paths_and_upload(parser, args, data)
    data["shape"], data["link_shapes"] = _link_shapes(parser, args, data)
    for required in ("id", "n"):
        if required not in data:
            parser.error(f"--{required} is required (flag or config)")
    try:
        return PeerConfig(
            neighbours=neighbours, log_dir=log_dir, listen_host=listen[0], listen_port=listen[1], **data
        )
    except TypeError as e:
        parser.error(f"bad config: {e}")
        raise  # unreachable: parser.error exits


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
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
