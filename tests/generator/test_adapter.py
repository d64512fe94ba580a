"""Adapter files (generator/adapter.py): parsing, validation that names the key, command expansion,
and the implementations of a run in spec.json."""

import json
from pathlib import Path

import pytest

from generator.adapter import (
    AdapterError,
    Implementation,
    default_adapter,
    implementations_from_cli,
    load_adapter,
    parse_adapter,
    parse_choice,
    parse_ids,
)
from generator.errors import SpecError
from generator.spec import RunSpec

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {"command": ["peer", "--id", "{id}", "--listen", "{listen}", "{neighbours}", "--logs", "{log_dir}"]}


def write(tmp_path, text):
    path = tmp_path / "adapter.toml"
    path.write_text(text)
    return path


def test_the_rust_peer_adapter_and_the_default_give_the_rust_command_line():
    values = {"id": "3", "listen": "0.0.0.0:7000", "log_dir": "/logs", "idle": "2", "link_deadline": "60"}
    nbrs = {4: ("peer-4", 7000), 1: ("peer-1", 7000)}
    want = ["p2p-peer-rs", "--id", "3", "--listen", "0.0.0.0:7000", "--peer", "1=peer-1:7000", "--peer",
            "4=peer-4:7000", "--logs", "/logs", "--idle", "2", "--link-deadline", "60"]
    rust = load_adapter(ROOT / "rust-peer" / "adapter.toml")
    assert rust.argv(values, nbrs) == want
    assert default_adapter().argv(values, nbrs) == want
    assert (rust.image, rust.log_format, rust.log_dir) == ("p2p-peer-rs:latest", "original", "/logs")


def test_environment_values_and_the_neighbour_list(tmp_path):
    a = load_adapter(write(tmp_path, """
command = ["peer"]
[env]
PEER_ID = "{id}"
PEER_PORT = "{port}"
PEERS = "{neighbour_list}"
[exit]
mode = "quiescence"
quiescence = 2.5
"""))
    assert a.argv({}, {}) == ["peer"]
    assert a.environment({"id": "2", "port": "7000", "neighbour_list": "1=h:1,3=h:3"}) == {
        "PEERS": "1=h:1,3=h:3", "PEER_ID": "2", "PEER_PORT": "7000"}
    assert (a.exit_mode, a.quiescence) == ("quiescence", 2.5)


@pytest.mark.parametrize("extra,key", [
    ({"command": "peer --id {id}"}, "command"),
    ({"command": []}, "command"),
    ({"colour": "red"}, "colour"),
    ({"logs": {"format": "jsonl"}}, "logs.format"),
    ({"logs": {"dir": "logs"}}, "logs.dir"),
    ({"logs": {"where": "/x"}}, "logs.where"),
    ({"exit": {"mode": "never"}}, "exit.mode"),
    ({"exit": {"quiescence": 0}}, "exit.quiescence"),
    ({"exit": {"quiescence": True}}, "exit.quiescence"),
    ({"exit": {"signal": "SIGHUP"}}, "exit.signal"),
    ({"env": {"1BAD": "{id}"}}, "env.1BAD"),
    ({"env": {"X": "{colour}"}}, "env.X"),
    ({"neighbour": ["--peer", "{name}"]}, "neighbour"),
])
def test_a_bad_key_is_named(extra, key):
    with pytest.raises(AdapterError, match=rf"^adapter: {key}: "):
        parse_adapter({**MINIMAL, **extra})


@pytest.mark.parametrize("command,missing", [
    (["peer", "--listen", "{listen}", "{neighbours}"], "{id}"),
    (["peer", "--id", "{id}", "{neighbours}"], "{listen}"),
    (["peer", "--id", "{id}", "--listen", "{listen}"], "neighbours"),
    (["peer", "--id", "{id}", "--listen", "{listen}", "--peers={neighbours}"], "{neighbours}"),
])
def test_an_adapter_must_pass_id_port_and_neighbours(command, missing):
    with pytest.raises(AdapterError, match=r"command: ") as e:
        parse_adapter({"command": command})
    assert missing in str(e.value)


def test_unreadable_and_invalid_files_are_named(tmp_path):
    with pytest.raises(AdapterError, match="cannot read adapter"):
        load_adapter(tmp_path / "nope.toml")
    with pytest.raises(AdapterError, match="not valid TOML"):
        load_adapter(write(tmp_path, "command = [\n"))
    with pytest.raises(AdapterError, match=r"adapter.toml: command: missing"):
        load_adapter(write(tmp_path, "name = 'x'\n"))


def test_ids_and_choices():
    assert parse_ids("0-2,5", "x") == (0, 1, 2, 5)
    assert parse_choice("p2p-peer-rs:latest:ids=0-4", "--peer-image") == ("p2p-peer-rs:latest", (0, 1, 2, 3, 4), None)
    assert parse_choice("reg:5000/img:1:ids=1:adapter=a.toml", "--peer-image") == ("reg:5000/img:1", (1,), "a.toml")
    for bad in ("x:ids=a", "x:ids=3-1", ":ids=1"):
        with pytest.raises(SpecError):
            parse_choice(bad, "--peer-image")


def test_ids_spell_non_contiguous_and_alternating_sets():
    """Alternating implementations (even ids Rust, odd ids ours): a list, or even/odd of the run's n."""
    assert parse_ids("0,2,4,6", "x") == (0, 2, 4, 6)
    assert parse_ids("even", "x", 7) == (0, 2, 4, 6)
    assert parse_ids("odd", "x", 7) == (1, 3, 5)
    assert parse_ids("odd,0", "x", 6) == (0, 1, 3, 5)
    with pytest.raises(SpecError, match="needs the run's number of peers"):
        parse_ids("even", "x")
    with pytest.raises(SpecError, match="0-4,7 or even or odd"):
        parse_ids("evens", "x", 4)
    impls = implementations_from_cli(["p2p-peer-rs:latest:ids=even"], None, None, 200)
    assert impls[0].ids == tuple(range(0, 200, 2)) and impls[0].image == "p2p-peer-rs:latest"
    impls = implementations_from_cli(["rs:ids=0,2,4,6"], None, None, 7)
    assert impls[0].ids == (0, 2, 4, 6)


def test_implementations_split_the_ids_and_the_rest_runs_ours():
    impls = implementations_from_cli(["rs:latest:ids=0-1", "other"], None, None, 5)
    assert [(i.name, i.ids, i.image) for i in impls] == [("rs", (0, 1), "rs:latest"), ("other", (2, 3, 4), "other")]
    with pytest.raises(SpecError, match="peer 1 is already played by rs"):
        implementations_from_cli(["rs:ids=0-1", "rs2:ids=1"], None, None, 5)
    with pytest.raises(SpecError, match="peer 7 is not in the run"):
        implementations_from_cli(["rs:ids=7"], None, None, 5)
    with pytest.raises(SpecError, match="only one implementation may go without ids"):
        implementations_from_cli(["a", "b"], None, None, 5)


def test_spec_json_keeps_the_implementations_and_replays_them():
    impls = implementations_from_cli(["rs:latest:ids=3-4"], None, None, 5)
    spec = RunSpec("mesh", 5, implementations=impls)
    data = json.loads(spec.to_json())
    assert data["implementations"][0]["ids"] == [3, 4]
    assert data["implementations"][0]["adapter"]["command"][0] == "p2p-peer-rs"
    again = RunSpec.from_dict(data)
    assert again == spec and again.implementation_of(3).name == "rs" and again.implementation_of(0) is None
    assert "implementations" not in RunSpec("mesh", 5).to_dict()  # old spec.json files stay as they were
    with pytest.raises(SpecError, match="peer 5 is not in the run"):
        RunSpec("mesh", 5, implementations=(Implementation("x", (5,)),))
