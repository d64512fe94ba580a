"""Real containers: Python and Rust peers alternating by id (on the cycle every neighbour of a
peer is of the other kind) on mesh-7 and cycle-10, graded exactly: deliveries, bytes and every directed edge's frames
and bytes against the prediction, and a PASS for both implementations."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from analysis.grade import grade
from generator.adapter import implementations_from_cli
from generator.predict import predict
from generator.spec import RunSpec
from testbed.base import Progress, prepare_run, write_exits
from testbed.engine import list_labelled

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RUST_IMAGE = "p2p-peer-rs:latest"


@pytest.fixture(scope="module")
def rust_image(runner) -> str:
    """The Rust peer's image, built by rust-peer/build-image.sh (a no-op when it is up to date)."""
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed: the Rust peer's image cannot be built (https://rustup.rs)")
    out = subprocess.run([str(ROOT / "rust-peer" / "build-image.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return RUST_IMAGE


def edge_flows(log_dir: Path, n: int) -> tuple[Counter, Counter]:
    """(frames, bytes) per directed edge sender->receiver, read from the receivers' message logs.

    A line is one frame of 4 + len(JSON) bytes; its sender is the last hop.
    """
    frames: Counter = Counter()
    nbytes: Counter = Counter()
    for p in range(n):
        for line in (log_dir / f"{p}.txt").read_bytes().splitlines():
            edge = (json.loads(line)["hops"][-1], p)
            frames[edge] += 1
            nbytes[edge] += 4 + len(line)
    return frames, nbytes


@pytest.mark.parametrize(("family", "n", "rust_ids", "deliveries"), [
    ("mesh", 7, "even", 13_692),
    ("cycle", 10, "odd", 180),
])
def test_alternating_python_and_rust_peers_are_exact(runner, run_ids, rust_image, tmp_path, family, n, rust_ids,
                                                       deliveries):
    impls = implementations_from_cli([f"{rust_image}:ids={rust_ids}"], None, ROOT / "rust-peer" / "adapter.toml", n)
    rust = set(impls[0].ids)
    assert rust == set(range(0 if rust_ids == "even" else 1, n, 2))
    spec = RunSpec.parse(family, n, implementations=impls)
    pred = predict(spec.graph(), spec.topology)
    if family == "cycle":  # alternating on a cycle: every link joins a Rust and a Python peer
        assert all((u in rust) != (v in rust) for u, v in pred.per_edge)
    plan = prepare_run(spec, tmp_path / "runs", pred, run_id=run_ids(f"mixed-{family}"))
    result = runner.run(plan, Progress(stream=io.StringIO()))
    write_exits(plan.run_dir, result)
    assert result.exit_codes == {p: 0 for p in range(n)}, result

    frames, nbytes = edge_flows(plan.log_dir, n)
    assert sum(frames.values()) == pred.deliveries == deliveries
    assert sum(nbytes.values()) == pred.bytes
    assert {e: (frames[e], nbytes[e]) for e in pred.per_edge} == {
        e: (f.frames, f.bytes) for e, f in pred.per_edge.items()}
    assert set(frames) <= set(pred.per_edge)  # nothing over a non-edge

    grades = {g.name: g for g in grade(plan.run_dir)}
    expected = {name: sum(pred.received(p).frames for p in ids)
                for name, ids in (("p2p", set(range(n)) - rust), ("p2p-peer-rs", rust))}
    assert {name: (g.verdict, g.received) for name, g in grades.items()} == {
        name: ("PASS", want) for name, want in expected.items()}, [g.reasons() for g in grades.values()]
    assert list_labelled(runner.client, plan.run_id) == []
