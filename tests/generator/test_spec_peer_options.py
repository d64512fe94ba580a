"""--peer-option: any peer option a run may set, validated in the spec, kept in spec.json, passed to
every peer; and the run's peer defaults are the peer's own (peer/config.py)."""

import json

import pytest

from generator.errors import SpecError
from generator.faults import Fault
from generator.spec import PeerOptions, RunSpec
from peer.config import DEFAULT_PORT, PeerConfig, default_of, settable_options
from testbed.base import prepare_run

KNOWN = ", ".join(settable_options())


def peer_args(tmp_path, spec, peer=0):
    plan = prepare_run(spec, tmp_path, None)
    return plan.peer_args(plan.peers[peer], lambda nb: f"peer-{nb}:{DEFAULT_PORT}", "/logs")


def test_the_run_defaults_are_the_peers():
    cfg = PeerConfig(id=0, n=1)
    opts = PeerOptions()
    assert opts.idle == cfg.idle == default_of("idle")
    assert opts.link_deadline_for(5) == cfg.link_deadline  # link_deadline None: the peer's, or 1 s per peer
    assert opts.link_deadline_for(500) == 500.0
    assert opts.handshake_timeout_for(5) == cfg.handshake_timeout
    assert opts.max_runtime_for(5) == cfg.max_runtime
    assert RunSpec("mesh", 5).port == cfg.listen[1] == DEFAULT_PORT


def test_a_peer_option_goes_through_spec_json_to_every_peer(tmp_path):
    opts = PeerOptions.from_cli(["redial=yes", "max-runtime=1200"], idle=0.5)
    assert opts.peer == (("redial", True),) and opts.max_runtime == 1200.0 and opts.idle == 0.5
    spec = RunSpec("mesh", 3, options=opts)
    data = json.loads(spec.to_json())
    assert data["options"]["peer"] == {"redial": True} and data["options"]["max_runtime"] == 1200.0
    path = tmp_path / "spec.json"
    spec.write(path)
    assert RunSpec.load(path) == spec
    for p in range(3):
        args = peer_args(tmp_path, spec, p)
        assert args.count("--redial") == 1
        assert args[args.index("--max-runtime") + 1] == "1200" and args[args.index("--idle") + 1] == "0.5"


def test_a_spec_without_peer_options_is_written_as_before():
    data = RunSpec("mesh", 5).to_dict()
    assert "peer" not in data["options"]
    assert set(data["options"]) == {"idle", "link_deadline", "max_runtime", "handshake_timeout", "latency", "jitter",
                                    "loss", "bandwidth", "link_shapes"}


def test_a_restart_fault_redials_whatever_the_option_says(tmp_path):
    spec = RunSpec("mesh", 3, faults=(Fault.parse("restart:2@1"),),
                   options=PeerOptions.from_cli(["redial=false"]))
    assert spec.options.peer == (("redial", False),)
    assert peer_args(tmp_path, spec).count("--redial") == 1
    assert "--redial" not in peer_args(tmp_path, RunSpec("mesh", 3, options=spec.options))


@pytest.mark.parametrize("items, chosen, message", [
    (["bogus=1"], {}, f"--peer-option bogus: no such peer option; known: {KNOWN}"),
    (["id=3"], {}, "--peer-option id: set by the topology, not by --peer-option"),
    (["n=3"], {}, "--peer-option n: set by -n, not by --peer-option"),
    (["listen=h:1"], {}, "--peer-option listen: set by the runner, not by --peer-option"),
    (["log_dir=x"], {}, "--peer-option log_dir: set by the runner, not by --peer-option"),
    (["neighbours=1"], {}, "--peer-option neighbours: set by the topology, not by --peer-option"),
    (["seed=1"], {}, "--peer-option seed: set by --seed, not by --peer-option"),
    (["fanout=3"], {}, "--peer-option fanout: set by --param, not by --peer-option"),
    (["link-shape=1:loss=1"], {}, f"--peer-option link_shape: no such peer option; known: {KNOWN}"),
    (["max_frame=10"], {}, "--peer-option max_frame: set by the peer's code (it has no flag), not by --peer-option"),
    (["idle=soon"], {}, "--peer-option idle: expected a number, got 'soon'"),
    (["redial=maybe"], {}, "--peer-option redial: expected true or false, got 'maybe'"),
    (["idle=0"], {}, "--idle must be a finite number > 0 (seconds), got 0"),
    (["loss=2"], {}, "--loss must be in [0, 1], got 2"),
    (["idle"], {}, "--peer-option expects KEY=VALUE, got 'idle'"),
    (["idle=1", "idle=2"], {}, "--peer-option idle given twice"),
    (["link_deadline=5"], {"link_deadline": 6.0}, "--peer-option link_deadline and --link-deadline both given"),
])
def test_peer_option_refusals(items, chosen, message):
    with pytest.raises(SpecError) as exc:
        PeerOptions.from_cli(items, **chosen)
    assert str(exc.value) == message


@pytest.mark.parametrize("peer, message", [
    ({"idle": 3}, "--peer-option idle: belongs in options.idle, not in options.peer"),
    ({"redial": "x"}, "--peer-option redial: expected true or false, got 'x'"),
    ({"id": 1}, "--peer-option id: set by the topology, not by --peer-option"),
])
def test_a_hand_written_spec_json_is_checked_too(peer, message):
    data = RunSpec("mesh", 3).to_dict()
    data["options"]["peer"] = peer
    with pytest.raises(SpecError) as exc:
        RunSpec.from_dict(data)
    assert str(exc.value) == message
