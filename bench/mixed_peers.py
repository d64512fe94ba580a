"""Python and Rust peers in one compose run: memory per container and container start to first dial.

    python3 bench/mixed_peers.py [--n 200] [--rust-ids even] [--idle 120] [--interval 0.5] [--json]

Runs cycle-N on the compose backend with the Rust peer (image p2p-peer-rs:latest, built by
rust-peer/build-image.sh, adapter rust-peer/adapter.toml) playing the even ids and ours the
odd ones (``--rust-ids odd`` swaps them): every link joins the two implementations. The run's
``--idle`` is 120 s: the Rust peer has no start barrier and exits ``--idle`` seconds after its
links came up without a frame, while ours wait at the barrier (every container started) and
then still need their interpreter started; at N = 200 here that took up to a minute, and
with the default idle the Rust peers had all exited before ours sent anything (4,032 of
79,600 deliveries). Ours exit on ``--expect`` as always. Checks
the run is exact (deliveries and bytes = prediction, every peer exit 0). Per implementation,
median and p90 over its containers of:

- **memory**: each container's peak over samples taken every ``--interval`` s from its memory
  cgroup (v1 here: ``memory.usage_in_bytes`` minus ``total_inactive_file``, which is what
  ``docker stats`` shows on Docker 20.10, so it includes the page cache of the logs the peer
  wrote that is still active; and ``total_rss``, the processes' anonymous memory only);
- **start to first dial**: ``docker inspect`` ``State.StartedAt`` to the peer's first dial
  attempt. Ours: the ``go`` event of its events log (the start barrier passed; it dials its
  higher-id neighbours at once), or for a peer with no higher-id neighbour the ``dial`` event
  (after the dial grace), or none if it never had to dial. Rust: the stderr line
  ``first dial at T (unix time)`` (rust-peer/README.md). Ours waits for the start barrier
  (every container started, Rust ones last: they are started after ours), the Rust peer has
  none, so ours is also given as start to its ``start`` event (interpreter start-up) and
  ``start`` to ``go`` (the barrier wait).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_compose import container_memory, count_deliveries  # noqa: E402

import docker  # noqa: E402
from generator.adapter import implementations_from_cli  # noqa: E402
from generator.predict import predict  # noqa: E402
from generator.spec import PeerOptions, RunSpec  # noqa: E402
from peer.logfiles import events_file, stderr_file  # noqa: E402
from testbed.base import Progress, RunnerError, prepare_run  # noqa: E402
from testbed.compose import ComposeRunner  # noqa: E402

RUST_IMAGE = "p2p-peer-rs:latest"
FIRST_DIAL = re.compile(rb"first dial at (\d+\.\d+) \(unix time\)")


def started_at(text: str) -> float:
    """Docker's ``2026-12-02T17:10:01.123456789Z`` -> Unix seconds (nanoseconds cut to micro)."""
    m = re.fullmatch(r"(.+?)(?:\.(\d+))?Z", text)
    if m is None:
        raise ValueError(f"unexpected StartedAt {text!r}")
    base = datetime.fromisoformat(m.group(1) + "+00:00").timestamp()
    return base + float("0." + (m.group(2) or "0"))


class Sampler(threading.Thread):
    """Peak cgroup memory per container of a run, and each container's StartedAt, while it runs."""

    def __init__(self, run_id: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.run_id, self.interval = run_id, interval
        self.stop = threading.Event()
        self.peak: dict[int, list[float]] = {}  # peer -> [usage-inactive MiB, rss MiB]
        self.started: dict[int, float] = {}
        self.samples = 0

    def run(self) -> None:
        client = docker.from_env(timeout=300)
        ids: dict[str, int] = {}
        while not self.stop.is_set():
            for c in client.containers.list(filters={"label": f"p2p.run={self.run_id}"}, sparse=True):
                peer = (c.attrs.get("Labels") or {}).get("p2p.peer", "")
                if c.id not in ids and peer.isdigit():
                    ids[c.id] = int(peer)
            for cid, peer in ids.items():
                if peer not in self.started:
                    self._inspect(client, cid, peer)
                m = container_memory(cid)
                if m is not None:
                    old = self.peak.setdefault(peer, [0.0, 0.0])
                    self.peak[peer] = [max(old[0], m[0]), max(old[1], m[1])]
            self.samples += 1
            self.stop.wait(self.interval)

    def _inspect(self, client, cid: str, peer: int) -> None:
        try:
            state = client.api.inspect_container(cid)["State"]
        except docker.errors.APIError:
            return
        if not state.get("StartedAt", "").startswith("0001"):
            self.started[peer] = started_at(state["StartedAt"])


def python_times(log_dir: Path, p: int, n: int) -> dict[str, float | None]:
    """Our peer's ``start``, ``go`` and first dial attempt (wall clock) from its events log."""
    ev = {"start": None, "go": None, "dial": None}
    try:
        lines = events_file(log_dir, p).read_text().splitlines()
    except OSError:  # never ran
        lines = []
    for line in lines:
        rec = json.loads(line)
        if rec["ev"] in ev and ev[rec["ev"]] is None:
            ev[rec["ev"]] = rec["t"]
    higher = any(q > p for q in ((p - 1) % n, (p + 1) % n))  # cycle neighbours
    return {"start": ev["start"], "go": ev["go"], "first_dial": ev["go"] if higher else ev["dial"]}


def rust_first_dial(log_dir: Path, p: int) -> float | None:
    try:
        m = FIRST_DIAL.search(stderr_file(log_dir, p).read_bytes())
    except OSError:  # never ran
        return None
    return float(m.group(1)) if m else None


def stats(values: list[float]) -> dict[str, float | int | None]:
    """Median and p90 (nearest rank) of ``values``."""
    if not values:
        return {"count": 0, "median": None, "p90": None}
    s = sorted(values)
    return {"count": len(s), "median": round(statistics.median(s), 3),
            "p90": round(s[min(len(s) - 1, max(0, -(-9 * len(s) // 10) - 1))], 3)}


def summarise(plan, sampler: Sampler, rust: set[int], n: int) -> dict:
    """Per implementation: memory and start-to-first-dial figures."""
    out = {}
    for name, peers in (("python", [p for p in range(n) if p not in rust]), ("rust", sorted(rust))):
        dial, start, wait = [], [], []
        for p in peers:
            t0 = sampler.started.get(p)
            if name == "rust":
                first = rust_first_dial(plan.log_dir, p)
            else:
                t = python_times(plan.log_dir, p, n)
                first = t["first_dial"]
                if t0 is not None and t["start"] is not None:
                    start.append(t["start"] - t0)
                if t["start"] is not None and t["go"] is not None:
                    wait.append(t["go"] - t["start"])
            if t0 is not None and first is not None:
                dial.append(first - t0)
        row = {"containers": len(peers),
               "memory_mib": stats([sampler.peak[p][0] for p in peers if p in sampler.peak]),
               "rss_mib": stats([sampler.peak[p][1] for p in peers if p in sampler.peak]),
               "start_to_first_dial_s": stats(dial)}
        if name == "python":
            row["start_to_start_event_s"] = stats(start)
            row["start_event_to_go_s"] = stats(wait)
        out[name] = row
    return out


def bench(n: int, rust_ids: str, idle: float, interval: float, workdir: Path) -> dict:
    impls = implementations_from_cli([f"{RUST_IMAGE}:ids={rust_ids}"], None, ROOT / "rust-peer" / "adapter.toml", n)
    rust = set(impls[0].ids)
    spec = RunSpec.parse("cycle", n, implementations=impls, options=PeerOptions(idle=idle))
    pred = predict(spec.graph(), spec.topology)
    plan = prepare_run(spec, workdir / "runs", pred)
    runner = ComposeRunner.connect(poll=0.2)
    sampler = Sampler(plan.run_id, interval)
    sampler.start()
    t = time.monotonic()
    try:
        result = runner.run(plan, Progress(interval=30))
    finally:
        sampler.stop.set()
        sampler.join(timeout=120)
    wall = time.monotonic() - t
    deliveries, nbytes = count_deliveries(plan.log_dir, n)
    exact = (deliveries, nbytes) == (pred.deliveries, pred.bytes) and result.exit_codes == dict.fromkeys(range(n), 0)
    return {"run": spec.name, "rust_ids": rust_ids, "idle_s": idle, "wall_s": round(wall, 1), "deliveries": deliveries,
            "predicted": pred.deliveries, "bytes": nbytes, "predicted_bytes": pred.bytes, "exact": exact,
            "samples": sampler.samples, "interval_s": interval,
            "memory_source": "cgroup v1: peak of sampled usage_in_bytes - total_inactive_file (as docker stats); "
                             "rss = total_rss",
            **summarise(plan, sampler, rust, n)}


def show(res: dict) -> None:
    print(f"{res['run']} (Rust ids {res['rust_ids']}): {res['deliveries']:,}/{res['predicted']:,} deliveries, "
          f"{res['bytes']:,}/{res['predicted_bytes']:,} B, exact={res['exact']}, {res['wall_s']} s, "
          f"{res['samples']} memory samples")
    for name in ("python", "rust"):
        r = res[name]
        parts = [f"{k} median {v['median']} p90 {v['p90']} (n={v['count']})"
                 for k, v in r.items() if isinstance(v, dict)]
        print(f"  {name:6} {r['containers']} containers: " + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="cycle size (default 200)")
    ap.add_argument("--rust-ids", default="even", choices=("even", "odd"), help="ids the Rust peer plays")
    ap.add_argument("--idle", type=float, default=120.0,
                    help="the run's --idle, s (default 120: the Rust peer must outlast our barrier)")
    ap.add_argument("--interval", type=float, default=0.5, help="memory sampling interval, s (default 0.5)")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="copy the run directory here if it is not exact")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="p2p-bench-mixed-") as tmp:
        try:
            res = bench(args.n, args.rust_ids, args.idle, args.interval, Path(tmp))
            if not res["exact"] and args.keep is not None:  # what went wrong: the run directory
                shutil.copytree(Path(tmp) / "runs", args.keep, dirs_exist_ok=True)
        except RunnerError as e:  # no engine, or no Rust image: rust-peer/build-image.sh builds it
            print(f"mixed_peers: error: {e}", file=sys.stderr)
            return 2
    show(res)
    if args.json:
        print(json.dumps(res))
    return 0 if res["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
