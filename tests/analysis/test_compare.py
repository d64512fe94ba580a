"""``p2p compare``: each run's verdict, its emulation apart from its faults, and a
table and picture that stay readable with many runs. Runs are hand-written
summary.json files (compare reads those and does not analyse again)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from analysis import compare as C
from analysis.compare import compare

TEXT_WIDTH = 120


def summary(run_id: str, topology: str = "mesh", n: int = 5, *, deliveries: int = 320, expected: int | None = 320,
            prediction: str | None = "exact", ok: bool | None = None, protocol: str = "v1",
            seed: int | None = None, faults: tuple[str, ...] = (), spec: bool = True, **options: Any) -> dict:
    """A summary.json as analysis.stats writes it before ``verdict`` existed; the caller adds one if wanted."""
    mean = 26 * deliveries / n
    opts = {"idle": 2.0, "link_deadline": None, "max_runtime": None, "handshake_timeout": None,
            "latency": 0.0, "jitter": 0.0, "loss": 0.0, "bandwidth": 0.0, "link_shapes": []}
    opts.update(options)
    return {
        "run_id": run_id,
        "topology": topology,
        "n": n,
        "protocol": protocol,
        "spec": {"topology": topology, "n": n, "protocol": protocol, "seed": seed, "port": 7000,
                 "options": opts, "faults": [], "params": {}, "allow_disconnected": False} if spec else None,
        "faults": list(faults),
        "prediction": prediction,
        "ok": (deliveries == expected and prediction is not None) if ok is None else ok,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "bytes": 26 * deliveries,
        "expected_bytes": None if expected is None else 26 * expected,
        "time_to_quiescence": 0.34,
        "short_peers": [] if expected is None or deliveries >= expected else [0],
        "peers": [{"id": p, "bytes_in": round(mean * (0.8, 1.2, 1.0)[p % 3])} for p in range(n)],
        "log_problems": [],
        "errors": [],
        "disagreements": [],
    }


def write_run(root: Path, s: dict) -> Path:
    run = root / s["run_id"]
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(s))
    return run


def lines_of(text: str, first: str) -> list[str]:
    """The lines of compare.txt from the one starting with ``first`` up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(first))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def settings_cells(settings: list[str], label: str) -> tuple[str, str, str]:
    """seed, emulation and faults of a run in the settings table, continuation lines joined."""
    em_col, f_col = settings[0].index("emulation"), settings[0].index("faults")
    i = next(i for i, s in enumerate(settings) if s.startswith(label + " "))
    more = [settings[i]]
    for s in settings[i + 1:]:
        if s[:1] != " ":
            break
        more.append(s)
    em, faults = (" ".join(filter(None, (m[a:b].strip() for m in more))) for a, b in ((em_col, f_col), (f_col, None)))
    return settings[i].split()[2], em, faults


def row_line(text: str, label: str) -> str:
    return next(ln for ln in text.splitlines() if ln.split()[:1] == [label])


def verdict_cell(text: str, label: str) -> str:
    head = next(ln for ln in text.splitlines() if ln.startswith("run  topology"))
    return row_line(text, label)[head.index("verdict"):].split("  ")[0]


# ---- 1. the run's own verdict -----------------------------------------------------


@pytest.mark.parametrize(
    "fields, verdict",
    [
        ({"ok": True}, "OK"),
        ({"prediction": "upper_bound", "deliveries": 300, "loss": 0.1}, "EXPLAINED"),
        ({"prediction": "upper_bound", "deliveries": 320, "ok": False}, "EXPLAINED"),  # e.g. bytes differ
        ({"prediction": "upper_bound", "deliveries": 330}, "NOT OK"),  # more than the bound
        ({"prediction": "exact", "deliveries": 300}, "NOT OK"),
        ({"prediction": None, "expected": None, "ok": False}, "NOT CHECKED"),
        ({"prediction": "deliveries", "deliveries": 320, "ok": True}, "OK"),
        ({"prediction": "deliveries", "deliveries": 319}, "NOT OK"),
    ],
)
def test_verdict_derived_for_old_summaries(fields, verdict):
    s = summary("r", **fields)
    assert "verdict" not in s and "explained" not in s
    assert C.verdict_of(s) == (verdict, verdict in ("OK", "EXPLAINED"))


def test_stored_verdict_is_used_as_is():
    s = summary("r", prediction="upper_bound", deliveries=300, loss=0.1)
    assert C.verdict_of({**s, "verdict": "NOT OK", "explained": False}) == ("NOT OK", False)
    assert C.verdict_of({**s, "verdict": "EXPLAINED", "explained": True}) == ("EXPLAINED", True)
    assert C.verdict_of({**s, "verdict": "EXPLAINED"}) == ("EXPLAINED", True)


def test_lossy_run_below_its_upper_bound_is_explained_not_not_ok(tmp_path):
    runs = [
        write_run(tmp_path, summary("clean")),
        write_run(tmp_path, summary("lossy", deliveries=301, prediction="upper_bound", seed=42, loss=0.1)),
        write_run(tmp_path, summary("broken", deliveries=300)),
        write_run(tmp_path, summary("unknown", prediction=None, expected=None, topology="file")),
        # A new summary.json: its verdict counts, whatever ok says.
        write_run(tmp_path, {**summary("judged", deliveries=310, prediction="upper_bound", faults=("pause:2@0.5",)),
                             "verdict": "NOT OK", "explained": False,
                             "unexplained": ["3 disagreements that no fault explains"]}),
    ]
    out = tmp_path / "cmp"
    c = compare(runs, out, plots=False)
    text = (out / "compare.txt").read_text()
    results = lines_of(text, "run ")[2:7]
    # Only the run with a too-short exact prediction and the one its analysis judged are NOT OK.
    assert [ln for ln in results if "NOT OK" in ln] == [results[2], results[4]]
    verdicts = ["OK", "EXPLAINED", "NOT OK", "NOT CHECKED", "NOT OK"]
    assert [verdict_cell(text, f"#{i}") for i in range(1, 6)] == verdicts
    assert "EXPLAINED" in row_line(text, "#2") and "NOT OK" not in row_line(text, "#2")
    assert "<=320" in row_line(text, "#2")  # the prediction is shown as a bound
    assert "EXPLAINED: below an upper bound" in text
    data = json.loads((out / "compare.json").read_text())
    assert [r["verdict"] for r in data["runs"]] == verdicts
    assert [r["explained"] for r in data["runs"]] == [True, True, False, False, False]
    assert data["runs"] == c.rows
    assert [r["unexplained"] for r in c.rows] == [[], [], [], [], ["3 disagreements that no fault explains"]]
    assert text.splitlines()[-1] == "    NOT OK: 3 disagreements that no fault explains"  # under #5 in the legend


# ---- 2. emulation apart from faults, and the seed ---------------------------------


def test_emulation_and_seed_shown_apart_from_faults(tmp_path):
    runs = [
        write_run(tmp_path, summary("plain", seed=None)),
        write_run(tmp_path, summary("shaped", prediction="upper_bound", deliveries=300, seed=1234567,
                                    latency=0.05, jitter=0.01, loss=0.1, bandwidth=125000.0,
                                    link_shapes=["0-1:latency=0.2,loss=0.5"])),
        write_run(tmp_path, summary("faulty", prediction="upper_bound", deliveries=200, seed=7,
                                    faults=("kill:3@0", "pause:2@0.5"))),
        write_run(tmp_path, summary("original", spec=False)),  # the original tool's format: no spec
    ]
    out = tmp_path / "cmp"
    c = compare(runs, out, plots=False)
    text = (out / "compare.txt").read_text()
    assert "loss 10%" in text and "kill:3@0 pause:2@0.5" in text
    settings = lines_of(text, "run  protocol")
    head = settings[0].split()
    assert head == ["run", "protocol", "seed", "emulation", "faults"]

    def cells(label: str) -> tuple[str, str, str]:
        return settings_cells(settings, label)

    assert cells("#1") == ("-", "-", "-")
    seed, em, faults = cells("#2")
    assert seed == "1234567" and faults == "-"  # as --seed takes it
    assert em == "latency 50 ms, jitter 10 ms, loss 10%, bandwidth 125 kB/s, links 0-1:latency=0.2,loss=0.5"
    assert cells("#3") == ("7", "-", "kill:3@0 pause:2@0.5")
    assert cells("#4") == ("-", "-", "-")
    rows = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["seed"] for r in rows] == [None, 1234567, 7, None]
    assert rows[0]["emulation"] == {} and rows[2]["emulation"] == {} and rows[3]["emulation"] == {}
    assert rows[1]["emulation"] == {"latency": 0.05, "jitter": 0.01, "loss": 0.1, "bandwidth": 125000.0,
                                    "link_shapes": ["0-1:latency=0.2,loss=0.5"]}
    assert rows[1]["faults"] == [] and rows[2]["faults"] == ["kill:3@0", "pause:2@0.5"]
    assert [r["verdict"] for r in c.rows] == ["OK", "EXPLAINED", "EXPLAINED", "OK"]


# ---- 3. many runs -------------------------------------------------------------------


def many_runs(root: Path, k: int) -> list[Path]:
    kinds = [
        dict(),
        dict(prediction="upper_bound", deliveries=2_900_000, expected=3_000_000, seed=123456789, loss=0.05,
             latency=0.02, link_shapes=["0-1:loss=0.5", "2-3:latency=0.1,bandwidth=50000"]),
        dict(deliveries=1_234_567, expected=1_234_568),
        dict(prediction=None, expected=None, protocol="gossip", seed=99),
        dict(prediction="upper_bound", deliveries=40_000, expected=42_000, seed=5,
             faults=tuple(f"pause:{p}@{p / 10:g}" for p in range(1, 12)) + ("kill:3@0", "partition:0-1@0.2")),
        dict(protocol="flood", topology="er", n=1000),
    ]
    runs = []
    for i in range(k):
        fields = kinds[i % len(kinds)]
        name = f"20250101-12{i:02d}00-{fields.get('topology', 'mesh')}-{fields.get('n', 5)}-a-long-run-identifier"
        runs.append(write_run(root, summary(name, **fields)))
    return runs


def test_six_runs_fit_120_columns(tmp_path):
    runs = many_runs(tmp_path / "runs", 6)
    out = tmp_path / "cmp"
    compare(runs, out, plots=False)
    text = (out / "compare.txt").read_text()
    lines = text.splitlines()
    legend = [ln for ln in lines if ln.startswith("#") and "/" in ln]
    assert len(legend) == 6
    for i, (ln, run) in enumerate(zip(legend, runs), 1):
        assert ln.split() == [f"#{i}", str(run)]  # the legend: label, then the run directory
    for ln in lines:
        if ln not in legend:
            assert len(ln) <= TEXT_WIDTH, ln
            assert "a-long-run-identifier" not in ln  # run ids only in the legend
    results = lines_of(text, "run  topology")
    assert [ln.split()[0] for ln in results[2:8]] == [f"#{i}" for i in range(1, 7)]
    assert [verdict_cell(text, f"#{i}") for i in range(1, 7)] == [
        "OK", "EXPLAINED", "NOT OK", "NOT CHECKED", "EXPLAINED", "OK"]
    assert "~32.1 MB" in row_line(text, "#3")  # not '=', though it reads alike
    # The eleven pauses and the link shapes wrap onto more lines of the settings table, none lost.
    settings = lines_of(text, "run  protocol")
    assert len(settings) > 2 + 6
    faults = [f"pause:{p}@{p / 10:g}" for p in range(1, 12)] + ["kill:3@0", "partition:0-1@0.2"]
    assert settings_cells(settings, "#5") == ("5", "-", " ".join(faults))
    assert settings_cells(settings, "#2") == (
        "123456789", "latency 20 ms, loss 5%, links 0-1:loss=0.5 2-3:latency=0.1,bandwidth=50000", "-")


def test_run_dir_named_otherwise_shows_its_run_id(tmp_path):
    run = write_run(tmp_path, summary("20250101-120000-mesh-5"))
    latest = tmp_path / "latest"
    latest.symlink_to(run)
    c = compare([latest, run], tmp_path / "cmp", plots=False)
    legend = c.text.splitlines()[-2:]
    assert legend == [f"#1  {latest}  (run 20250101-120000-mesh-5)", f"#2  {run}"]


@pytest.mark.parametrize("k", [2, 8, 30])
def test_picture_readable_with_many_runs(tmp_path, k):
    pytest.importorskip("matplotlib")
    runs = many_runs(tmp_path / "runs", k)
    c = compare(runs, tmp_path / "cmp", plots=True)
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    fig = C.draw_comparison(c.rows)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    figure_box = fig.bbox
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticklabels() if t.get_text()]
        assert [t.get_text().split("\n")[0] for t in ticks] == [f"#{i}" for i in range(1, k + 1)]
        boxes = [t.get_window_extent(renderer) for t in ticks]
        for b in boxes:  # inside the picture
            assert b.x0 >= figure_box.x0 - 1 and b.x1 <= figure_box.x1 + 1 and b.y0 >= figure_box.y0 - 1, b
        if ticks[0].get_rotation() == 0:
            for a, b in combinations(boxes, 2):
                assert not a.overlaps(b), (a, b)
    # Each run's verdict is written over its bars, in both the deliveries and bytes panels.
    verdicts = [r["verdict"] for r in c.rows]
    for ax in fig.axes[:2]:
        notes = [t.get_text().replace("\n", " ") for t in ax.texts]
        assert notes == verdicts
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        for a, b in combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
    # The legend under the panels says which run each label is, inside the picture.
    legend = [t for t in fig.texts if t.get_text().startswith("#")]
    assert len(legend) == k
    for t in legend:
        b = t.get_window_extent(renderer)
        assert b.x1 <= figure_box.x1 and b.y0 >= 0
