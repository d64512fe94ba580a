"""The ``p2p`` command: run, analyse, predict, render, clean, compare, sweep, rerun."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

from generator.adapter import implementations_from_cli
from generator.errors import P2PError
from generator.expect import DEFAULT_LIMIT, expect_for
from generator.faults import Fault
from generator.predict import PredictionTooLarge, predict, quick_deliveries
from generator.spec import (
    LATENCY_FROM_HELP,
    LATENCY_SOURCES,
    PEER_OPTION_HELP,
    PROTOCOL_PARAMS,
    PROTOCOLS,
    PeerOptions,
    RunSpec,
    parse_params,
)
from generator.topologies import FAMILIES
from testbed.base import Progress, Runner, RunPlan, prepare_run, write_exits
from testbed.live import DEFAULT_PORT as LIVE_PORT
from testbed.repeat import add_rerun_parser, positive_int
from testbed.runners import backend_choices, backend_help, choose_runner
from testbed.sweep import add_sweep_parser

EXIT_MISMATCH = 1
EXIT_ERROR = 2
EXIT_LEFTOVERS = 3  # the run and its analysis are complete, but engine objects were left behind


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--topology", "-t", default="mesh",
        help=f"family, optionally with size and parameters: {', '.join(sorted(FAMILIES))} (e.g. mesh, mesh,7, "
             "circulant:2,3, er:p=0.2,20, file:net.graphml, zoo:Abilene, sndlib:polska; `p2p topologies` lists "
             "them; default mesh)",
    )
    p.add_argument("-n", type=int, default=None, help="number of peers (default 5)")
    p.add_argument("--protocol", default="v1", choices=PROTOCOLS, help="gossip protocol (default v1)")
    p.add_argument("--seed", type=int, default=None, help="seed for randomised topologies/protocols "
                                                          "(drawn and recorded in spec.json when needed and not given)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="topology or protocol parameter, repeatable: p=0.2, rows=3, fanout=2, ttl=3")
    p.add_argument("--allow-disconnected", action="store_true", help="accept a topology that is not connected")


def _spec_from(args: argparse.Namespace) -> RunSpec:
    if getattr(args, "netem", False):
        raise P2PError(_netem_refusal())
    chosen = {k: getattr(args, k, None)
              for k in ("idle", "link_deadline", "latency", "jitter", "loss", "bandwidth", "latency_from")}
    chosen["link_shapes"] = tuple(getattr(args, "link_shape", None) or ())
    opts = PeerOptions.from_cli(getattr(args, "peer_option", None), **{k: v for k, v in chosen.items() if v not in (None, ())})
    faults = tuple(Fault.parse(f) for f in getattr(args, "fault", None) or ())
    spec = RunSpec.parse(args.topology, args.n, protocol=args.protocol, seed=args.seed, options=opts, faults=faults,
                         params=parse_params(getattr(args, "param", [])),
                         allow_disconnected=getattr(args, "allow_disconnected", False))
    impls = implementations_from_cli(getattr(args, "peer_image", None), getattr(args, "peer_command", None),
                                     getattr(args, "peer_adapter", None), spec.n)
    if impls and faults:
        raise P2PError("--fault with --peer-image/--peer-command: faults on runs with other implementations "
                       "are not supported yet")
    return dataclasses.replace(spec, implementations=impls) if impls else spec


def writable_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be created (with its parents) or written in, or None when it can.

    Directories created for the probe are removed again, so a refused command leaves nothing behind.
    """
    path = Path(path)
    created: list[Path] = []
    try:
        missing = [d for d in (path, *path.parents) if not d.exists()]
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        fd, probe = tempfile.mkstemp(dir=path, prefix=".p2p-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or str(e)
    finally:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
    return None


def check_out_dir(path: Path) -> None:
    """Refuse an output directory that cannot be created or written, before any work starts."""
    problem = writable_dir_problem(path)
    if problem:
        raise P2PError(f"cannot create/write {path}: {problem}")


FAULT_HELP = ("fault timeline entry, repeatable (WHEN: seconds from start, or deliveries=N): kill:3@0, "
              "kill:3@deliveries=20000, pause:2@0.5, resume:2@1.5, restart:3@2, partition:0-1,2-3@0.2, heal:0-1@1, "
              "shape:0-1:latency=0.2,loss=0.1@5 (these link shape keys from then on, both ways), "
              "flap:0-1@2,period=1,count=5[,down=0.5] (down for `down` s, default period/2, then up; "
              "count times, every period s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2p", description="P2P topology testbed: run gossip floods, analyse them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one network to completion and analyse it",
                         description="Create runs/<run-id>/, start one peer per node, wait, collect, analyse.")
    _add_spec_args(run)
    run.add_argument("--backend", choices=backend_choices(), default="auto",
                     help=f"where peers run: {backend_help()}")
    run.add_argument("--out", type=Path, default=Path("runs"), help="runs directory (default ./runs)")
    run.add_argument("--force", action="store_true", help="run even when the prediction is above --limit")
    run.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                     help=f"refuse runs predicted above this many deliveries (default {DEFAULT_LIMIT:,})")
    run.add_argument("--idle", type=float, default=None, help="peer idle timeout in seconds")
    run.add_argument("--link-deadline", type=float, default=None, help="seconds a peer waits for its links")
    run.add_argument("--peer-option", action="append", metavar="KEY=VALUE", help=PEER_OPTION_HELP)
    run.add_argument("--no-expect", action="store_true",
                     help="do not tell peers their predicted deliveries (they exit on idle instead)")
    run.add_argument("--no-plots", action="store_true", help="statistics only, no pictures")
    run.add_argument("--latency", type=float, help="emulated one-way delay per link, seconds (inside the peers)")
    run.add_argument("--jitter", type=float, help="emulated delay varies by ± this, seconds (seeded)")
    run.add_argument("--loss", type=float, help="emulated loss probability per frame (seeded by --seed)")
    run.add_argument("--bandwidth", type=float, help="emulated bandwidth per link, bytes/s")
    run.add_argument("--link-shape", action="append", metavar="U-V:KEY=VALUE,...",
                     help="per-edge emulation, repeatable: 0-1:latency=0.05,loss=0.1")
    run.add_argument("--latency-from", choices=LATENCY_SOURCES, default=None, help=LATENCY_FROM_HELP)
    run.add_argument("--netem", action="store_true",
                     help="shape links with the kernel's netem instead (refused where the kernel lacks sch_netem)")
    run.add_argument("--fault", action="append", metavar="ACTION:TARGETS@WHEN",
                     help=FAULT_HELP)
    _add_foreign_args(run)
    run.add_argument("--live", nargs="?", type=int, const=LIVE_PORT, default=None, metavar="PORT",
                     help=f"serve a live page of the run (and /metrics) on 127.0.0.1:PORT (default {LIVE_PORT}; "
                          "0: any free port); it stays up with the final state until Ctrl-C")
    run.add_argument("--repeat", type=positive_int, default=1, metavar="K",
                     help="run K times into runs/<name>-repeat-<stamp>/ (seeds vary unless --seed is given); "
                          "exact quantities must be equal in every run, the others get mean, sd and a 95%% "
                          "t interval (repeats.json, repeats.txt)")
    run.set_defaults(func=cmd_run)

    ana = sub.add_parser("analyse", aliases=["analyze"], help="statistics and plots of a run directory",
                         description="Write summary.json, stats.txt, plots and report.html into RUN_DIR.")
    ana.add_argument("run_dir", nargs="?", type=Path, default=Path("runs/latest"),
                     help="run directory or a directory of logs in the original format (default runs/latest)")
    ana.add_argument("--no-plots", action="store_true", help="statistics only, no pictures")
    ana.set_defaults(func=cmd_analyse)

    _add_compare_parser(sub)

    pred = sub.add_parser("predict", help="predicted deliveries and bytes of a run, without running it")
    _add_spec_args(pred)
    pred.set_defaults(func=cmd_predict)
    ren = sub.add_parser("render", help="write compose/<topology>-<n>.yml for plain `docker compose up`",
                         description="Create runs/<run-id>/ (and runs/latest), render compose/<topology>-<n>.yml "
                                     "with one container per peer, and point ./.env at it so that a plain "
                                     "`docker compose up` runs it; then `p2p analyse`.")
    _add_spec_args(ren)
    ren.add_argument("--out", type=Path, default=Path("runs"), help="runs directory (default ./runs)")
    ren.add_argument("--force", action="store_true", help="render even when the prediction is above --limit")
    ren.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                     help=f"refuse runs predicted above this many deliveries (default {DEFAULT_LIMIT:,})")
    ren.add_argument("--idle", type=float, default=None, help="peer idle timeout in seconds")
    ren.add_argument("--link-deadline", type=float, default=None, help="seconds a peer waits for its links")
    ren.add_argument("--peer-option", action="append", metavar="KEY=VALUE", help=PEER_OPTION_HELP)
    ren.add_argument("--latency-from", choices=LATENCY_SOURCES, default=None, help=LATENCY_FROM_HELP)
    ren.add_argument("--no-expect", action="store_true",
                     help="do not tell peers their predicted deliveries (they exit on idle instead)")
    ren.set_defaults(func=cmd_render)

    _add_clean_parser(sub)

    _add_watch_parser(sub)
    _add_grade_parser(sub)
    _add_topologies_parser(sub)
    add_sweep_parser(sub)
    add_rerun_parser(sub)
    return parser




def _add_foreign_args(run: argparse.ArgumentParser) -> None:
    """--peer-image, --peer-command, --peer-adapter (docs/bring-your-own-peer.md)."""
    run.add_argument("--peer-image", action="append", metavar="IMAGE[:ids=0-4][:adapter=FILE]",
                     help="run these peers (default: all) from another implementation's image (compose; not "
                          "swarm yet), started as its adapter says; repeatable; the rest run our peer; ids like 0-4,7 or "
                          "even or odd (docs/bring-your-own-peer.md)")
    run.add_argument("--peer-command", action="append", metavar="PATH[:ids=0-4][:adapter=FILE]",
                     help="the same on the local backend: this program instead of the adapter's command[0]")
    run.add_argument("--peer-adapter", type=Path, metavar="FILE",
                     help="adapter (TOML) of the other implementation: how to pass id, listen address, neighbours "
                          "and log dir, when it exits, its log format (default: --id/--listen/--peer/--logs/"
                          "--idle/--link-deadline flags, original logs, exits by itself); alone: its image or "
                          "command plays every peer")


def _check_foreign_backend(spec: RunSpec, runner: Runner) -> None:
    """An image needs containers, a program the local backend."""
    if spec.implementations and runner.name == "swarm":
        raise P2PError("--peer-image on swarm: not supported yet (swarm peers hand their logs to the run's "
                       "collector at exit, which another implementation cannot); use --backend compose")
    for impl in spec.implementations:
        if runner.name == "local" and not impl.program and impl.image:
            raise P2PError(f"--peer-image {impl.image}: the local backend runs programs, not images; "
                           "use --backend compose|swarm, or --peer-command PATH")
        if runner.name != "local" and impl.program:
            raise P2PError(f"--peer-command {impl.program}: only the local backend runs programs; "
                           "with --backend compose|swarm use --peer-image IMAGE")
        if runner.name != "local" and not impl.image:
            raise P2PError(f"implementation {impl.name}: no image (--peer-image IMAGE, or image = \"...\" "
                           "in the adapter)")


def _add_clean_parser(sub) -> None:
    """`p2p clean [--run RUN_ID]`."""
    cln = sub.add_parser("clean", help="remove every container, network and volume labelled p2p.run",
                         description="Remove Docker containers, networks and volumes carrying the label p2p.run "
                                     "(only those of one run with --run). Nothing without that label is touched.")
    cln.add_argument("--run", metavar="RUN_ID", default=None, help="only this run's objects")
    cln.set_defaults(func=cmd_clean)


def _add_topologies_parser(sub) -> None:
    """`p2p topologies [--zoo] [--sndlib]`."""
    top = sub.add_parser("topologies", help="list the topology families, their parameters and defaults",
                         description="List the topology families; --zoo and --sndlib list the real networks "
                                     "(name, nodes, links) that -t zoo:NAME and -t sndlib:NAME take.")
    top.add_argument("--zoo", action="store_true", help="list the Internet Topology Zoo networks (zoo:NAME)")
    top.add_argument("--sndlib", action="store_true", help="list the SNDlib networks (sndlib:NAME)")
    top.set_defaults(func=cmd_topologies)


def _add_compare_parser(sub) -> None:
    """`p2p compare DIR...`: runs side by side, or repeated groups with significance."""
    cmp_ = sub.add_parser("compare", help="several runs, or repeated groups, side by side",
                          description="Table and plots of deliveries, bytes, bytes per peer and time to quiescence. "
                                      "Given repeated groups instead (directories of `p2p run --repeat K` or "
                                      "`p2p sweep --repeat K`): their intervals, and per quantity whether two "
                                      "configurations differ (exact values exactly; the others by Welch's t-test, "
                                      "alpha 0.05, p shown): each directory against the first; sweeps cell by cell; "
                                      "one sweep: each protocol against the first, per family and n.")
    cmp_.add_argument("run_dirs", nargs="+", type=Path, metavar="DIR",
                      help="run directories, or repeat/sweep directories (repeats.json, sweep.json)")
    cmp_.add_argument("--out", type=Path, default=Path("runs/compare"), help="output directory (default runs/compare)")
    cmp_.add_argument("--reanalyse", action="store_true", help="analyse every run again first")
    cmp_.add_argument("--no-plots", action="store_true", help="no compare.png")
    cmp_.set_defaults(func=cmd_compare)


def _add_grade_parser(sub) -> None:
    """`p2p grade RUN_DIR [--hostile]`."""
    grd = sub.add_parser("grade", help="judge each implementation of a run (ours and --peer-image/--peer-command)",
                         description="Per implementation: exact counts per receiver and per edge against the "
                                     "prediction, duplicates, protocol violations (charged to the sender's "
                                     "implementation), link set-up problems, exits; one PASS/FAIL verdict each. "
                                     "Writes RUN_DIR/grade.json; exit status 0 when every one passes, else 1. "
                                     "See docs/bring-your-own-peer.md.")
    grd.add_argument("run_dir", nargs="?", type=Path, default=Path("runs/latest"), help="default runs/latest")
    grd.add_argument("--hostile", action="store_true",
                     help="also replay the run (into RUN_DIR/hostile/) with the hostile-input battery fired at "
                          "one peer of each other implementation mid-run (local backend for programs, compose for "
                          "images) and include the outcome: it must survive with its counts exact")
    grd.set_defaults(func=cmd_grade)


def _add_watch_parser(sub) -> None:
    """`p2p watch RUN_DIR [--port P]`."""
    wat = sub.add_parser("watch", help="serve the live page (and /metrics) of a run directory, running or finished",
                         description="Serve on 127.0.0.1 the live page of any run directory: one started by "
                                     "`docker compose up`, another `p2p run`, or a finished one. Ctrl-C stops it.")
    wat.add_argument("run_dir", type=Path, nargs="?", default=Path("runs/latest"), help="default runs/latest")
    wat.add_argument("--port", type=int, default=LIVE_PORT, help=f"default {LIVE_PORT}; 0: any free port")
    wat.set_defaults(func=cmd_watch)


def _netem_refusal() -> str:
    import platform

    release = platform.release()
    have = Path("/sys/module/sch_netem").exists() or any(Path(f"/lib/modules/{release}").rglob("sch_netem.ko*"))
    why = ("netem is not supported by this testbed's runners" if have
           else f"this kernel ({release}) has no sch_netem module")
    return f"--netem: {why}; use --latency/--jitter/--loss/--bandwidth/--link-shape, emulated inside the peers"


def cmd_run(args: argparse.Namespace) -> int:
    if args.repeat > 1 and args.live is not None:
        raise P2PError("--live watches one run; it cannot be combined with --repeat")
    progress = Progress()
    spec = _spec_from(args)
    prediction = expect_for(spec, args.limit, args.force, progress.message)
    if prediction is not None:
        progress.message(f"{spec.name} ({spec.protocol}): predicted {prediction.deliveries:,} deliveries, "
                         f"{prediction.bytes:,} bytes")
    backend = args.backend
    if backend == "auto" and spec.implementations:  # a program runs locally, an image in containers
        backend = "local" if any(i.program or not i.image for i in spec.implementations) else "auto"
    runner = choose_runner(backend, progress)
    _check_foreign_backend(spec, runner)
    if args.repeat > 1:
        from testbed.repeat import cmd_run_repeat

        return cmd_run_repeat(args, spec, runner, progress)
    if args.live is None:
        plan = prepare_run(spec, args.out, None if args.no_expect else prediction)
        progress.message(f"run {plan.run_id} -> {plan.run_dir}  (backend: {runner.name})")
        return _run_and_judge(args, runner, plan, progress)
    from analysis.live import LiveSetup, LiveState
    from testbed.live import LiveServer

    with LiveServer(None, args.live) as live:  # bound first: a taken port leaves no run directory behind
        plan = prepare_run(spec, args.out, None if args.no_expect else prediction)
        progress.message(f"run {plan.run_id} -> {plan.run_dir}  (backend: {runner.name})")
        live.show(LiveState(LiveSetup.of(plan.run_dir, spec, prediction, swarm=runner.name == "swarm")))
        progress.message(f"live: {live.url}  (metrics: {live.url}metrics)")
        code = _run_and_judge(args, runner, plan, progress)
        progress.message(f"live: {live.url} shows the final state; Ctrl-C to stop")
        _wait_for_interrupt()
    return code


def _run_and_judge(args: argparse.Namespace, runner: Runner, plan: RunPlan, progress: Progress) -> int:
    """Run the plan, keep the exits, analyse: the exit status of `p2p run`."""
    result = runner.run(plan, progress)
    progress.message(f"peers finished in {result.duration:.2f} s")
    if result.failed_peers:
        progress.message(f"peers with a non-zero exit code: {result.failed_peers} (the analysis says why)")
    write_exits(plan.run_dir, result)
    if result.quiescence_stops:
        progress.message(f"foreign peers stopped at quiescence: {list(result.quiescence_stops)}")
    if result.runaway_stops:
        progress.message(f"foreign peers stopped as runaways (logs past their prediction): {list(result.runaway_stops)}")
    # One contract for every backend (README, "Exit status"): the analysis judges the run,
    # peers' exit codes included; a non-zero exit that a fault explains is not a failure.
    explained = _analyse(plan.run_dir, plots=not args.no_plots)
    if plan.spec.implementations:  # a run with another implementation is graded, each one on its own
        from analysis.grade import format_grade, grade

        grades = grade(plan.run_dir)
        print("\ngrade (p2p grade " + str(plan.run_dir) + "):\n" + format_grade(grades))
        explained = explained and all(g.verdict == "PASS" for g in grades)
    if not explained:
        code = EXIT_MISMATCH
    else:
        code = EXIT_LEFTOVERS if result.cleanup_problem else 0
    if result.cleanup_problem:
        print(f"p2p: error: {result.cleanup_problem}", file=sys.stderr)
    return code


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (the live page stays up meanwhile)."""
    import threading

    from testbed.signals import sigterm_interrupts

    with sigterm_interrupts():
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


def cmd_grade(args: argparse.Namespace) -> int:
    from analysis.grade import format_grade, grade

    if not (args.run_dir / "spec.json").is_file():
        raise P2PError(f"no run directory at {args.run_dir} (no spec.json): name one, e.g. runs/<run-id>")
    grades = grade(args.run_dir.resolve())
    if args.hostile:
        import json

        from testbed.hostile import hostile_grades

        hostile_grades(args.run_dir.resolve(), grades, lambda text: print(text, file=sys.stderr))
        data = {"run_id": args.run_dir.resolve().name, "implementations": [g.to_dict() for g in grades]}
        (args.run_dir / "grade.json").write_text(json.dumps(data, indent=1) + "\n")
    print(format_grade(grades))
    return 0 if all(g.verdict == "PASS" for g in grades) else EXIT_MISMATCH


def cmd_watch(args: argparse.Namespace) -> int:
    from testbed.live import serve_run

    run_dir = args.run_dir
    if not (run_dir / "spec.json").is_file():
        raise P2PError(f"no run directory at {run_dir} (no spec.json): name one, e.g. runs/<run-id>")
    live = serve_run(run_dir.resolve(), args.port)
    print(f"live: {live.url}  (metrics: {live.url}metrics; {run_dir.resolve().name}); Ctrl-C to stop", file=sys.stderr)
    try:
        _wait_for_interrupt()
    finally:
        live.stop()
    return 0


def _analyse(run_dir: Path, plots: bool) -> bool:
    from analysis import run_analysis
    from analysis.text import format_summary

    result = run_analysis(run_dir, plots=plots, progress=lambda text: print(text, file=sys.stderr))
    print(format_summary(result))
    # With faults during the run the prediction is only an upper bound: a shortfall that
    # the faults explain (missing.jsonl names the fault for each) is the experiment's result.
    return bool(result.summary.get("explained"))


def cmd_analyse(args: argparse.Namespace) -> int:
    if not args.run_dir.exists():
        raise P2PError(f"no run directory at {args.run_dir} (run `p2p run` first or name a directory)")
    return 0 if _analyse(args.run_dir.resolve(), plots=not args.no_plots) else EXIT_MISMATCH


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import compare
    from analysis.compare_groups import compare_groups, is_group_dir

    missing = [str(d) for d in args.run_dirs if not d.is_dir()]
    if missing:
        raise P2PError(f"no run directory: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    grouped = [is_group_dir(d) for d in args.run_dirs]
    if any(grouped):
        if not all(grouped):
            plain = [str(d) for d, g in zip(args.run_dirs, grouped) if not g]
            raise P2PError(f"cannot mix repeated groups with single runs: {', '.join(plain)} (give only repeat "
                           "or sweep --repeat directories, or only run directories)")
        cmp_groups = compare_groups(args.run_dirs, args.out, progress=lambda text: print(text, file=sys.stderr))
        print(cmp_groups.text)
        print(f"written: {', '.join(str(f) for f in cmp_groups.files)}", file=sys.stderr)
        return 0
    result = compare(args.run_dirs, args.out, plots=not args.no_plots, reanalyse=args.reanalyse,
                     progress=lambda text: print(text, file=sys.stderr))
    print(result.text)
    print(f"written: {', '.join(str(f) for f in result.files)}", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    spec = _spec_from(args)
    graph = spec.graph()
    if spec.protocol != "v1":
        from generator.protocol_predict import predict_protocol

        print(f"{spec.label} ({spec.protocol}): {graph.number_of_nodes()} peers, {graph.number_of_edges()} links")
        try:
            pp = predict_protocol(graph, spec, family=spec.topology)
        except PredictionTooLarge as e:
            print(f"not computed ({e})")
            return 0
        print(pp.describe())
        for peer, frames in sorted((pp.per_peer_frames or {}).items()):
            print(f"  peer {peer}: receives {frames:,} frames")
        return 0
    total = quick_deliveries(graph, spec.topology)
    print(f"{spec.label} ({spec.protocol}): {graph.number_of_nodes()} peers, {graph.number_of_edges()} links")
    print(f"deliveries: {total:,}")
    try:
        p = predict(graph, spec.topology)
    except PredictionTooLarge as e:
        print(f"bytes: not computed ({e})")
        return 0
    print(f"bytes:      {p.bytes:,}")
    for peer, flow in sorted(p.per_peer_received().items()):
        print(f"  peer {peer}: receives {flow.frames:,} frames, {flow.bytes:,} bytes")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from testbed.rendering import render_run

    progress = Progress()
    spec = _spec_from(args)
    prediction = expect_for(spec, args.limit, args.force, progress.message)
    r = render_run(spec, None if args.no_expect else prediction, runs_root=args.out)
    if r.note:
        progress.message(r.note)
    if prediction is not None:
        progress.message(f"{spec.name} ({spec.protocol}): predicted {prediction.deliveries:,} deliveries, "
                         f"{prediction.bytes:,} bytes")
    progress.message(f"run {r.plan.run_id} -> {r.plan.run_dir}  (compose project {r.project}, .env updated)")
    print(r.compose_file)
    print("next: docker compose up    (needs image p2p-peer:latest: docker/build-image.sh; "
          "afterwards: p2p analyse, docker compose down)")
    return 0


def cmd_topologies(args: argparse.Namespace) -> int:
    from generator.networks import describe_networks
    from generator.topologies import describe_families

    listed = [family for family in ("zoo", "sndlib") if getattr(args, family, False)]
    if listed:
        print("\n\n".join(describe_networks(family) for family in listed))
        return 0
    print(describe_families())
    print("\nSpelling: NAME | NAME,N | NAME:KEY=VALUE,...,N | NAME:BARE,... (list parameter); or --param KEY=VALUE.")
    print("Real networks: `p2p topologies --zoo` and `p2p topologies --sndlib` list them (name, nodes, links); "
          "--latency-from distance gives their links propagation delays.")
    print("Protocol parameters: " + "; ".join(
        f"{p}: " + (", ".join(f"{k} (default {v})" for k, v in d.items()) or "none")
        for p, d in PROTOCOL_PARAMS.items()))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    import docker.errors

    from testbed.engine import clean_by_label, docker_client
    from testbed.swarm import clean_swarm

    client = docker_client()
    removed: Counter[str] = Counter()  # what each step removed, by kind, added up
    try:  # swarm services first: their containers and networks go with them
        label = f"p2p.run={args.run}" if args.run else "p2p.run"
        run_ids = {(svc.attrs.get("Spec", {}).get("Labels") or {}).get("p2p.run")
                   for svc in client.services.list(filters={"label": label})}
        for run_id in sorted(r for r in run_ids if r):
            removed.update(clean_swarm(client, run_id))
    except docker.errors.APIError:
        pass  # not a swarm manager: there are no services of ours to remove here
    removed.update(clean_by_label(client, args.run))
    what = f"run {args.run}" if args.run else "label p2p.run"
    print(f"removed {removed['services']} services, {removed['containers']} containers, {removed['networks']} "
          f"networks, {removed['volumes']} volumes ({what})")
    return 0


# Files `p2p analyse` writes into the run directory (besides plots): checked before analysing.
_ANALYSIS_OUTPUTS = ("summary.json", "stats.txt", "missing.json", "missing.jsonl", "worldview.json", "worldview",
                     "report.html")


def _preflight(args: argparse.Namespace) -> None:
    """Refuse an output location that cannot be written before any work starts (no peer started,
    nothing analysed): --out of run, render, compare and sweep; the run directory of analyse."""
    out = getattr(args, "out", None)
    if isinstance(out, Path):
        check_out_dir(out)
    if args.command in ("analyse", "analyze") and args.run_dir.is_dir():
        run_dir = args.run_dir
        check_out_dir(run_dir)
        for name in _ANALYSIS_OUTPUTS:
            target = run_dir / name
            if name != "worldview" and target.is_dir():
                raise P2PError(f"cannot create/write {target}: {os.strerror(errno.EISDIR)}")
            if name == "worldview" and target.exists() and not target.is_dir():
                raise P2PError(f"cannot create/write {target}: {os.strerror(errno.ENOTDIR)}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _preflight(args)
        return args.func(args)
    except P2PError as e:
        print(f"p2p: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # backstop: a file that could not be read or written, as one line
        where = f"{e.filename}: " if e.filename is not None else ""
        print(f"p2p: error: {_one_line(where + (e.strerror or str(e)))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("p2p: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
