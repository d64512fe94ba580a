"""``p2p run --repeat K`` and ``p2p rerun``: one configuration run K times, and a run run again.

``p2p run --repeat K`` writes ``runs/<name>-repeat-<stamp>/``: K ordinary run directories
(each analysed, each with its record.json), ``repeats.json`` (every run's seed, values and
verdict; per quantity the exact value or mean, sd and 95 % t interval; the failures) and
``repeats.txt`` (the table). Seeds: with ``--seed`` every repeat uses it; without, each
repeat whose spec has randomness (a random family, a seeded protocol, emulated loss or
jitter) draws its own, recorded in its spec.json and in repeats.json.

``p2p rerun RUN_DIR`` runs RUN_DIR's spec.json again (K times with ``--repeat``) into new
run directories and checks what must be reproduced (analysis/replay.py): rerun.json and the
table; exit status 1 when something that must be equal differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.repeats import failures_of, format_group, group_stats, stats_to_dict
from generator.errors import P2PError
from generator.expect import DEFAULT_LIMIT, expect_for
from generator.spec import RunSpec
from testbed.base import Progress, Runner, prepare_run, write_exits

REPEATS = "repeats.json"


def varies(spec: RunSpec) -> bool:
    """Whether a repeat with another seed can come out differently."""
    from generator.topologies import FAMILIES
    from peer.protocols import PROTOCOLS as PEER_PROTOCOLS

    opts = spec.options
    return bool(FAMILIES[spec.topology].random or PEER_PROTOCOLS[spec.protocol].uses_seed or opts.lossy
                or opts.jitter or any(s.jitter for s in opts.edge_shapes().values()))


def repeat_specs(spec: RunSpec, k: int, seed_given: bool) -> list[RunSpec]:
    """K specs: ``spec`` itself, then with a fresh seed each where one matters and none was given."""
    if seed_given or not varies(spec):
        return [spec] * k
    out = [spec if spec.seed is not None else dataclasses.replace(spec, seed=secrets.randbelow(2**31))]
    for _ in range(k - 1):
        again = dataclasses.replace(spec, seed=None)  # draws anew (a connected graph for a random family)
        out.append(again if again.seed is not None else dataclasses.replace(again, seed=secrets.randbelow(2**31)))
    return out


def run_row(summary: dict[str, Any], duration: float | None) -> dict[str, Any]:
    """One run of a group: its values from summary.json and the exact predictions it has."""
    kind = summary.get("prediction")
    exact: dict[str, Any] = {}
    if kind in ("exact", "deliveries") and summary.get("expected_deliveries") is not None:
        exact["deliveries"] = summary["expected_deliveries"]
    if kind == "exact" and summary.get("expected_bytes") is not None:
        exact["bytes"] = summary["expected_bytes"]
    return {
        "run_id": summary.get("run_id"),
        "seed": (summary.get("spec") or {}).get("seed"),
        "verdict": summary.get("verdict"),
        "explained": bool(summary.get("explained")),
        "deliveries": summary.get("deliveries"),
        "bytes": summary.get("bytes"),
        "missing_deliveries": summary.get("missing_deliveries"),
        "time_to_quiescence": summary.get("time_to_quiescence"),
        "duration": None if duration is None else round(duration, 3),
        "exact": exact,
    }


@dataclass(frozen=True)
class GroupRun:
    """What running a list of specs gave: one row per run (run order) and their directories."""

    rows: list[dict[str, Any]]
    run_dirs: list[Path]


def run_specs(specs: list[RunSpec], root: Path, runner: Runner, progress: Progress, *, limit: int = DEFAULT_LIMIT,
              force: bool = False, expect: bool = True, plots: bool = False) -> GroupRun:
    """Run and analyse each spec into ``root/<run-id>/`` (exits.json, summary.json, record.json)."""
    from analysis import run_analysis
    rows, dirs = [], []
    for i, spec in enumerate(specs, 1):
        prediction = expect_for(spec, limit, force, lambda _m: None)
        plan = prepare_run(spec, root, prediction if expect else None)
        progress.message(f"[{i}/{len(specs)}] run {plan.run_id} (seed {spec.seed})")
        result = runner.run(plan, progress)
        write_exits(plan.run_dir, result)
        analysis = run_analysis(plan.run_dir, plots=plots, progress=None)
        row = run_row(analysis.summary, result.duration)
        progress.message(f"[{i}/{len(specs)}] {row['verdict']}: {row['deliveries']:,} deliveries, "
                         f"{row['bytes']:,} bytes, quiescence {_s(row['time_to_quiescence'])} s")
        if result.cleanup_problem:
            progress.message(f"p2p: error: {result.cleanup_problem}")
            row["cleanup_problem"] = result.cleanup_problem
        rows.append(row)
        dirs.append(plan.run_dir)
    return GroupRun(rows, dirs)


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def group_dir(out: Path, name: str, what: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = Path(out) / f"{name}-{what}-{stamp}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def group_failures(rows: list[dict[str, Any]], stats) -> list[str]:
    """Exact quantities a run broke, and runs whose analysis did not explain them (verdict NOT OK)."""
    bad = [f"repeat {i}: verdict {r['verdict']}" for i, r in enumerate(rows, 1) if not r["explained"]]
    return failures_of(stats) + bad


def write_group(path: Path, spec: RunSpec, rows: list[dict[str, Any]],
                extra: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """repeats.json and repeats.txt of a group; returns the text and the failures."""
    stats = group_stats(rows, [f"repeat {i} ({r['run_id']})" for i, r in enumerate(rows, 1)])
    failures = group_failures(rows, stats)
    text = "\n".join([
        f"{spec.label} ({spec.protocol}), {len(rows)} runs; seeds: "
        + ", ".join(str(r["seed"]) for r in rows),
        format_group(stats),
        *(f"FAILED: {f}" for f in failures),
        "every exact quantity equal in every run" if not failures else f"{len(failures)} FAILURE(S)",
    ])
    data = {"spec": json.loads(spec.to_json()), "label": spec.label, "k": len(rows), "seeds": [r["seed"] for r in rows],
            "runs": rows, "stats": stats_to_dict(stats), "failures": failures, **(extra or {})}
    (path / REPEATS).write_text(json.dumps(data, indent=1) + "\n")
    (path / "repeats.txt").write_text(text + "\n")
    return text, failures


def cmd_run_repeat(args: argparse.Namespace, spec: RunSpec, runner: Runner, progress: Progress) -> int:
    """``p2p run --repeat K`` (K >= 2)."""
    specs = repeat_specs(spec, args.repeat, args.seed is not None)
    root = group_dir(args.out, spec.name, "repeat")
    progress.message(f"{args.repeat} runs of {spec.label} ({spec.protocol}) -> {root}  (backend: {runner.name})")
    group = run_specs(specs, root, runner, progress, limit=args.limit, force=args.force, expect=not args.no_expect,
                      plots=not args.no_plots)
    text, failures = write_group(root, spec, group.rows, {"backend": runner.name})
    print(text)
    print(f"\n{root}/repeats.txt, {REPEATS}", file=sys.stderr)
    return 1 if failures else (3 if any(r.get("cleanup_problem") for r in group.rows) else 0)


# ---- rerun ---------------------------------------------------------------------


def told_expect(run_dir: Path) -> bool:
    """Whether the original's peers were told their predicted deliveries (their start records say)."""
    for path in sorted((Path(run_dir) / "logs").glob("*.events.jsonl"))[:1]:
        with path.open(errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("ev") == "start":
                    return rec.get("expect") is not None
    return True


def _original_summary(run_dir: Path, say: Callable[[str], Any]) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    from analysis import run_analysis

    say(f"{run_dir}: no readable summary.json, analysing it first")
    return run_analysis(run_dir, plots=False, progress=None).summary


def cmd_rerun(args: argparse.Namespace) -> int:
    from analysis.replay import compare_runs, delivery_lines, format_replay
    from testbed.record import load_record, record_differences
    from testbed.runners import choose_runner

    run_dir = args.run_dir.resolve()
    if not (run_dir / "spec.json").is_file():
        raise P2PError(f"no run directory at {args.run_dir} (no spec.json): name one, e.g. runs/<run-id>")
    progress = Progress()
    spec = RunSpec.load(run_dir / "spec.json")
    orig = _original_summary(run_dir, progress.message)
    runner = choose_runner(args.backend, progress)
    out = args.out or run_dir.parent
    root = group_dir(out, spec.name, "rerun") if args.repeat > 1 else Path(out)
    progress.message(f"rerun of {run_dir.name} ({spec.label}, {spec.protocol}, seed {spec.seed}) x{args.repeat} "
                     f"(backend: {runner.name})")
    group = run_specs([spec] * args.repeat, root, runner, progress, force=True, expect=told_expect(run_dir),
                      plots=not args.no_plots)
    new_summaries = [json.loads((d / "summary.json").read_text()) for d in group.run_dirs]
    orig_record = load_record(run_dir)
    warnings = sorted({w for d in group.run_dirs for w in record_differences(orig_record, load_record(d))})
    replay = compare_runs(orig, delivery_lines(run_dir), new_summaries,
                          [delivery_lines(d) for d in group.run_dirs], warnings)
    text = format_replay(replay, run_dir.name, [d.name for d in group.run_dirs])
    target = root if args.repeat > 1 else group.run_dirs[0]
    (target / "rerun.json").write_text(json.dumps({"original": str(run_dir), "reruns": [str(d) for d in group.run_dirs],
                                                   **replay.to_dict()}, indent=1) + "\n")
    if args.repeat > 1:
        write_group(root, spec, group.rows, {"rerun_of": str(run_dir), "backend": runner.name})
    print(text)
    print(f"\n{target}/rerun.json", file=sys.stderr)
    return 1 if replay.failed else 0


def add_rerun_parser(sub) -> None:
    from testbed.runners import backend_choices, backend_help

    rr = sub.add_parser("rerun", help="run a run directory's spec.json again and check it reproduces",
                        description="Run RUN_DIR's experiment again (its spec.json: same seed, options, faults) "
                                    "into a new run directory; say what must be equal and whether it is "
                                    "(exact counts, the delivery set of a deterministic run), what differs "
                                    "(timings), and where record.json differs. Exit status 1 when something "
                                    "that must be equal differs.")
    rr.add_argument("run_dir", type=Path, help="the run directory to replay (runs/<run-id>)")
    rr.add_argument("--backend", choices=backend_choices(), default="auto", help=f"where peers run: {backend_help()}")
    rr.add_argument("--repeat", type=positive_int, default=1, metavar="K", help="rerun K times (timings as an interval)")
    rr.add_argument("--out", type=Path, default=None, help="runs directory (default: the original's parent)")
    rr.add_argument("--no-plots", action="store_true", help="statistics only, no pictures")
    rr.set_defaults(func=cmd_rerun)


def positive_int(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {k}")
    return k

