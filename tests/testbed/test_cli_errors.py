"""`p2p` refuses bad input and unwritable outputs with exit 2 and one `p2p: error:` line:
no traceback, and (for `p2p run`) before any peer is started."""

from pathlib import Path

import pytest

import testbed.cli as cli
from analysis._util import AnalysisError, atomic_write
from generator.errors import P2PError
from generator.spec import RunSpec
from testbed.base import Progress
from testbed.local import LocalRunner
from testbed.sweep import Cell, run_sweep

RUN = ["run", "--backend", "local", "-t", "mesh", "-n", "3", "--no-plots"]


@pytest.fixture
def no_peers(monkeypatch):
    """Fail the test if any runner is asked to start peers."""
    def refuse(*args, **kwargs):
        raise AssertionError("a run was started")

    monkeypatch.setattr(LocalRunner, "run", refuse)


def refused(capsys, argv) -> str:
    """Run ``p2p argv``; assert exit 2 with exactly one `p2p: error:` line; return that line."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("p2p: error: ")
    return lines[0]


# ---- values ----------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--latency", "nan"], "--latency must be a finite number >= 0 (seconds), got nan"),
    (["--latency", "inf"], "--latency must be a finite number >= 0 (seconds), got inf"),
    (["--latency", "-0.1"], "--latency must be a finite number >= 0 (seconds), got -0.1"),
    (["--jitter", "-1"], "--jitter must be a finite number >= 0 (seconds), got -1"),
    (["--jitter", "inf"], "--jitter must be a finite number >= 0 (seconds), got inf"),
    (["--bandwidth", "nan"], "--bandwidth must be a finite number >= 0 (bytes/s, 0: unlimited), got nan"),
    (["--bandwidth", "-1"], "--bandwidth must be a finite number >= 0 (bytes/s, 0: unlimited), got -1"),
    (["--loss", "1.5"], "--loss must be in [0, 1], got 1.5"),
    (["--loss", "-0.1"], "--loss must be in [0, 1], got -0.1"),
    (["--loss", "nan"], "--loss must be in [0, 1], got nan"),
    (["--idle", "0"], "--idle must be a finite number > 0 (seconds), got 0"),
    (["--idle", "-2"], "--idle must be a finite number > 0 (seconds), got -2"),
    (["--idle", "nan"], "--idle must be a finite number > 0 (seconds), got nan"),
    (["--idle", "inf"], "--idle must be a finite number > 0 (seconds), got inf"),
    (["--link-deadline", "0"], "--link-deadline must be a finite number > 0 (seconds), got 0"),
    (["--link-deadline", "-5"], "--link-deadline must be a finite number > 0 (seconds), got -5"),
    (["--link-deadline", "nan"], "--link-deadline must be a finite number > 0 (seconds), got nan"),
    (["--link-deadline", "inf"], "--link-deadline must be a finite number > 0 (seconds), got inf"),
    (["--link-shape", "0-1:loss=2"], "--link-shape 0-1:loss=2: loss must be in [0, 1], got 2"),
    (["--link-shape", "0-1:latency=inf"],
     "--link-shape 0-1:latency=inf: latency must be a finite number >= 0 (seconds), got inf"),
    (["--link-shape", "1-2:bandwidth=nan"],
     "--link-shape 1-2:bandwidth=nan: bandwidth must be a finite number >= 0 (bytes/s, 0: unlimited), got nan"),
    (["--link-shape", "0-5:latency=0.1"], "--link-shape 0-5:latency=0.1: 0-5 is not an edge of mesh-3"),
    (["--fault", "kill:2@-1"], "--fault kill:2@-1: time must be a finite number >= 0 (seconds from the start), got -1"),
    (["--fault", "kill:2@nan"],
     "--fault kill:2@nan: time must be a finite number >= 0 (seconds from the start), got nan"),
    (["--fault", "kill:2@inf"],
     "--fault kill:2@inf: time must be a finite number >= 0 (seconds from the start), got inf"),
    (["--fault", "kill:2@deliveries=-3"],
     "--fault kill:2@deliveries=-3: delivery count must be an integer >= 0, got -3"),
    (["--fault", "kill:-1@1"], "--fault kill:-1@1: peer ids must be integers >= 0, got -1"),
])
def test_run_refuses_bad_values_before_anything_starts(capsys, tmp_path, no_peers, extra, message):
    out = tmp_path / "runs"
    assert refused(capsys, [*RUN, "--out", out, *extra]) == f"p2p: error: {message}"
    assert not out.exists()


def test_run_refuses_a_link_shape_on_a_non_edge_before_predicting(capsys, tmp_path, no_peers, monkeypatch):
    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted")

    monkeypatch.setattr(cli, "quick_deliveries", no_prediction)
    line = refused(capsys, ["run", "--backend", "local", "-t", "cycle", "-n", "5", "--no-plots",
                            "--out", tmp_path / "runs", "--link-shape", "0-2:latency=0.1"])
    assert line == "p2p: error: --link-shape 0-2:latency=0.1: 0-2 is not an edge of cycle-5"
    assert not (tmp_path / "runs").exists()


def test_render_refuses_bad_values_before_writing_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, ["render", "-t", "mesh", "-n", "3", "--idle", "nan", "--out", tmp_path / "runs"])
    assert line == "p2p: error: --idle must be a finite number > 0 (seconds), got nan"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_predict_refuses_a_non_finite_topology_parameter(capsys):
    line = refused(capsys, ["predict", "-t", "ws:p=nan,k=2", "-n", "8", "--seed", "1"])
    assert line == "p2p: error: ws: parameter p must be a finite number, got nan"


def test_sweep_refuses_bad_timing(capsys, tmp_path, no_peers):
    line = refused(capsys, ["sweep", "-t", "mesh", "-n", "3", "--backend", "local", "--out", tmp_path / "runs",
                            "--link-deadline", "inf"])
    assert line == "p2p: error: --link-deadline must be a finite number > 0 (seconds), got inf"


# ---- output locations ----------------------------------------------------------

@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


def test_run_out_under_a_regular_file(capsys, a_file, no_peers):
    line = refused(capsys, [*RUN, "--out", a_file / "runs"])
    assert line == f"p2p: error: cannot create/write {a_file / 'runs'}: Not a directory"


def test_run_out_that_is_a_regular_file(capsys, a_file, no_peers):
    line = refused(capsys, [*RUN, "--out", a_file])
    assert line == f"p2p: error: cannot create/write {a_file}: Not a directory"


def test_run_out_in_proc(capsys, no_peers):
    if not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    line = refused(capsys, [*RUN, "--out", "/proc/p2p-runs"])
    assert line.startswith("p2p: error: cannot create/write /proc/p2p-runs: ")
    assert not Path("/proc/p2p-runs").exists()


def test_run_out_checked_before_the_spec_leaves_nothing_behind(capsys, tmp_path, no_peers):
    """The probe creates and removes the directories it needed: a refused run leaves none."""
    out = tmp_path / "new" / "runs"
    refused(capsys, [*RUN, "--out", out, "--latency", "inf"])
    assert not (tmp_path / "new").exists()


def test_render_out_under_a_regular_file(capsys, a_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, ["render", "-t", "mesh", "-n", "3", "--out", a_file / "runs"])
    assert line == f"p2p: error: cannot create/write {a_file / 'runs'}: Not a directory"
    assert not (tmp_path / "compose").exists() and not (tmp_path / ".env").exists()


def test_compare_out_under_a_regular_file(capsys, a_file, tmp_path):
    (tmp_path / "run-a").mkdir()
    line = refused(capsys, ["compare", tmp_path / "run-a", "--out", a_file / "cmp"])
    assert line == f"p2p: error: cannot create/write {a_file / 'cmp'}: Not a directory"


def test_sweep_out_under_a_regular_file(capsys, a_file, no_peers):
    line = refused(capsys, ["sweep", "-t", "mesh", "-n", "3", "--backend", "local", "--out", a_file / "runs"])
    assert line == f"p2p: error: cannot create/write {a_file / 'runs'}: Not a directory"


def test_run_sweep_out_under_a_regular_file_is_a_clean_error(a_file):
    with pytest.raises(P2PError, match=r"^cannot create/write .*a-file/runs/sweep-.*: Not a directory$"):
        run_sweep([Cell("mesh", 3, "v1")], a_file / "runs", LocalRunner(), limit=1000, progress=Progress(interval=60))


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A hand-written run directory of mesh-3 (spec.json and logs/<id>.txt of a v1 flood; no peers)."""
    run_dir = tmp_path / "mesh-3-run"
    (run_dir / "logs").mkdir(parents=True)
    RunSpec.parse("mesh", 3).write(run_dir / "spec.json")
    others = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
    for p, (a, b) in others.items():  # author a directly, and via the third peer; the same for b
        lines = [[a, p], [a, b, p], [b, p], [b, a, p]]
        (run_dir / "logs" / f"{p}.txt").write_text(
            "".join('{"id":%d,"hops":[%s]}\n' % (h[0], ",".join(map(str, h[:-1]))) for h in lines))
    assert cli.main(["analyse", str(run_dir), "--no-plots"]) == 0  # analysable as it stands
    return run_dir


def test_analyse_refuses_when_summary_json_cannot_be_written(capsys, finished_run):
    capsys.readouterr()
    summary = finished_run / "summary.json"
    summary.unlink()
    summary.mkdir()
    try:
        line = refused(capsys, ["analyse", finished_run, "--no-plots"])
    finally:
        summary.rmdir()
    assert line == f"p2p: error: cannot create/write {summary}: Is a directory"


def test_analysis_write_failure_is_a_clean_error_past_the_preflight(capsys, finished_run, monkeypatch):
    """atomic_write's own error (the backstop): one `p2p: error:` line, no traceback."""
    capsys.readouterr()
    monkeypatch.setattr(cli, "_preflight", lambda args: None, raising=False)
    summary = finished_run / "summary.json"
    summary.unlink()
    summary.mkdir()
    try:
        code = cli.main(["analyse", str(finished_run), "--no-plots"])
    finally:
        summary.rmdir()
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == f"p2p: error: cannot create/write {summary}: Is a directory"


def test_atomic_write_errors_name_the_path(a_file, tmp_path):
    with pytest.raises(AnalysisError, match=r"^cannot create/write .*a-file/x.json: Not a directory$"):
        atomic_write(a_file / "x.json", "{}")
    (tmp_path / "d.json").mkdir()
    with pytest.raises(AnalysisError, match=r"^cannot create/write .*d.json: Is a directory$"):
        atomic_write(tmp_path / "d.json", "{}")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_main_reports_any_oserror_as_one_line(capsys, monkeypatch):
    def broken(args):
        raise PermissionError(13, "Permission denied", "/some/where")

    monkeypatch.setattr(cli, "cmd_topologies", broken)
    assert refused(capsys, ["topologies"]) == "p2p: error: /some/where: Permission denied"
