"""The verdict under faults: every shortfall, repeat, error and counter difference is
explained by a fault that fired (faults.jsonl) or a lossy link, or the run is NOT OK.

Runs are hand-built (tests/analysis/conftest.py): a full v1 flood, then edited the way
a fault would have left it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.explain import FaultContext
from analysis.missing import read_listing
from analysis.stats import analyse, format_summary, judge
from tests.analysis.conftest import T0


def fired(run: Path, *faults: str, deliveries: int = 0) -> None:
    with open(run / "faults.jsonl", "a") as f:
        f.write(json.dumps({"t": 1.0, "clock": "start"}) + "\n")
        for text in faults:
            action = text.split(":", 1)[0]
            edges = [sorted(map(int, e.split("-"))) for e in text.split(":")[1].split("@")[0].split(",")] \
                if action == "partition" else []
            f.write(json.dumps({"t": 2.0, "fault": text, "action": action, "edges": edges, "elapsed": 0.5,
                                "deliveries": deliveries}) + "\n")
            # A real peer logs when it blocked the link (the analysis reads when a hop was cut
            # from there): here, from the hand-built flood's start on.
            for u, v in edges:
                for a, b in ((u, v), (v, u)):
                    with open(run / "logs" / f"{a}.events.jsonl", "a") as ev:
                        ev.write(json.dumps({"t": T0, "peer": a, "ev": "partition", "nbr": b}) + "\n")


def drop_at_receiver(run: Path, receiver: int, keep) -> int:
    """Remove lines from <receiver>.txt for which ``keep(hops)`` is false, and lower the
    receiver's own counters to match (as a receiver that dropped them would count).
    Returns how many lines went."""
    path = run / "logs" / f"{receiver}.txt"
    lines = path.read_text().splitlines()
    kept = [ln for ln in lines if keep(json.loads(ln)["hops"])]
    gone = [ln for ln in lines if ln not in kept]
    path.write_text("".join(ln + "\n" for ln in kept))
    ev = run / "logs" / f"{receiver}.events.jsonl"
    recs = [json.loads(x) for x in ev.read_text().splitlines()]
    for r in recs:
        if r["ev"] != "summary":
            continue
        for ln in gone:
            sender = json.loads(ln)["hops"][-1]
            link = r["links"][str(sender)]
            link["frames_in"] -= 1
            link["bytes_in"] -= 4 + len(ln)
            r["recv"] -= 1
            r["recv_bytes"] -= 4 + len(ln)
    ev.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tr = run / "logs" / f"{receiver}.traffic.txt"
    out = []
    for row in tr.read_text().splitlines():
        nb, bin_, bout = (int(x) for x in row.split(";"))
        bin_ -= sum(4 + len(ln) for ln in gone if json.loads(ln)["hops"][-1] == nb)
        out.append(f"{nb}; {bin_}; {bout}\n")
    tr.write_text("".join(out))
    return len(gone)


def recount(run: Path, peers) -> None:
    """Make the counters (summary event, traffic file) of ``peers`` say what the logs now say,
    as peers that really lived through the edited run would have counted."""
    logs = run / "logs"
    flows: dict[tuple[int, int], list[int]] = {}
    for path in logs.glob("*.txt"):
        if not path.name.split(".")[0].isdigit() or path.name.count(".") > 1:
            continue
        r = int(path.name.split(".")[0])
        for ln in path.read_text().splitlines():
            f = flows.setdefault((json.loads(ln)["hops"][-1], r), [0, 0])
            f[0] += 1
            f[1] += 4 + len(ln)
    for p in peers:
        ev = logs / f"{p}.events.jsonl"
        recs = [json.loads(x) for x in ev.read_text().splitlines()]
        traffic = ""
        for r in recs:
            if r["ev"] != "summary":
                continue
            for key, link in r["links"].items():
                fin, fout = flows.get((int(key), p), [0, 0]), flows.get((p, int(key)), [0, 0])
                link.update(frames_in=fin[0], bytes_in=fin[1], frames_out=fout[0], bytes_out=fout[1])
                if fin[0] or fout[0]:
                    traffic += f"{key}; {fin[1]}; {fout[1]}\n"
            r["recv"] = sum(x["frames_in"] for x in r["links"].values())
            r["recv_bytes"] = sum(x["bytes_in"] for x in r["links"].values())
            r["sent"] = sum(x["frames_out"] for x in r["links"].values())
            r["sent_bytes"] = sum(x["bytes_out"] for x in r["links"].values())
        ev.write_text("".join(json.dumps(r) + "\n" for r in recs))
        (logs / f"{p}.traffic.txt").write_text(traffic)


def crosses(hops: list[int], receiver: int, u: int, v: int) -> bool:
    path = [*hops, receiver]
    return any({a, b} == {u, v} for a, b in zip(path, path[1:]))


def test_a_fired_partition_explains_every_delivery_it_cut(build_run):
    run = build_run("cycle", 5, faults=("partition:0-1@0.5",))
    fired(run, "partition:0-1@0.5", deliveries=12)
    gone = drop_at_receiver(run, 1, lambda hops: not crosses(hops, 1, 0, 1))
    assert gone > 0
    s = analyse(run).summary
    assert s["verdict"] == "EXPLAINED" and s["explained"] and s["unexplained"] == []
    assert s["deliveries"] == 40 - gone and s["missing_deliveries"] == gone
    listing = read_listing(run)
    assert len(listing) == gone
    assert all(e["kind"] == "missing" and e["explained_by"] == "partition:0-1@0.5" for e in listing)
    # What 0 sent to 1 and what 1 logged differ; the edge entry says by how much and why.
    edge = next(e for e in s["edges"] if (e["src"], e["dst"]) == (0, 1))
    assert edge["sent_bytes"] > edge["bytes"] and edge["sent_differs_explained_by"] == "partition:0-1@0.5"
    assert s["disagreements"] and all(d["explained_by"] for d in s["disagreements"])
    assert s["faults_applied"] == [{"fault": "partition:0-1@0.5", "elapsed": 0.5, "deliveries": 12}]
    assert "EXPLAINED" in format_summary(analyse(run))


def test_a_shortfall_off_the_faulted_paths_is_not_ok(build_run):
    run = build_run("cycle", 5, faults=("partition:0-1@0.5",))
    fired(run, "partition:0-1@0.5")
    # Lines of 3.txt that never crossed 0-1: the partition cannot explain their loss.
    gone = drop_at_receiver(run, 3, lambda hops: crosses(hops, 3, 0, 1) or len(hops) > 1)
    assert gone > 0
    s = analyse(run).summary
    assert s["verdict"] == "NOT OK" and not s["explained"]
    assert any("missing deliveries that no fault explains" in r for r in s["unexplained"])
    listing = read_listing(run)
    assert len(listing) == gone and all(e["explained_by"] is None for e in listing)


def test_every_missing_delivery_is_listed_beyond_ten_thousand(build_run):
    # mesh-7: 13,692 deliveries; with peer 0 killed mid-run and its log lost, far more
    # than the old listing cap of 10,000 deliveries are missing; every one is listed.
    run = build_run("mesh", 7, faults=("kill:0@deliveries=1",))
    fired(run, "kill:0@deliveries=1", deliveries=1)
    for p in range(1, 7):
        drop_at_receiver(run, p, lambda hops: 0 not in hops)
    (run / "logs" / "0.txt").write_text("")
    recount(run, range(1, 7))  # what the survivors counted; 0 (killed) counted what it had
    s = analyse(run).summary
    expected_missing = s["expected_deliveries"] - s["deliveries"]
    assert expected_missing > 10_000
    assert s["missing_deliveries"] == expected_missing
    listing = read_listing(run)
    assert len(listing) == expected_missing
    assert {e["explained_by"] for e in listing} == {"kill:0@deliveries=1"}
    assert s["verdict"] == "EXPLAINED", s["unexplained"]


def test_a_restart_is_a_new_incarnation_that_authors_again(build_run):
    run = build_run("cycle", 4, faults=("restart:2@1",))
    fired(run, "restart:2@1")
    # The second incarnation of 2 floods its message once more: every path from 2 is logged twice.
    import networkx as nx

    from tests.analysis.conftest import flood  # the fixture's own oracle

    again = {p: [ln for ln in lines if json.loads(ln)["id"] == 2] for p, lines in flood(nx.cycle_graph(4)).items()}
    for p, lines in again.items():
        with open(run / "logs" / f"{p}.txt", "a") as f:
            f.write("".join(ln + "\n" for ln in lines))
    recount(run, (0, 1, 3))  # peer 2's counters are its last incarnation's: they disagree, explained
    s = analyse(run).summary
    extra = sum(len(v) for v in again.values())
    # The bound counts the second flood; observed equals it; the repeats are explained.
    assert s["expected_deliveries"] == 2 * 4 * 3 + extra
    assert s["deliveries"] == s["expected_deliveries"]
    assert s["repeated_deliveries"] == extra
    assert all(e["explained_by"].startswith("restart of peer 2") for e in read_listing(run))
    # Counter disagreements (the peers' counters above say one flood) involve peer 2 or its links.
    assert s["verdict"] in ("OK", "EXPLAINED"), s["unexplained"]
    # A repeat of a peer that was not restarted is unexplained.
    with open(run / "logs" / "0.txt", "a") as f:
        f.write('{"id":1,"hops":[1]}\n')
    s = analyse(run).summary
    assert s["verdict"] == "NOT OK" and any("repeated" in r for r in s["unexplained"])


def test_peer_exit_codes_are_judged_with_the_faults(build_run):
    run = build_run("cycle", 5, faults=("kill:4@0",))
    (run / "exits.json").write_text(json.dumps({"backend": "local", "exit_codes": {
        "0": 0, "1": 0, "2": 0, "3": 2, "4": -9}}))
    for p, nb in ((3, 4), (0, 4)):
        with open(run / "logs" / f"{p}.events.jsonl", "a") as f:
            f.write(json.dumps({"t": 3.0, "peer": p, "ev": "link_failed", "nbr": nb, "reason": "not up"}) + "\n")
    s = analyse(run).summary
    assert s["verdict"] == "OK" and s["explained"], s["unexplained"]
    assert {x["peer"]: x["explained_by"] for x in s["exits"]} == {3: "kill:4@0", 4: "kill:4@0"}
    # An exit code no fault explains makes the run NOT OK.
    (run / "exits.json").write_text(json.dumps({"exit_codes": {"0": 0, "1": 1, "2": 0, "3": 0, "4": -9}}))
    s = analyse(run).summary
    assert s["verdict"] == "NOT OK" and any("peer exits" in r for r in s["unexplained"])


@pytest.mark.parametrize(
    "kind,deliveries,expected,verdict",
    [("exact", 10, 10, "OK"), ("exact", 9, 10, "NOT OK"), ("upper_bound", 10, 10, "OK"),
     ("upper_bound", 11, 10, "NOT OK"), (None, 10, None, "NOT CHECKED")],
)
def test_judge_table(kind, deliveries, expected, verdict):
    got, reasons = judge(kind=kind, deliveries=deliveries, expected=expected, nbytes=deliveries,
                         expected_bytes=expected, missing=None, protocol="gossip", ctx=FaultContext(), lists={})
    assert got == verdict
    assert bool(reasons) == (verdict == "NOT OK")


def test_an_error_no_fault_explains_is_not_ok_and_one_a_fault_explains_is(build_run):
    run = build_run("cycle", 5, faults=("kill:2@deliveries=5",))
    fired(run, "kill:2@deliveries=5", deliveries=5)
    with open(run / "logs" / "1.events.jsonl", "a") as f:
        f.write(json.dumps({"t": 3.0, "peer": 1, "ev": "error", "nbr": 2, "reason": "truncated"}) + "\n")
    s = analyse(run).summary
    assert s["errors"][0]["explained_by"] == "kill:2@deliveries=5" and s["explained"], s["unexplained"]
    with open(run / "logs" / "0.events.jsonl", "a") as f:
        f.write(json.dumps({"t": 3.0, "peer": 0, "ev": "error", "nbr": None, "reason": "too_many_connections",
                            "count": 40}) + "\n")
    s = analyse(run).summary
    assert not s["explained"] and "40 protocol errors that no fault explains" in s["unexplained"]
