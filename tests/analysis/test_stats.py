"""Counting, expected vs observed, problems and summary.json on hand-built runs."""

from __future__ import annotations

import json
import os

import pytest

from analysis import analyse, format_summary
from analysis.logs import read_messages

SUMMARY_KEYS = {
    "run_id", "topology", "n", "protocol", "deliveries", "expected_deliveries", "bytes", "expected_bytes",
    "ok", "edges", "peers", "short_peers", "log_problems", "errors", "inferred", "time_to_quiescence",
}
PEER_KEYS = {"id", "received", "expected_received", "bytes_in", "bytes_out", "frames_out", "errors",
             "exit_reason", "duration"}
EDGE_KEYS = {"src", "dst", "frames", "bytes", "expected_frames", "expected_bytes"}


def edge(summary, src, dst):
    (e,) = [e for e in summary["edges"] if (e["src"], e["dst"]) == (src, dst)]
    return e


def test_cycle5_clean_run(build_run):
    run = build_run("cycle", 5)
    a = analyse(run)
    s = a.summary
    assert SUMMARY_KEYS <= set(s)
    assert s["ok"] is True and a.ok
    assert (s["run_id"], s["topology"], s["n"], s["protocol"]) == ("cycle-5", "cycle", 5, "v1")
    # docs/design.md, "Deliveries and predictions": cycle-N -> 2N(N-1); frames of 1..4 hops are 23/25/27/29 bytes.
    assert s["deliveries"] == s["expected_deliveries"] == 40
    assert s["bytes"] == s["expected_bytes"] == 5 * 2 * (23 + 25 + 27 + 29)
    assert len(s["edges"]) == 10
    for e in s["edges"]:
        assert EDGE_KEYS <= set(e)
        assert (e["frames"], e["bytes"]) == (e["expected_frames"], e["expected_bytes"]) == (4, 104)
        assert abs(e["src"] - e["dst"]) in (1, 4)
    for p in s["peers"]:
        assert PEER_KEYS <= set(p)
        assert (p["received"], p["expected_received"], p["bytes_in"], p["bytes_out"], p["frames_out"]) == (
            8, 8, 208, 208, 8)
        assert (p["errors"], p["exit_reason"], p["duration"]) == (0, "expected", 0.35)
    assert s["short_peers"] == [] and s["log_problems"] == [] and s["errors"] == [] and s["disagreements"] == []
    assert s["inferred"] == []
    # Last growth: peer 4's progress at T0 + 0.04 + 0.3; first start at T0.
    assert s["time_to_quiescence"] == pytest.approx(0.34)
    assert s["worldview"]["complete"] == [0, 1, 2, 3, 4]
    assert json.loads((run / "summary.json").read_text()) == s
    text = (run / "stats.txt").read_text()
    assert "40 observed = predicted" in text and "Edges" in text
    assert "OK" in format_summary(a).splitlines()[0]


def test_mesh5_counts_and_worldview(build_run):
    a = analyse(build_run("mesh", 5))
    s = a.summary
    assert s["ok"] and s["deliveries"] == 320 and s["bytes"] == 8680
    assert {(e["frames"], e["bytes"]) for e in s["edges"]} == {(16, 434)}
    assert len(s["edges"]) == 20
    true = {(a_, b) for a_ in range(5) for b in range(a_ + 1, 5)}
    assert all(set(v) == true for v in a.views.values())
    wv = json.loads((a.run_dir / "worldview.json").read_text())
    assert all(p["complete"] and p["missing"] == [] and p["extra"] == [] for p in wv["peers"])
    assert len(wv["topology_edges"]) == 10
    graphml = (a.run_dir / "worldview" / "peer-3.graphml").read_text()
    assert graphml.count("<edge ") == 10
    assert (a.run_dir / "worldview" / "topology.graphml").read_text().count("<edge ") == 10


def test_missing_messages_show_as_missing_edges_and_short_peer(build_run):
    run = build_run("cycle", 5)
    path = run / "logs" / "0.txt"
    lines = path.read_text().splitlines()
    # Drop every message whose hop list passes over the link 2-3.
    kept = [ln for ln in lines if "2,3" not in ln and "3,2" not in ln]
    assert len(kept) < len(lines)
    path.write_text("".join(ln + "\n" for ln in kept))
    a = analyse(run)
    s = a.summary
    assert s["ok"] is False
    assert s["deliveries"] == 40 - (len(lines) - len(kept))
    assert s["short_peers"] == [0]
    assert s["worldview"]["missing_edges"] == {"0": 1}
    wv = json.loads((run / "worldview.json").read_text())
    assert wv["peers"][0]["missing"] == [[2, 3]] and wv["peers"][0]["extra"] == []
    assert all(p["complete"] for p in wv["peers"][1:])
    # The peer's own counters still say 8: reported as disagreements.
    assert any(d["peer"] == 0 and d["source"] == "summary event" and d["what"] == "recv" and d["logged"] == 8
               for d in s["disagreements"])
    assert any(d["peer"] == 0 and d["source"] == "traffic file" for d in s["disagreements"])
    assert "short peers (1): 0" in format_summary(a)


def test_extra_edge_in_a_hop_list(build_run):
    run = build_run("cycle", 5)
    with open(run / "logs" / "0.txt", "a") as f:
        f.write('{"id":2,"hops":[2,4]}\n')  # 2-4 is no cycle edge; 4-0 is
    a = analyse(run)
    s = a.summary
    assert s["deliveries"] == 41 and not s["ok"]
    assert a.views[0] >= {(2, 4)}
    assert json.loads((run / "worldview.json").read_text())["peers"][0]["extra"] == [[2, 4]]
    assert edge(s, 4, 0)["frames"] == 5 and edge(s, 4, 0)["expected_frames"] == 4


def test_torn_last_line_is_reported_and_skipped(build_run):
    run = build_run("cycle", 5)
    path = run / "logs" / "1.txt"
    good = path.read_text()
    path.write_text(good + '{"id":3,"hops":[3,')
    s = analyse(run).summary
    assert s["deliveries"] == 40 and s["bytes"] == 1040
    (prob,) = s["log_problems"]
    assert prob["file"] == "1.txt" and prob["line"] == 9 and prob["problem"].startswith("torn last line")
    assert s["ok"] is False


def test_malformed_lines_are_reported_with_line_numbers(build_run):
    run = build_run("cycle", 5)
    path = run / "logs" / "2.txt"
    lines = path.read_text().splitlines()
    bad = [
        "this is not json",  # line 3
        '{"id":1,"hops":[3,1]}',  # line 5: author is not the first hop
        '{"id":0,"hops":[0,2,1]}',  # line 7: receiver 2 in hops
        '{"id":7,"hops":[7,1]}',  # line 9: no peer 7 in cycle-5
        '{"id":0,"hops":[0,1,0,1]}',  # line 11: repeated hop
        "",  # line 13: empty
    ]
    out = list(lines)
    for k, b in enumerate(bad):
        out.insert(2 + 2 * k, b)
    path.write_text("".join(ln + "\n" for ln in out))
    s = analyse(run).summary
    probs = {p["line"]: p["problem"] for p in s["log_problems"] if p["file"] == "2.txt"}
    assert sorted(probs) == [3, 5, 7, 9, 11, 13]
    assert "invalid JSON" in probs[3]
    assert "first hop 3 is not the author 1" in probs[5]
    assert "receiver 2" in probs[7]
    assert "out of range" in probs[9]
    assert "repeats" in probs[11]
    assert "empty" in probs[13]
    assert s["deliveries"] == 40 and s["bytes"] == 1040  # bad lines skipped, good ones all counted
    assert not s["ok"]


def test_non_canonical_json_is_still_a_message(build_run):
    run = build_run("cycle", 5)
    path = run / "logs" / "0.txt"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace(",", ", ")  # valid JSON, not the compact spelling: 4 + len bytes
    path.write_text("".join(ln + "\n" for ln in lines))
    s = analyse(run).summary
    assert s["deliveries"] == 40 and s["log_problems"] == []
    assert s["bytes"] == 1040 + lines[0].count(", ")


def test_block_boundaries_do_not_change_counts(build_run, monkeypatch):
    import analysis.logs

    run = build_run("mesh", 5)
    path = run / "logs" / "3.txt"
    with open(path, "a") as f:
        f.write("garbage\n")
    ref = read_messages(path, 3, 5)
    monkeypatch.setattr(analysis.logs, "SPLIT_LINES", 3)  # bad blocks get split down to 3 lines
    for block in (1, 7, 64, 1000, 1 << 20):
        m = read_messages(path, 3, 5, block=block)
        assert (m.deliveries, m.bytes, m.by_sender, m.by_author, m.view) == (
            ref.deliveries, ref.bytes, ref.by_sender, ref.by_author, ref.view)
        assert [(p.line, p.problem) for p in m.problems] == [(65, "invalid JSON: Expecting value: line 1 column 1 (char 0), skipped")]


def test_missing_peer_log(build_run):
    run = build_run("cycle", 5)
    for suffix in (".txt", ".traffic.txt", ".events.jsonl"):
        (run / "logs" / f"4{suffix}").unlink()
    s = analyse(run).summary
    assert s["peers"][4]["received"] == 0 and s["short_peers"] == [4]
    assert any(p["file"] == "4.txt" and "missing" in p["problem"] for p in s["log_problems"])
    assert s["deliveries"] == 32


def test_protocol_errors_and_unclean_exit(build_run):
    run = build_run("cycle", 5)
    ev = run / "logs" / "1.events.jsonl"
    recs = [json.loads(x) for x in ev.read_text().splitlines()]
    recs = [r for r in recs if r["ev"] != "summary"]
    recs.append({"t": 1.0, "peer": 1, "ev": "error", "nbr": 2, "reason": "bad_json", "detail": "x"})
    ev.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"t": 2')
    s = analyse(run).summary
    assert s["errors"] == [{"peer": 1, "t": 1.0, "nbr": 2, "reason": "bad_json", "detail": "x", "count": 1,
                            "explained_by": None}]
    problems = [p for p in s["log_problems"] if p["file"] == "1.events.jsonl"]
    assert any(p["problem"].startswith("torn last line") for p in problems)
    assert any("no summary event" in p["problem"] for p in problems)
    assert s["peers"][1]["exit_reason"] is None and s["peers"][1]["errors"] == 1
    assert s["deliveries"] == 40 and not s["ok"]


def test_original_format_is_inferred(build_run):
    run = build_run("starfish", 5, original=True)
    assert not (run / "spec.json").exists() and not (run / "logs").exists()
    a = analyse(run)
    s = a.summary
    assert (s["n"], s["topology"], s["protocol"], s["format"]) == (5, "starfish", "v1", "original")
    assert s["deliveries"] == s["expected_deliveries"] == 40
    assert s["ok"] is True
    joined = " ".join(s["inferred"])
    assert "n = 5" in joined and "exactly starfish-5" in joined and "protocol v1 assumed" in joined
    assert s["time_to_quiescence"] is None and s["peers"][0]["exit_reason"] is None
    assert {(e["src"], e["dst"]) for e in s["edges"]} == {
        (u, v) for u, v in [(0, 2), (2, 4), (4, 1), (1, 3), (3, 0)] for u, v in ((u, v), (v, u))}
    # Outputs land next to the logs and are not mistaken for logs on a re-run.
    assert analyse(run).summary == s


def test_original_format_unknown_graph(tmp_path):
    # A path 0-1-2 (no family): only .txt files, one traffic file.
    run = tmp_path / "orig"
    run.mkdir()
    (run / "0.txt").write_text('{"id":1,"hops":[1]}\n{"id":2,"hops":[2,1]}\n')
    (run / "1.txt").write_text('{"id":0,"hops":[0]}\n{"id":2,"hops":[2]}\n')
    (run / "2.txt").write_text('{"id":1,"hops":[1]}\n{"id":0,"hops":[0,1]}\n')
    (run / "1.traffic.txt").write_text("0; 23; 48\n2; 23; 48\n")
    s = analyse(run).summary
    assert s["n"] == 3 and s["topology"] == "unknown"
    assert s["deliveries"] == s["expected_deliveries"] == 6
    assert s["ok"]
    assert {(e["src"], e["dst"]) for e in s["edges"]} == {(0, 1), (1, 0), (1, 2), (2, 1)}
    assert s["disagreements"] == []


def test_summary_is_atomic_and_rerun_is_identical(build_run, monkeypatch):
    run = build_run("mesh", 5)
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    analyse(run)
    first = (run / "summary.json").read_bytes()
    stats = (run / "stats.txt").read_bytes()
    analyse(run)
    assert (run / "summary.json").read_bytes() == first
    assert (run / "stats.txt").read_bytes() == stats
    summary_writes = [(s, d) for s, d in replaced if d.endswith("summary.json")]
    assert len(summary_writes) == 2
    for src, dst in summary_writes:
        assert os.path.dirname(src) == os.path.dirname(dst) == str(run)
        assert src != dst
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


def test_not_a_run_directory(tmp_path):
    from analysis import AnalysisError

    with pytest.raises(AnalysisError):
        analyse(tmp_path / "nope")
    with pytest.raises(AnalysisError, match="no peer logs"):
        analyse(tmp_path)


def test_kill_at_start_is_predicted_on_the_survivors(build_run):
    # cycle-5 without peer 4 is the path 0-1-2-3: 2 * (3 + 2 + 1) = 12 deliveries.
    run = build_run("cycle", 5, faults=("kill:4@0",))
    s = analyse(run).summary
    assert s["faults"] == ["kill:4@0"] and s["prediction"] == "exact"
    assert s["deliveries"] == s["expected_deliveries"] == 12
    assert s["peers"][4]["received"] == 0 and s["peers"][4]["expected_received"] == 0
    assert s["short_peers"] == []
    # Peer 4 has no summary: reported, but expected from the fault.
    assert s["log_problems"] and all(p["due_to_fault"] for p in s["log_problems"])
    assert s["ok"] is True
    # The others see the path; 3-4 and 4-0 are missing from their views; 4 saw nothing.
    assert s["worldview"]["missing_edges"] == {"0": 2, "1": 2, "2": 2, "3": 2, "4": 5}


def test_fault_during_the_run_gives_an_upper_bound(build_run):
    run = build_run("cycle", 5, faults=("partition:0-1@0.5",))
    # The logs here are those of a full flood: the bound is met exactly.
    a = analyse(run)
    assert a.summary["prediction"] == "upper_bound" and a.summary["expected_deliveries"] == 40
    assert a.ok
    # The partition never fired (no faults.jsonl): a shortfall now has nothing to explain it.
    assert a.summary["faults_not_fired"] == ["partition:0-1@0.5"]
    path = run / "logs" / "1.txt"
    path.write_text("".join(ln + "\n" for ln in path.read_text().splitlines()[:-2]))
    a = analyse(run)
    assert not a.ok and a.summary["verdict"] == "NOT OK" and not a.summary["explained"]
    assert "predicted upper bound" in format_summary(a)


@pytest.mark.parametrize("hops", ["1,1", "0,1,0", "3,1,4,1", "10,3,10", "2,12,2"])
def test_repeated_hops_are_found_by_both_checks(tmp_path, monkeypatch, hops):
    import analysis.logs

    path = tmp_path / "5.txt"
    author = hops.split(",")[0]
    good = '{"id":11,"hops":[11,1]}\n{"id":1,"hops":[1,11]}\n'
    path.write_text(good + '{"id":%s,"hops":[%s]}\n' % (author, hops) + good)
    # the general pattern, the id-by-id search, then a set per line
    for per_id, set_from in ((0, 1 << 30), (99, 1 << 30), (0, 0)):
        monkeypatch.setattr(analysis.logs, "DUP_PER_ID", per_id)
        monkeypatch.setattr(analysis.logs, "SET_PER_LINE", set_from)
        m = read_messages(path, 5, 13)
        assert m.deliveries == 4
        assert [(p.line, "repeats" in p.problem) for p in m.problems] == [(3, True)]
