"""Other implementations of the peer in a run: the adapter that says how to start one.

An adapter (a TOML file, docs/bring-your-own-peer.md) tells the testbed how to give a
foreign peer its id, listen address, neighbours and log directory (a command template
and/or environment variables), whether it exits by itself or must be stopped once its
logs go quiet, and where it writes its logs in which format. Standard library only
(``tomllib``); every error names the key.

An :class:`Implementation` is one foreign peer program in one run: a name, the peer ids
it plays, an image (Compose, Swarm) or a program (local) and its adapter. RunSpec keeps
them in spec.json (with the adapter inline), so a run replays and the analysis knows
which peer is which implementation.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import SpecError

OURS = "p2p"  # the name of our own peer in grades
FORMATS = ("original",)
EXIT_MODES = ("self", "quiescence")
SIGNALS = ("SIGTERM", "SIGINT", "SIGKILL")
# Placeholders a command item, a neighbour item or an env value may use.
PLACEHOLDERS = ("id", "n", "host", "port", "listen", "log_dir", "idle", "link_deadline", "expect", "seed",
                "protocol", "neighbour_list")
NEIGHBOUR_PLACEHOLDERS = ("id", "host", "port", "address")
NEIGHBOURS_ITEM = "{neighbours}"  # a command item replaced by the neighbour template, once per neighbour
_FIELD = re.compile(r"\{([^{}]*)\}")
_TOP_KEYS = {"name", "image", "image_entrypoint", "command", "neighbour", "neighbour_separator", "env", "logs", "exit"}
_LOG_KEYS = {"dir", "format"}
_EXIT_KEYS = {"mode", "quiescence", "signal", "grace"}


class AdapterError(SpecError):
    """An adapter file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Adapter:
    """How to start a foreign peer and read what it leaves (see the module docstring)."""

    name: str = ""
    image: str = ""
    # The peer's argv; an item "{neighbours}" expands to ``neighbour`` once per neighbour.
    command: tuple[str, ...] = ()
    # In a container: True runs the image's own ENTRYPOINT with command[1:] as its arguments;
    # False (default) runs command[0] (which must be on the image's PATH) as the entrypoint.
    image_entrypoint: bool = False
    neighbour: tuple[str, ...] = ("--peer", "{id}={host}:{port}")
    # {neighbour_list}: every neighbour's ``{id}={host}:{port}`` joined by this (for an env value).
    neighbour_separator: str = ","
    env: tuple[tuple[str, str], ...] = ()
    log_dir: str = "/logs"  # where the peer writes inside its container (the run's logs are mounted there)
    log_format: str = "original"
    exit_mode: str = "self"  # "self": it exits by itself; "quiescence": the runner stops it
    # Seconds without a new line in its logs before the runner stops it (in "self" mode too,
    # as a backstop for a peer that never exits).
    quiescence: float = 5.0
    stop_signal: str = "SIGTERM"
    stop_grace: float = 5.0  # after the signal, before SIGKILL

    def __post_init__(self) -> None:
        for key in ("command", "neighbour"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        object.__setattr__(self, "env", tuple(sorted(dict(self.env).items())))

    def argv(self, values: Mapping[str, Any], neighbours: Mapping[int, tuple[str, int]]) -> list[str]:
        """The command with every placeholder filled in; ``{neighbours}`` expanded per neighbour."""
        out: list[str] = []
        for item in self.command:
            if item == NEIGHBOURS_ITEM:
                for nb, (host, port) in sorted(neighbours.items()):
                    nv = {"id": nb, "host": host, "port": port, "address": f"{host}:{port}"}
                    out += [fill(t, nv) for t in self.neighbour]
            else:
                out.append(fill(item, values))
        return out

    def environment(self, values: Mapping[str, Any]) -> dict[str, str]:
        return {k: fill(v, values) for k, v in self.env}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["command"], data["neighbour"] = list(self.command), list(self.neighbour)
        data["env"] = dict(self.env)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Adapter:
        """From spec.json's inline copy (the flat form of ``to_dict``)."""
        try:
            return cls(**data)
        except TypeError as e:
            raise SpecError(f"malformed adapter in spec: {e}") from None


def fill(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with each ``{key}`` replaced by ``values[key]`` (None becomes "")."""
    def one(m: re.Match) -> str:
        value = values.get(m.group(1))
        return "" if value is None else str(value)

    return _FIELD.sub(one, template)


def neighbour_list(neighbours: Mapping[int, tuple[str, int]], separator: str) -> str:
    return separator.join(f"{nb}={h}:{p}" for nb, (h, p) in sorted(neighbours.items()))


# ---- reading and checking an adapter file ---------------------------------------------------


def default_adapter() -> Adapter:
    """The adapter used when none is given: ``PROGRAM --id ID --listen HOST:PORT --peer ID=HOST:PORT ...
    --logs DIR --idle S --link-deadline S``, original-format logs, the peer exits by itself."""
    return Adapter(name="", command=("p2p-peer-rs", "--id", "{id}", "--listen", "{listen}", NEIGHBOURS_ITEM,
                                     "--logs", "{log_dir}", "--idle", "{idle}", "--link-deadline", "{link_deadline}"))


def load_adapter(path: Path) -> Adapter:
    """Read and check an adapter file; ``AdapterError`` names the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise AdapterError(f"cannot read adapter {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"adapter {path}: not valid TOML: {e}") from None
    return parse_adapter(data, str(path))


def parse_adapter(data: Mapping[str, Any], where: str = "adapter") -> Adapter:
    """An Adapter from the TOML tables of an adapter file (see docs/bring-your-own-peer.md)."""
    def bad(key: str, why: str) -> AdapterError:
        return AdapterError(f"{where}: {key}: {why}")

    _unknown(data, _TOP_KEYS, "", bad)
    kw: dict[str, Any] = {}
    for key in ("name", "image", "neighbour_separator"):
        if key in data:
            kw[key] = _text(data[key], key, bad)
    if "command" not in data:
        raise bad("command", "missing: the peer's argv, e.g. [\"my-peer\", \"--id\", \"{id}\", ...]")
    kw["command"] = _texts(data["command"], "command", bad)
    if "image_entrypoint" in data:
        if not isinstance(data["image_entrypoint"], bool):
            raise bad("image_entrypoint", f"must be true or false, got {data['image_entrypoint']!r}")
        kw["image_entrypoint"] = data["image_entrypoint"]
    if not kw["command"] or not kw["command"][0].strip():
        raise bad("command", "must start with the program to run")
    if "neighbour" in data:
        kw["neighbour"] = _texts(data["neighbour"], "neighbour", bad)
        _check_fields(kw["neighbour"], "neighbour", NEIGHBOUR_PLACEHOLDERS, bad)
    env = data.get("env", {})
    if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
        raise bad("env", "must be a table of NAME = \"text\"")
    for name in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise bad(f"env.{name}", "not a valid environment variable name")
    kw["env"] = tuple(env.items())
    _check_fields(kw["command"], "command", (*PLACEHOLDERS, "neighbours"), bad)
    for name, value in env.items():
        _check_fields([value], f"env.{name}", PLACEHOLDERS, bad)
    _parse_logs(data.get("logs", {}), kw, bad)
    _parse_exit(data.get("exit", {}), kw, bad)
    _check_says(kw, bad)
    return Adapter(**kw)


def _parse_logs(logs: Any, kw: dict[str, Any], bad) -> None:
    if not isinstance(logs, Mapping):
        raise bad("logs", "must be a table with dir and format")
    _unknown(logs, _LOG_KEYS, "logs.", bad)
    if "dir" in logs:
        kw["log_dir"] = _text(logs["dir"], "logs.dir", bad)
        if not kw["log_dir"].startswith("/"):
            raise bad("logs.dir", f"must be an absolute path inside the container, got {kw['log_dir']!r}")
    fmt = logs.get("format", "original")
    if fmt not in FORMATS:
        raise bad("logs.format", f"must be one of {', '.join(FORMATS)} (<id>.txt and <id>.traffic.txt), got {fmt!r}")
    kw["log_format"] = fmt


def _parse_exit(ex: Any, kw: dict[str, Any], bad) -> None:
    if not isinstance(ex, Mapping):
        raise bad("exit", "must be a table with mode, quiescence, signal, grace")
    _unknown(ex, _EXIT_KEYS, "exit.", bad)
    mode = ex.get("mode", "self")
    if mode not in EXIT_MODES:
        raise bad("exit.mode", f"must be one of {', '.join(EXIT_MODES)}, got {mode!r}")
    kw["exit_mode"] = mode
    for key, field_name in (("quiescence", "quiescence"), ("grace", "stop_grace")):
        if key in ex:
            value = ex[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 86400:
                raise bad(f"exit.{key}", f"must be a number of seconds > 0, got {value!r}")
            kw[field_name] = float(value)
    sig = ex.get("signal", "SIGTERM")
    if sig not in SIGNALS:
        raise bad("exit.signal", f"must be one of {', '.join(SIGNALS)}, got {sig!r}")
    kw["stop_signal"] = sig


def _check_says(kw: dict[str, Any], bad) -> None:
    """The peer must be told its id, where to listen and its neighbours, somehow."""
    said = set()
    for text in [*kw["command"], *(v for _, v in kw["env"])]:
        said |= set(_FIELD.findall(text))
    if "id" not in said:
        raise bad("command", "never passes {id} (in command or env): the peer cannot know who it is")
    if not said & {"port", "listen"}:
        raise bad("command", "never passes {listen} or {port} (in command or env): the peer cannot know its port")
    if not said & {"neighbours", "neighbour_list"}:
        raise bad("command", "never passes the neighbours: put the item \"{neighbours}\" in command, "
                             "or {neighbour_list} in an env value")


def _unknown(data: Mapping[str, Any], known: set[str], prefix: str, bad) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise bad(prefix + extra[0], f"unknown key; known: {', '.join(sorted(known))}")


def _text(value: Any, key: str, bad) -> str:
    if not isinstance(value, str):
        raise bad(key, f"must be a string, got {value!r}")
    return value


def _texts(value: Any, key: str, bad) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise bad(key, f"must be a list of strings, got {value!r}")
    return tuple(value)


def _check_fields(items, key: str, allowed, bad) -> None:
    for item in items:
        if item == NEIGHBOURS_ITEM and key == "command":
            continue
        for name in _FIELD.findall(item):
            if name not in allowed or name == "neighbours":
                hint = " ({neighbours} must be a list item of its own)" if name == "neighbours" else ""
                raise bad(key, f"unknown placeholder {{{name}}} in {item!r}; known: "
                               f"{', '.join('{' + a + '}' for a in allowed if a != 'neighbours')}{hint}")


# ---- implementations of a run ----------------------------------------------------------------


@dataclass(frozen=True)
class Implementation:
    """A foreign peer program playing ``ids`` in a run: by ``image`` (containers) or ``program`` (local)."""

    name: str
    ids: tuple[int, ...]
    adapter: Adapter = field(default_factory=default_adapter)
    image: str = ""
    program: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(sorted(set(self.ids))))
        if isinstance(self.adapter, Mapping):
            object.__setattr__(self, "adapter", Adapter.from_dict(self.adapter))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ids": list(self.ids), "image": self.image, "program": self.program,
                "adapter": self.adapter.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Implementation:
        try:
            return cls(**data)
        except TypeError as e:
            raise SpecError(f"malformed implementation in spec: {e}") from None

    def command(self, values: Mapping[str, Any], neighbours: Mapping[int, tuple[str, int]]) -> list[str]:
        """The argv; for a local run the adapter's program is replaced by ``program`` when given."""
        argv = self.adapter.argv(values, neighbours)
        if self.program:
            argv[0] = self.program
        return argv


def parse_ids(text: str, where: str, n: int | None = None) -> tuple[int, ...]:
    """``0-4,7`` -> (0, 1, 2, 3, 4, 7); ``even`` / ``odd`` -> every even / odd id of a run of ``n``.

    ``even``/``odd`` spell alternating implementations (cycle-200, half and half) in one word.
    """
    out: set[int] = set()
    for part in text.split(","):
        word = part.strip()
        if word in ("even", "odd"):
            if n is None:
                raise SpecError(f"{where}: ids={word} needs the run's number of peers")
            out.update(range(0 if word == "even" else 1, n, 2))
            continue
        lo, dash, hi = word.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise SpecError(f"{where}: ids must be like 0-4,7 or even or odd, got {text!r}")
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a:
            raise SpecError(f"{where}: empty id range {part.strip()!r}")
        out.update(range(a, b + 1))
    return tuple(sorted(out))


_SUFFIX = re.compile(r":(ids|adapter)=([^:]*)$")


def parse_choice(text: str, flag: str, n: int | None = None) -> tuple[str, tuple[int, ...] | None, str | None]:
    """``IMAGE[:ids=0-4][:adapter=FILE]`` (``--peer-image``, ``--peer-command``) -> (what, ids, adapter path).

    ``ids=`` takes ranges and single ids (``0-4,7``) or ``even`` / ``odd`` (of the run's ``n`` peers).
    """
    ids: tuple[int, ...] | None = None
    adapter: str | None = None
    rest = text
    while (m := _SUFFIX.search(rest)) is not None:
        if m.group(1) == "ids":
            ids = parse_ids(m.group(2), f"{flag} {text}", n)
        else:
            adapter = m.group(2)
        rest = rest[: m.start()]
    if not rest.strip():
        raise SpecError(f"{flag}: expected {flag.removeprefix('--peer-').upper()}[:ids=0-4][:adapter=FILE], got {text!r}")
    return rest, ids, adapter


def implementations_from_cli(images: list[str] | None, commands: list[str] | None, adapter_path: Path | None,
                             n: int) -> tuple[Implementation, ...]:
    """The foreign implementations of ``p2p run --peer-image/--peer-command [--peer-adapter]``.

    An entry without ``ids=`` plays every peer no other entry names; the rest runs our peer.
    """
    default = load_adapter(adapter_path) if adapter_path is not None else None
    if default is None and adapter_path is None and not images and not commands:
        return ()
    entries = [("--peer-image", t) for t in images or ()] + [("--peer-command", t) for t in commands or ()]
    if not entries:  # only an adapter: its image/command plays every peer
        if default is None:
            return ()
        entries = [("--peer-adapter", "")]
    parsed = []
    for flag, text in entries:
        what, ids, own = parse_choice(text, flag, n) if text else ("", None, None)
        adapter = load_adapter(Path(own)) if own else (default or default_adapter())
        parsed.append((flag, what, ids, adapter))
    return _assign_ids(parsed, n)


def _assign_ids(parsed, n: int) -> tuple[Implementation, ...]:
    taken: dict[int, str] = {}
    rest = [e for e in parsed if e[2] is None]
    if len(rest) > 1:
        raise SpecError(f"{rest[1][0]} {rest[1][1]}: only one implementation may go without ids= (it plays the rest)")
    names: set[str] = set()
    out = []
    for flag, what, ids, adapter in sorted(parsed, key=lambda e: e[2] is None):
        if ids is None:
            ids = tuple(p for p in range(n) if p not in taken)
        bad = [p for p in ids if p >= n]
        if bad:
            raise SpecError(f"{flag} {what}: peer {bad[0]} is not in the run (ids 0..{n - 1})")
        twice = [p for p in ids if p in taken]
        if twice:
            raise SpecError(f"{flag} {what}: peer {twice[0]} is already played by {taken[twice[0]]}")
        name = adapter.name or Path(what).name.split(":")[0] or Path(adapter.command[0]).name
        base, k = name, 2
        while name in names or name == OURS:
            name, k = f"{base}#{k}", k + 1
        names.add(name)
        for p in ids:
            taken[p] = name
        image = what if flag == "--peer-image" else adapter.image if flag == "--peer-adapter" else ""
        program = what if flag == "--peer-command" else ""
        if "/" in program:  # a path: the peer starts in the log directory, so make it absolute
            program = str(Path(program).resolve())
        out.append(Implementation(name=name, ids=ids, adapter=adapter, image=image, program=program))
    return tuple(out)

