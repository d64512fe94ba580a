"""Another implementation in a local run, given by an adapter: mixed networks, the quiescence
stop, and `p2p grade` (tests/testbed/foreign_peer.py is that implementation, not our peer)."""

import json
import sys
from pathlib import Path

import pytest

from analysis.grade import format_grade, grade
from analysis.live import LiveSetup, LiveState
from testbed.cli import main

SCRIPT = Path(__file__).with_name("foreign_peer.py")


def adapter(tmp_path, name, extra_args=(), exit_table="mode = \"self\"\nquiescence = 3"):
    args = ", ".join(json.dumps(a) for a in extra_args)
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
command = [{json.dumps(sys.executable)}, {json.dumps(str(SCRIPT))}, "--id", "{{id}}", "--listen", "{{listen}}",
           "{{neighbours}}", "--logs", "{{log_dir}}", "--idle", "{{idle}}"{", " + args if args else ""}]
[exit]
{exit_table}
""")
    return path


def run(tmp_path, *args):
    out = tmp_path / "runs"
    code = main(["run", "--backend", "local", "--no-plots", "--out", str(out), *args])
    return code, (out / "latest").resolve()


def test_mixed_mesh_is_exact_and_both_implementations_pass(tmp_path, capsys):
    code, run_dir = run(tmp_path, "-t", "mesh", "-n", "5", "--peer-adapter", str(adapter(tmp_path, "pyfor")),
                        "--peer-command", f"{sys.executable}:ids=3-4")
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["deliveries"], summary["bytes"]) == (320, 8680)
    assert not (run_dir / "logs" / "3.events.jsonl").exists()  # the other implementation wrote only the original format
    spec = json.loads((run_dir / "spec.json").read_text())
    assert [(i["name"], i["ids"]) for i in spec["implementations"]] == [("pyfor", [3, 4])]
    grades = {g.name: g for g in grade(run_dir)}
    assert {n: g.verdict for n, g in grades.items()} == {"p2p": "PASS", "pyfor": "PASS"}
    assert (grades["pyfor"].received, grades["pyfor"].expected) == (128, 128)
    assert "pyfor (peers 3-4): PASS" in out
    # The live page's state of the finished run (p2p watch) counts the other implementation's peers too.
    snap = LiveState(LiveSetup.load(run_dir)).snapshot(fresh=True)
    assert (snap["ended"], snap["deliveries"], snap["bytes"]) == (True, 320, 8680)


def test_a_peer_that_forwards_back_to_its_sender_fails_by_name(tmp_path, capsys):
    broken = adapter(tmp_path, "backfire", ["--broken", "back"])
    code, run_dir = run(tmp_path, "-t", "mesh", "-n", "5", "--link-deadline", "3", "--idle", "1",
                        "--peer-command", f"{sys.executable}:ids=3:adapter={broken}",
                        "--peer-command", f"{sys.executable}:ids=4:adapter={adapter(tmp_path, 'good')}")
    out = capsys.readouterr().out
    assert code == 1
    grades = {g.name: g for g in grade(run_dir)}
    bad = grades["backfire"]
    assert bad.verdict == "FAIL"
    # Our peers refused its frames (their hop lists held the receiver): charged to backfire, to no one else.
    assert bad.violations["frame refused by the receiver (bad_hops)"] >= 1
    assert not grades["p2p"].violations
    assert any("backfire" in note for note in grades["p2p"].notes)
    text = format_grade(list(grades.values()))
    assert "backfire (peers 3): FAIL" in text and "protocol violation" in text
    assert "backfire (peers 3): FAIL" in out
    assert main(["grade", str(run_dir)]) == 1


def test_two_peers_bouncing_frames_forever_are_stopped_as_runaways_and_graded(tmp_path, capsys):
    storm = adapter(tmp_path, "storm", ["--broken", "back", "--lax"])
    code, run_dir = run(tmp_path, "-t", "mesh", "-n", "5", "--link-deadline", "3", "--idle", "1",
                        "--peer-command", f"{sys.executable}:ids=3-4:adapter={storm}")
    assert code == 1, capsys.readouterr().out
    exits = json.loads((run_dir / "exits.json").read_text())
    assert exits["runaway_stops"] == [3, 4]
    g = {g.name: g for g in grade(run_dir)}["storm"]
    assert g.verdict == "FAIL"
    assert g.violations["sent back to a peer already in hops"] > 0  # read from their own logs
    assert any("runaway" in e for e in g.exits)


def test_a_peer_that_never_exits_is_stopped_at_quiescence_and_still_passes(tmp_path, capsys):
    # --idle 600: this peer would wait ten minutes; its adapter says the runner stops it.
    lingering = adapter(tmp_path, "linger", ["--idle", "600"], "mode = \"quiescence\"\nquiescence = 1.5\ngrace = 2")
    code, run_dir = run(tmp_path, "-t", "cycle", "-n", "6", "--peer-command", f"{sys.executable}:ids=1,4:adapter={lingering}")
    out = capsys.readouterr().out
    assert code == 0, out
    exits = json.loads((run_dir / "exits.json").read_text())
    assert exits["quiescence_stops"] == [1, 4]
    assert {g.name: g.verdict for g in grade(run_dir)} == {"p2p": "PASS", "linger": "PASS"}


@pytest.mark.parametrize("args,message", [
    (["--peer-image", "img:ids=0"], "the local backend runs programs, not images"),
    (["--peer-command", "x:ids=9"], "peer 9 is not in the run"),
    (["--peer-adapter", "/nonexistent.toml"], "cannot read adapter /nonexistent.toml"),
    (["--peer-command", "x:ids=0", "--fault", "kill:1@0"], "not supported yet"),
])
def test_refusals_are_one_line(tmp_path, capsys, args, message):
    assert main(["run", "-t", "mesh", "-n", "3", "--backend", "local", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_our_peer_through_an_adapter_survives_the_hostile_battery(tmp_path, capsys):
    """Our own peer as "another implementation" (an adapter, no --expect): it passes, and `p2p grade
    --hostile` replays the run with the battery fired at it mid-run: it survives and stays exact."""
    ours = tmp_path / "ours.toml"
    ours.write_text(f"""
name = "ours-via-adapter"
command = [{json.dumps(sys.executable)}, "-m", "peer", "--id", "{{id}}", "--n", "{{n}}", "--listen", "{{listen}}",
           "{{neighbours}}", "--log-dir", "{{log_dir}}", "--idle", "{{idle}}"]
neighbour = ["-p", "{{id}}={{host}}:{{port}}"]
""")
    code, run_dir = run(tmp_path, "-t", "cycle", "-n", "6", "--peer-adapter", str(ours),
                        "--peer-command", f"{sys.executable}:ids=2,3")
    assert code == 0, capsys.readouterr().out
    assert main(["grade", "--hostile", str(run_dir)]) == 0
    data = json.loads((run_dir / "grade.json").read_text())
    impl = next(i for i in data["implementations"] if i["name"] == "ours-via-adapter")
    assert impl["verdict"] == "PASS"
    hostile = impl["hostile"]
    assert hostile["peer"] == 2 and hostile["refused"] == [] and hostile["replay_verdict"] == "PASS"
    assert len(hostile["sent"]) == 5 and hostile["silent_connections"] == 100
