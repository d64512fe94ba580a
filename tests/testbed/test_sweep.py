"""`p2p sweep`: grid parsing, a small real sweep on the local backend, its outputs."""

import json

import pytest

from generator.errors import P2PError
from generator.spec import PeerOptions
from testbed.base import Progress
from testbed.cli import build_parser, main
from testbed.local import LocalRunner
from testbed.sweep import Cell, count_run, grid, parse_protocols, parse_sizes, parse_topologies, run_sweep


def test_grid_spellings():
    assert parse_sizes(["5,7", "9"]) == [5, 7, 9]
    assert parse_sizes(["5..8"]) == parse_sizes(["5-8"]) == [5, 6, 7, 8]
    assert parse_sizes([]) == [None]
    assert parse_topologies(["cycle,mesh", "circulant:1,3"]) == ["cycle", "mesh", "circulant:1,3"]
    assert parse_protocols(["v1,flood", "gossip"]) == ["v1", "flood", "gossip"]
    assert len(grid(["cycle", "mesh"], [5, 6], ["v1", "flood"])) == 8
    for bad in (lambda: parse_sizes(["9..5"]), lambda: parse_topologies(["mesh,7"]),
                lambda: parse_protocols(["v2"])):
        with pytest.raises(P2PError):
            bad()


def test_sweep_cli_is_registered():
    args = build_parser().parse_args(["sweep", "-t", "cycle,mesh", "-n", "5..6", "--protocol", "v1,flood",
                                      "--backend", "local"])
    assert args.topology == ["cycle,mesh"] and args.n == ["5..6"] and args.backend == "local"


def test_unused_params_are_an_error(tmp_path):
    with pytest.raises(P2PError, match="fanout"):
        run_sweep([Cell("cycle", 5, "v1")], tmp_path, LocalRunner(), params={"fanout": "2"}, limit=1000,
                  progress=Progress(interval=60))


def test_small_sweep(tmp_path):
    cells = grid(["cycle", "star", "mesh"], [4, 5], ["v1", "flood", "gossip"]) + [Cell("mesh", 9, "v1")]
    sweep_dir, rows = run_sweep(cells, tmp_path, LocalRunner(), params={"fanout": "2"}, seed=3,
                                options=PeerOptions(idle=0.5), limit=1000, progress=Progress(interval=60))
    assert sweep_dir.parent == tmp_path and sweep_dir.name.startswith("sweep-")
    by = {(r["topology"], r["n"], r["protocol"]): r for r in rows}
    skipped = by[("mesh", 9, "v1")]
    assert skipped["status"] == "skipped" and "986,400" in skipped["reason"]
    assert by[("cycle", 5, "v1")]["deliveries"] == 40 and by[("mesh", 5, "v1")]["deliveries"] == 320
    for r in rows:
        if r is skipped:
            continue
        n = r["n"]
        assert r["status"] == "exact", r
        if r["protocol"] != "gossip":
            assert r["coverage"] == 1.0
        assert r["redundancy"] == pytest.approx(r["deliveries"] / (n * (n - 1)))
        assert r["bytes_per_peer"] == pytest.approx(r["bytes"] / n)
        assert r["time_to_quiescence"] is not None
        assert count_run(sweep_dir / r["run_id"], n)["deliveries"] == r["deliveries"]
    assert by[("star", 5, "flood")]["status"] == "exact"  # a tree
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)) and saved["grid"]["protocols"] == ["v1", "flood", "gossip"]
    table = (sweep_dir / "sweep.txt").read_text()
    assert "coverage" in table and "skipped" in table
    assert (sweep_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_command(tmp_path, capsys):
    code = main(["sweep", "-t", "cycle", "-n", "4", "--protocol", "flood", "--backend", "local", "--idle", "0.5",
                 "--out", str(tmp_path), "--no-plot"])
    assert code == 0
    out = capsys.readouterr().out
    assert "cycle" in out and "sweep.txt" in out
    (sweep_dir,) = tmp_path.glob("sweep-*")
    assert not (sweep_dir / "sweep.png").exists()


@pytest.mark.parametrize("extra", [["--protocol", "flood"], ["--loss", "0.1", "--seed", "7"]],
                         ids=["flood", "lossy"])
def test_sweep_counts_are_the_analysis_figures(tmp_path, extra):
    """count_run reads the logs with the analysis' reader: its figures are summary.json's."""
    main(["run", "--backend", "local", "-t", "mesh", "-n", "5", "--idle", "0.5", "--out", str(tmp_path),
          "--no-plots", *extra])
    run_dir = (tmp_path / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    counts = count_run(run_dir, 5)
    assert summary["deliveries"] > 0 and summary["log_problems"] == []
    assert (counts["deliveries"], counts["bytes"]) == (summary["deliveries"], summary["bytes"])
    assert counts["time_to_quiescence"] == pytest.approx(summary["time_to_quiescence"], abs=1e-3)
    assert counts["log_problems"] == []


def test_count_run_reports_the_analysis_log_problems(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "0.txt").write_bytes(b'{"id":1,"hops":[1]}\n{"id":2,"hops":[2,1]}\n')
    (logs / "1.txt").write_bytes(b'{"id":0,"hops":[0]}\nnot a message\n{"id":2,"hops":[2]}\n{"id":0,')
    counts = count_run(tmp_path, 3)  # no spec.json: v1's rules
    assert counts["deliveries"] == 4 and counts["bytes"] == sum(len(x) + 4 for x in (
        b'{"id":1,"hops":[1]}', b'{"id":2,"hops":[2,1]}', b'{"id":0,"hops":[0]}', b'{"id":2,"hops":[2]}'))
    assert counts["coverage"] == pytest.approx(4 / 6)
    assert counts["time_to_quiescence"] is None  # no events logs
    problems = counts["log_problems"]
    assert problems[0].startswith("1.txt:2: invalid JSON") and problems[1].startswith("1.txt:4: torn last line")
    assert problems[2:] == ["2.txt missing"]
