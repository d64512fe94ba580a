"""`p2p run/render/sweep --peer-option KEY=VALUE`: on to every peer, refused with one error line."""

import json

import pytest
import yaml

import testbed.cli as cli
from peer.config import settable_options
from testbed.local import LocalRunner


@pytest.fixture
def no_peers(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a run was started")

    monkeypatch.setattr(LocalRunner, "run", refuse)


def test_render_passes_peer_options_to_every_container(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # render writes compose/ and .env into the working directory
    code = cli.main(["render", "-t", "mesh", "-n", "3", "--out", str(tmp_path / "runs"),
                     "--peer-option", "redial=true", "--peer-option", "handshake_timeout=4"])
    assert code == 0, capsys.readouterr().err
    spec = json.loads((tmp_path / "runs" / "latest" / "spec.json").read_text())
    assert spec["options"]["peer"] == {"redial": True} and spec["options"]["handshake_timeout"] == 4.0
    services = yaml.safe_load((tmp_path / "compose" / "mesh-3.yml").read_text())["services"]
    commands = [s["command"] for name, s in services.items() if name.startswith("peer-")]
    assert len(commands) == 3
    for command in commands:
        assert command.count("--redial") == 1 and command[command.index("--handshake-timeout") + 1] == "4"


@pytest.mark.parametrize("command", [
    ["run", "--backend", "local", "-t", "mesh", "-n", "3"],
    ["render", "-t", "mesh", "-n", "3"],
    ["sweep", "--backend", "local", "-t", "mesh", "-n", "3"],
])
def test_every_command_refuses_an_unknown_peer_option(tmp_path, capsys, no_peers, command):
    code = cli.main([*command, "--out", str(tmp_path / "runs"), "--peer-option", "colour=blue"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (f"p2p: error: --peer-option colour: no such peer option; "
                           f"known: {', '.join(settable_options())}")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
