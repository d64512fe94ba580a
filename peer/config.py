"""The peer's configuration, every option declared once (standard library only).

Each option is a field of :class:`PeerConfig`: name, type, default and help text; its flag
is derived from the name (``link_deadline`` -> ``--link-deadline``). From these declarations
``PeerConfig.from_argv`` parses a command line (on top of a ``--config`` JSON file whose keys
are the field names; flags override it) and :func:`argv_of` builds one, so no flag is spelled
twice: the runners build the peers' command lines with ``argv_of``, and the run spec
(generator/spec.py) takes the defaults and the ``--peer-option`` keys from here.

A protocol's parameters (``params`` of the classes in peer/protocols.py) get a flag each
(``--fanout``, ``--ttl``); their values land in ``protocol_params`` and go to the protocol.
A field's ``runner`` metadata says what sets it in a ``p2p`` run; the others can be set
with ``p2p run --peer-option KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from peer.emulation import SHAPE_KEYS, LinkShape
from peer.protocols import PROTOCOLS
from peer.wire import MAX_FRAME

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 7000


def option(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
           flag: str | None = "", short: str | None = None, metavar: str | None = None,
           runner: str | None = None) -> Any:
    """A PeerConfig field. ``help`` may say ``{default}``; ``flag``: "" derives it from the name, None
    means no flag (set in code or the config file only); ``short``: an alias, the one command lines
    are built with; ``runner``: what sets the option in a ``p2p`` run (``--peer-option`` refuses it)."""
    meta = {"help": help, "flag": flag, "short": short, "metavar": metavar, "runner": runner}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PeerConfig:
    """Everything one peer needs to know; built from CLI flags or a JSON file."""

    id: int = option(help="this peer's id (0..n-1)", runner="the topology")
    n: int = option(help="number of peers in the network", runner="-n")
    listen: tuple[str, int] = option((DEFAULT_HOST, DEFAULT_PORT), "HOST:PORT to listen on (default {default})",
                                     runner="the runner")
    listen_fd: int | None = option(None, "inherit an already listening socket (used by the local runner)",
                                   runner="the runner")
    neighbours: dict[int, tuple[str, int]] = option(
        factory=dict, help="a neighbour; repeat for each", flag="--neighbour", short="-p", metavar="ID=HOST:PORT",
        runner="the topology")
    log_dir: Path = option(Path("logs"), "directory for the logs (default ./{default})", runner="the runner")
    protocol: str = option("v1", "gossip protocol (default {default})", runner="--protocol")
    seed: int | None = option(None, "seed for randomised protocols", runner="--seed")
    # One flag per protocol parameter (protocol_flags); a protocol takes its own defaults for the rest.
    protocol_params: dict[str, int] = option(factory=dict, help="the protocol's parameters, e.g. {'fanout': 3}",
                                             runner="--param")
    expect: int | None = option(None, "deliveries this peer expects; it exits as soon as it has them",
                                runner="the prediction (--no-expect: none)")
    idle: float = option(2.0, "seconds of silence before exiting when --expect is not given (default {default})")
    link_deadline: float = option(60.0, "seconds to wait for every link to come up (default {default})")
    # Link set-up (docs/design.md): the lower id dials at once; the higher one dials too when no
    # link appeared within this grace (a neighbour that dialed before we listened never retries).
    dial_grace: float = option(
        1.0, "seconds before dialing a lower-id neighbour whose link is not up yet (default {default})")
    # Fault injection: a JSON file {"blocked": [[u, v], ...]} the peer re-reads when it
    # changes; frames over a blocked edge are dropped (and counted) in both directions.
    control: Path | None = option(
        None, 'fault-injection file: JSON {"blocked": [[u, v], ...]} re-read on change', runner="--fault")
    # Start barrier: listen at once, but dial and author only once this file exists (the
    # Compose runner creates it when every container has started). Link deadlines count
    # from then; a file that never comes ends the peer at ``max_runtime``.
    start_file: Path | None = option(
        None, "start barrier: listen at once, dial and author only once PATH exists (the Compose runner creates it "
              "when every container runs); link deadlines count from then; without it the peer ends at "
              "--max-runtime", metavar="PATH", runner="the runner")
    # Exit slots: after its summary, peer i exits only in the wall-clock slot
    # [i*slot, (i+1)*slot) mod n*slot, so that a thousand containers do not end at once
    # (Docker 20.10's libnetwork deadlocks on many endpoint deletes at once, moby/moby#46661).
    exit_slot: float = option(
        0.0, "after writing its summary, peer ID exits only in the wall-clock slot [ID*S, (ID+1)*S) modulo N*S, "
             "so that N containers do not all end at once (default {default}: at once)",
        metavar="SECONDS", runner="the runner")
    # Redial a link this peer dialed when it drops (for runs that restart peers; runs with a
    # restart fault turn it on whatever --peer-option says).
    redial: bool = option(False, "redial dropped links (runs that restart peers)")
    # Receive times per author (one event per author, n per peer): what a propagation-delay
    # check needs; off by default since a thousand peers would write a million lines.
    arrivals: bool = option(False, 'log an event {"ev":"first","author":A,"hops":H} when the first message of '
                                   "each author arrives (its time is the receive time)")
    handshake_timeout: float = option(
        10.0, "seconds an accepted connection may take to say its id (default {default})")
    max_runtime: float = option(900.0, "hard limit on the peer's lifetime in seconds (default {default})")
    # Link emulation (peer/emulation.py): every link's shape (``shape``), and per-neighbour overrides.
    latency: float = option(0.0, "emulated one-way delay of every link, seconds")
    jitter: float = option(0.0, "emulated delay varies uniformly by ± this, seconds (seeded)")
    loss: float = option(0.0, "emulated loss probability per frame (seeded, by content)")
    bandwidth: float = option(0.0, "emulated bandwidth of every link, bytes/s")
    link_shapes: dict[int, LinkShape] = option(
        factory=dict, help="override the emulation for the link to NBR, e.g. 3:latency=0.05,loss=0.1",
        flag="--link-shape", metavar="NBR:KEY=VALUE,...", runner="--link-shape")
    # Upload the log files to this collector (HOST, PORT) at exit (peer/upload.py; Docker Swarm).
    upload: tuple[str, int] | None = option(
        None, "at exit, upload the log files to this collector (python -m peer.collector)", metavar="HOST:PORT",
        runner="the runner")
    max_frame: int = option(MAX_FRAME, "largest frame accepted from a neighbour, bytes", flag=None)
    max_buffer: int = option(64 << 20, "unsent bytes a link may hold before it is dropped as a slow consumer",
                             flag=None)

    @property
    def shape(self) -> LinkShape:
        """The emulation of every link (``link_shapes`` overrides it per neighbour)."""
        return LinkShape(self.latency, self.jitter, self.loss, self.bandwidth)

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> PeerConfig:
        """Parse the flags, on top of the ``--config`` file if given; a bad one exits via argparse."""
        return config_from_args(argv)

    def to_argv(self) -> list[str]:
        """The flags that give this config (those of the values that are not the defaults)."""
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != default_of(f.name)}
        flagless = sorted(k for k in changed if _FIELDS[k].metadata["flag"] is None)
        if flagless:
            raise ValueError(f"no flag for {', '.join(flagless)}: set it in code or in a --config file")
        return argv_of(changed)


_FIELDS: dict[str, Field] = {f.name: f for f in fields(PeerConfig)}


def default_of(name: str) -> Any:
    """The default of option ``name`` (the one place it is written is PeerConfig)."""
    f = _FIELDS[name]
    return f.default_factory() if f.default_factory is not MISSING else f.default


# ---- values as flag text and back -----------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an empty host: all interfaces)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or DEFAULT_HOST, int(port)


def show_address(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def parse_neighbour(text: str) -> tuple[int, tuple[str, int]]:
    """``ID=HOST:PORT``."""
    ident, sep, addr = text.partition("=")
    if not sep or not ident.isdigit():
        raise argparse.ArgumentTypeError(f"expected ID=HOST:PORT, got {text!r}")
    return int(ident), parse_address(addr)


def show_float(x: float) -> str:
    """``2`` for 2.0 and ``1e+06`` for a million (what runs always wrote), exact where that form is not."""
    text = f"{x:g}"
    return text if float(text) == x else repr(float(x))


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


# Annotation -> (flag text -> value, value -> flag text) for one-valued options.
_SCALARS: dict[str, tuple[Callable[[str], Any], Callable[[Any], str]]] = {
    "int": (int, str),
    "float": (float, show_float),
    "str": (str, str),
    "Path": (Path, str),
    "tuple[str, int]": (parse_address, show_address),
}
_WORDS = {"int": "an integer", "float": "a number", "str": "a text", "Path": "a path", "bool": "true or false",
          "tuple[str, int]": "HOST:PORT"}


def _kind(f: Field) -> str:
    """The field's annotation without ``| None``: a key of _SCALARS, "bool", or a dict type."""
    return str(f.type).removesuffix(" | None")


def flag_of(f: Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _one(flag: str, text: str) -> list[str]:
    # argparse takes a value that starts with "-" for a flag unless it looks like a negative
    # number (its own test, below): glue such a value on.
    if text.startswith("-") and not re.fullmatch(r"-\d+|-\d*\.\d+", text):
        return [f"{flag}={text}"]
    return [flag, text]


def _shape_text(shape: LinkShape) -> str:
    return ",".join(f"{k}={show_float(getattr(shape, k))}" for k in SHAPE_KEYS)


def argv_of(values: Mapping[str, Any]) -> list[str]:
    """The ``python -m peer`` flags that set ``values`` (option name -> value), in their order.

    None, False and empty mappings give no flag (the option keeps its default)."""
    out: list[str] = []
    for name, value in values.items():
        f = _FIELDS[name]
        if value is None or value is False or (isinstance(value, Mapping) and not value):
            continue
        flag = f.metadata["short"] or flag_of(f)
        kind = _kind(f)
        if kind == "bool":
            out.append(flag)
        elif name == "neighbours":
            for nb, (host, port) in value.items():
                out += [flag, f"{nb}={host}:{port}"]
        elif name == "link_shapes":
            for nb, shape in value.items():
                out += [flag, f"{nb}:{_shape_text(shape)}"]
        elif name == "protocol_params":
            for key, number in value.items():
                out += [f"--{key}", str(number)]
        else:
            out += _one(flag, _SCALARS[kind][1](value))
    return out


# ---- the command line -------------------------------------------------------------------


def protocol_flags() -> dict[str, tuple[int, str]]:
    """Each protocol parameter's flag name -> (default, help), from peer.protocols.PROTOCOLS."""
    out: dict[str, tuple[int, str]] = {}
    for name, cls in PROTOCOLS.items():
        for key, default in cls.params.items():
            out.setdefault(key, (default, f"protocol {name}: {cls.param_help[key]} (default {default})"))
    return out


def _help(f: Field) -> str:
    default = default_of(f.name)
    kind = _kind(f)
    shown = _SCALARS[kind][1](default) if kind in _SCALARS and default is not None else str(default)
    return f.metadata["help"].replace("{default}", shown)


def _add_option(p: argparse.ArgumentParser, f: Field) -> None:
    meta = f.metadata
    if meta["flag"] is None:
        return
    if f.name == "protocol_params":
        for key, (_, text) in protocol_flags().items():
            p.add_argument(f"--{key}", type=int, help=text)
        return
    names = [flag_of(f), *([meta["short"]] if meta["short"] else [])]
    kw: dict[str, Any] = {"dest": f.name, "help": _help(f), "metavar": meta["metavar"]}
    kind = _kind(f)
    if kind == "bool":
        kw = {"dest": f.name, "help": kw["help"], "action": "store_true", "default": None}
    elif f.name in ("neighbours", "link_shapes"):
        kw.update(action="append", default=None, type=parse_neighbour if f.name == "neighbours" else str)
    else:
        kw["type"] = _SCALARS[kind][0]
    if f.name == "protocol":
        kw["choices"] = sorted(PROTOCOLS)
    p.add_argument(*names, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m peer",
        description="Run one p2p peer: connect to its neighbours, run the gossip protocol, log what it receives.",
    )
    p.add_argument("--config", type=Path, help="JSON file with the same keys as the flags (flags override it)")
    for f in fields(PeerConfig):
        _add_option(p, f)
    return p


def _read_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The ``--config`` JSON file as a dict ({} without one); exits via the parser if unreadable."""
    if not args.config:
        return {}
    try:
        return json.loads(args.config.read_text())
    except (OSError, json.JSONDecodeError) as e:
        parser.error(f"cannot read config {args.config}: {e}")
        raise  # unreachable: parser.error exits


def _from_config(f: Field, value: Any) -> Any:
    """A config file value as the field's type (numbers stay as JSON gave them, but for floats)."""
    kind = _kind(f)
    if value is None:
        return None
    if f.name == "neighbours":
        return {int(k): parse_address(v) for k, v in value.items()}
    if kind == "float":
        return float(value)
    if kind in _SCALARS and isinstance(value, str):
        return _SCALARS[kind][0](value)
    return value


def _merge(parser: argparse.ArgumentParser, args: argparse.Namespace, data: dict) -> dict:
    """The config file's values, converted, with the flags given over them (link shapes aside)."""
    for f in fields(PeerConfig):
        given = getattr(args, f.name, None) if f.metadata["flag"] is not None else None
        if f.name == "neighbours" and given is not None:
            data[f.name] = dict(given)
        elif f.name == "protocol_params":
            params = dict(data.get(f.name) or {})
            for key in protocol_flags():
                value, from_file = getattr(args, key), data.pop(key, params.get(key))
                params[key] = value if value is not None else from_file
            data[f.name] = {k: v for k, v in params.items() if v is not None}
        elif f.name != "link_shapes" and given is not None:
            data[f.name] = given
        elif f.name in data and f.name != "link_shapes":
            try:
                data[f.name] = _from_config(f, data[f.name])
            except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                parser.error(f"config {f.name}: {e}")
    return data


def _link_shapes(parser: argparse.ArgumentParser, args: argparse.Namespace, data: dict) -> dict[int, LinkShape]:
    """``--link-shape`` (or the config's ``{"NBR": "KEY=VALUE,..."}``) on top of the every-link shape."""
    items = args.link_shapes or [f"{k}:{v}" for k, v in (data.pop("link_shapes", None) or {}).items()]
    try:
        base = LinkShape(**{k: data.get(k, 0.0) for k in SHAPE_KEYS})
        overrides = {}
        for item in items:
            nbr, sep, text = item.partition(":")
            if not sep or not nbr.isdigit():
                raise ValueError(f"expected NBR:KEY=VALUE,..., got {item!r}")
            overrides[int(nbr)] = LinkShape.parse(text, base)
    except ValueError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits
    return overrides


def config_from_args(argv: list[str] | None = None) -> PeerConfig:
    """Build the peer's config from the flags, on top of the ``--config`` file if given."""
    parser = build_parser()
    args = parser.parse_args(argv)
    data = _merge(parser, args, _read_config(parser, args))
    data["link_shapes"] = _link_shapes(parser, args, data)
    for required in ("id", "n"):
        if required not in data:
            parser.error(f"--{required} is required (flag or config)")
    try:
        return PeerConfig(**data)
    except TypeError as e:
        parser.error(f"bad config: {e}")
        raise  # unreachable: parser.error exits


# ---- --peer-option: the options a run may set ------------------------------------------


def settable_options() -> tuple[str, ...]:
    """The options ``p2p run --peer-option`` may set: those with a flag that no runner sets."""
    return tuple(sorted(f.name for f in fields(PeerConfig) if f.metadata["flag"] is not None
                        and f.metadata["runner"] is None))


def set_by(name: str) -> str | None:
    """What sets option ``name`` in a run (None: --peer-option may), e.g. "--seed"; KeyError if no such option."""
    if name in protocol_flags():
        return _FIELDS["protocol_params"].metadata["runner"]
    f = _FIELDS[name]
    return f.metadata["runner"] if f.metadata["flag"] is not None else "the peer's code (it has no flag)"


def option_value(name: str, value: Any) -> Any:
    """``value`` (flag text, or a JSON value from spec.json) as option ``name``'s type; ValueError if it is none."""
    kind = _kind(_FIELDS[name])
    if kind == "bool":
        return parse_bool(value)
    if isinstance(value, bool) or (not isinstance(value, str) and kind in ("str", "Path", "tuple[str, int]")):
        raise ValueError(f"expected {_WORDS[kind]}, got {value!r}")
    try:
        parsed = _SCALARS[kind][0](value) if isinstance(value, str) else value
        if kind == "float":
            return float(parsed)
        if kind == "int" and type(parsed) is not int:
            raise ValueError
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"expected {_WORDS[kind]}, got {value!r}") from None
    return parsed if kind != "Path" else str(parsed)
