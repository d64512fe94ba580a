"""peer/config.py: one declaration per option builds and parses the peer's command line."""

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.config import (
    DEFAULT_PORT,
    PeerConfig,
    argv_of,
    build_parser,
    default_of,
    flag_of,
    protocol_flags,
    settable_options,
    show_float,
)
from peer.emulation import LinkShape
from peer.protocols import PROTOCOLS

ROOT = Path(__file__).resolve().parents[2]
# The flags of `python -m peer --help` before the options moved to peer/config.py.
FLAGS = {"-h", "--help", "--config", "--id", "--n", "--listen", "--listen-fd", "--neighbour", "-p", "--log-dir",
         "--protocol", "--seed", "--fanout", "--ttl", "--expect", "--idle", "--link-deadline", "--control",
         "--start-file", "--exit-slot", "--redial", "--handshake-timeout", "--max-runtime", "--latency", "--jitter",
         "--loss", "--bandwidth", "--link-shape", "--upload"}

hosts = st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True)
addresses = st.tuples(hosts, st.integers(0, 65535))
seconds = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
rates = st.floats(min_value=0, max_value=1e9, allow_nan=False)
shapes = st.builds(LinkShape, latency=rates, jitter=rates, loss=st.floats(0, 1), bandwidth=rates)
maybe = st.none().__or__
paths = st.from_regex(r"[A-Za-z0-9_./-]{1,20}", fullmatch=True).filter(lambda p: p not in ("-", "--")).map(Path)
params = st.dictionaries(st.sampled_from(sorted(protocol_flags())), st.integers(1, 50))


@st.composite
def configs(draw) -> PeerConfig:
    n = draw(st.integers(1, 200))
    others = st.integers(0, n - 1)
    return PeerConfig(
        id=draw(others), n=n, listen=draw(addresses), listen_fd=draw(maybe(st.integers(0, 1000))),
        neighbours=draw(st.dictionaries(others, addresses, max_size=5)), log_dir=draw(paths),
        protocol=draw(st.sampled_from(sorted(PROTOCOLS))), seed=draw(maybe(st.integers(-5, 2**40))),
        protocol_params=draw(params), expect=draw(maybe(st.integers(0, 10**9))), idle=draw(seconds),
        link_deadline=draw(seconds), control=draw(maybe(paths)), start_file=draw(maybe(paths)),
        exit_slot=draw(st.floats(0, 10)), redial=draw(st.booleans()), handshake_timeout=draw(seconds),
        max_runtime=draw(seconds), latency=draw(rates), jitter=draw(rates), loss=draw(st.floats(0, 1)),
        bandwidth=draw(rates), link_shapes=draw(st.dictionaries(others, shapes, max_size=3)),
        upload=draw(maybe(addresses)),
    )


@settings(max_examples=300, deadline=None)
@given(configs())
def test_a_config_survives_its_own_command_line(cfg):
    assert PeerConfig.from_argv(cfg.to_argv()) == cfg


def test_the_default_config_needs_only_id_and_n():
    cfg = PeerConfig(id=0, n=1)
    assert cfg.to_argv() == ["--id", "0", "--n", "1"]
    assert cfg.listen == ("0.0.0.0", DEFAULT_PORT) and cfg.log_dir == Path("logs") and cfg.idle == 2.0


def test_an_option_without_a_flag_is_not_dropped_silently():
    with pytest.raises(ValueError, match="no flag for max_buffer"):
        PeerConfig(id=0, n=1, max_buffer=1).to_argv()


def test_every_option_has_help_text():
    assert all(f.metadata["help"].strip() for f in fields(PeerConfig))


def test_the_generated_protocol_flags_cover_every_protocol_parameter():
    declared = {key: default for cls in PROTOCOLS.values() for key, default in cls.params.items()}
    assert {key: default for key, (default, _) in protocol_flags().items()} == declared
    for cls in PROTOCOLS.values():
        assert set(cls.param_help) == set(cls.params), cls.name
    # A parameter named like an option would collide with its flag.
    assert not set(declared) & {f.name for f in fields(PeerConfig)}


def test_help_lists_the_flags_it_always_had_and_only_declared_ones():
    listed = {s for action in build_parser()._actions for s in action.option_strings}
    assert FLAGS <= listed
    declared = {flag_of(f) for f in fields(PeerConfig)
                if f.metadata["flag"] is not None and f.name != "protocol_params"}
    declared |= {f"--{key}" for key in protocol_flags()} | {"-h", "--help", "--config", "-p"}
    assert listed == declared


def test_help_shows_the_declared_defaults():
    text = subprocess.run([sys.executable, "-m", "peer", "--help"], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout
    flat = " ".join(text.split())
    assert f"(default 0.0.0.0:{DEFAULT_PORT})" in flat
    assert f"when --expect is not given (default {show_float(default_of('idle'))})" in flat
    assert "protocol gossip: neighbours each copy goes to (default 2)" in flat
    assert "protocol ttl: forward only while the hop list is shorter than this (default 3)" in flat


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "peer.json"
    path.write_text(json.dumps({"id": 2, "n": 5, "neighbours": {"1": "h1:7", "3": ":9"}, "listen": "1.2.3.4:99",
                                "idle": 1, "latency": "0.5", "fanout": 4, "upload": "u:1", "control": "c.json"}))
    cfg = PeerConfig.from_argv(["--config", str(path), "--id", "1", "--ttl", "6", "--link-shape", "3:loss=1"])
    assert (cfg.id, cfg.n, cfg.listen, cfg.idle, cfg.upload, cfg.control) == (1, 5, ("1.2.3.4", 99), 1.0, ("u", 1),
                                                                              Path("c.json"))
    assert cfg.neighbours == {1: ("h1", 7), 3: ("0.0.0.0", 9)}
    assert cfg.protocol_params == {"fanout": 4, "ttl": 6}
    assert cfg.link_shapes == {3: LinkShape(latency=0.5, loss=1.0)}  # on top of the config's latency
    flagged = PeerConfig.from_argv(["--config", str(path), "-p", "4=z:1", "--listen", ":5", "--fanout", "2"])
    assert flagged.neighbours == {4: ("z", 1)} and flagged.listen == ("0.0.0.0", 5)
    assert flagged.protocol_params == {"fanout": 2}


@pytest.mark.parametrize("argv, config, message", [
    ([], None, "--id is required (flag or config)"),
    (["--id", "0"], None, "--n is required (flag or config)"),
    (["--id", "0", "--n", "2", "-p", "1h:1"], None, "argument --neighbour/-p: expected ID=HOST:PORT, got '1h:1'"),
    (["--id", "0", "--n", "2", "--listen", "h"], None, "argument --listen: expected HOST:PORT, got 'h'"),
    (["--id", "0", "--n", "2", "--loss", "2"], None, "loss must be in [0, 1], got 2"),
    (["--id", "0", "--n", "2", "--link-shape", "x:latency=1"], None, "expected NBR:KEY=VALUE,..., got 'x:latency=1'"),
    ([], "{nope", "cannot read config {path}: Expecting property name enclosed in double quotes: line 1 column 2 "
                  "(char 1)"),
    ([], {"id": 1, "n": 2, "upload": "nohost"}, "config upload: expected HOST:PORT, got 'nohost'"),
    ([], {"id": 1, "n": 2, "idle": "soon"}, "config idle: could not convert string to float: 'soon'"),
    ([], {"id": 1, "n": 2, "loss": 2}, "loss must be in [0, 1], got 2"),
    ([], {"id": 1, "n": 2, "bogus": 3}, "bad config: PeerConfig.__init__() got an unexpected keyword argument 'bogus'"),
])
def test_bad_input_is_one_usage_error(tmp_path, capsys, argv, config, message):
    if config is not None:
        path = tmp_path / "peer.json"
        path.write_text(config if isinstance(config, str) else json.dumps(config))
        argv = ["--config", str(path), *argv]
        message = message.replace("{path}", str(path))
    with pytest.raises(SystemExit) as exc:
        PeerConfig.from_argv(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m peer: error: {message}"


def test_argv_of_keeps_the_callers_order_and_leaves_out_absent_values():
    argv = argv_of({"n": 3, "id": 1, "seed": None, "redial": False, "neighbours": {}, "protocol_params": {},
                    "idle": 2.0, "bandwidth": 1e6, "expect": 0, "link_deadline": 0.123456789})
    assert argv == ["--n", "3", "--id", "1", "--idle", "2", "--bandwidth", "1e+06", "--expect", "0",
                    "--link-deadline", "0.123456789"]


def test_a_value_that_looks_like_a_flag_is_glued_to_its_flag():
    cfg = PeerConfig(id=0, n=1, log_dir=Path("-0logs"), seed=-5, idle=-1e-06)
    assert cfg.to_argv() == ["--id", "0", "--n", "1", "--log-dir=-0logs", "--seed", "-5", "--idle=-1e-06"]
    assert PeerConfig.from_argv(cfg.to_argv()) == cfg


def test_settable_options_are_those_no_runner_sets():
    settable = set(settable_options())
    assert {"idle", "link_deadline", "max_runtime", "handshake_timeout", "latency", "redial"} <= settable
    assert not settable & {"id", "n", "listen", "listen_fd", "neighbours", "log_dir", "protocol", "seed",
                           "protocol_params", "expect", "control", "start_file", "exit_slot", "upload", "link_shapes",
                           "max_frame", "max_buffer"}


def test_the_port_is_written_once():
    """DEFAULT_PORT's number appears in no other source file of the peer, the generator or the testbed."""
    pattern = re.compile(r"\b7000\b")
    hits = [str(p.relative_to(ROOT)) for pkg in ("peer", "generator", "testbed") for p in (ROOT / pkg).rglob("*.py")
            if pattern.search(p.read_text()) and p.name != "config.py"]
    assert hits == []
