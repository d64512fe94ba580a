"""The live page and /metrics (testbed/live.py, analysis/live.py): a real local run watched over HTTP."""

from __future__ import annotations

import io
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from analysis.live import LiveSetup, LiveState
from generator.errors import P2PError
from generator.predict import predict
from generator.spec import RunSpec
from testbed.base import PeerPlan, Progress, prepare_run
from testbed.live import LiveServer, serve_run
from testbed.local import LocalRunner

ROOT = Path(__file__).resolve().parents[2]
FINAL = "shows the final state"


class Cli:
    """``p2p ...`` as a child process whose stderr lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", *args], cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            self._new.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The first stderr line holding ``text`` (waiting for it)."""
        end = time.monotonic() + timeout
        for line in self.lines:
            if text in line:
                return line
        while time.monotonic() < end:
            try:
                line = self._new.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout} s; stderr: {''.join(self.lines)[-2000:]}")

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def url(self) -> str:
        return self.wait_for("live: http://").split()[1]

    def stop(self) -> int:
        """SIGTERM (what Ctrl-C does on a terminal) and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def state(url: str) -> dict:
    return json.loads(get(url + "state.json"))


def metrics(url: str) -> dict[str, dict[tuple, float]]:
    """Samples by name, each {sorted label items: value}."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(get(url + "metrics").decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A local mesh-7 with --live on port 0, polled while it runs: (observations, final url, run dir, exit)."""
    out = tmp_path_factory.mktemp("runs")
    # Emulated bandwidth stretches the flood to a few seconds, so polls see it grow.
    cli = Cli("run", "-t", "mesh", "-n", "7", "--backend", "local", "--bandwidth", "5000", "--no-plots",
              "--live", "0", "--out", str(out))
    try:
        url = cli.url()
        seen: list[tuple[dict, dict]] = []
        while not cli.has(FINAL) and cli.proc.poll() is None:
            seen.append((state(url), metrics(url)))
            time.sleep(0.1)  # a poll interval, as the page's (no condition to wait on)
        cli.wait_for(FINAL)
        final = (state(url), metrics(url), get(url), get(url + "setup.json"))
    finally:
        code = cli.stop()
    return seen, final, url, (out / "latest").resolve(), code


def test_the_page_grows_with_the_run_and_ends_at_the_summary(live_run):
    seen, (final, final_metrics, page, _), url, run_dir, code = live_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert code == 0 and summary["verdict"] == "OK"
    assert url.startswith("http://127.0.0.1:")
    totals = [s["deliveries"] for s, _ in seen] + [final["deliveries"]]
    assert totals == sorted(totals), "deliveries went back"
    assert any(0 < t < summary["deliveries"] for t in totals), f"no intermediate value among {totals}"
    for p in range(7):
        per_peer = [s["peers"][p]["delivered"] for s, _ in seen] + [final["peers"][p]["delivered"]]
        assert per_peer == sorted(per_peer)
    scraped = [sum(m["p2p_deliveries_total"].values()) for _, m in seen if "p2p_deliveries_total" in m]
    assert scraped == sorted(scraped) and scraped
    # The end: the page's numbers are summary.json's.
    assert (final["deliveries"], final["bytes"], final["expected"]) == (
        summary["deliveries"], summary["bytes"], summary["expected_deliveries"])
    assert final["ended"] and final["states"] == {"done": 7}
    assert [(r["id"], r["delivered"], r["expected"]) for r in final["peers"]] == [
        (r["id"], r["received"], r["expected_received"]) for r in summary["peers"]]
    assert {(e["src"], e["dst"]): (e["frames"], e["bytes"]) for e in final["links"]} == {
        (e["src"], e["dst"]): (e["frames"], e["bytes"]) for e in summary["edges"]}
    assert b"<svg" in page and b"http" not in page.split(b"<body>", 1)[1].replace(b"http://www.w3.org", b"")


def test_metrics_end_at_the_summary(live_run):
    _, (_, m, _, _), _, run_dir, _ = live_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sum(m["p2p_deliveries_total"].values()) == summary["deliveries"]
    assert m["p2p_deliveries_total"] == {(("peer", str(r["id"])),): r["received"] for r in summary["peers"]}
    assert m["p2p_deliveries_predicted"] == {(("peer", str(r["id"])),): r["expected_received"]
                                             for r in summary["peers"]}
    assert m["p2p_predicted_deliveries"] == {(): summary["expected_deliveries"]}
    assert m["p2p_predicted_bytes"] == {(): summary["expected_bytes"]}
    assert sum(m["p2p_link_bytes_total"].values()) == summary["bytes"]
    assert m["p2p_link_frames_total"] == {(("dst", str(e["dst"])), ("src", str(e["src"]))): e["frames"]
                                          for e in summary["edges"]}
    assert m["p2p_peers"][(("state", "done"),)] == 7
    assert "p2p_errors_total" not in m and "p2p_faults_fired_total" not in m  # none in this run


def test_watch_serves_a_finished_run(live_run):
    _, (final, _, _, setup), _, run_dir, _ = live_run
    cli = Cli("watch", str(run_dir), "--port", "0")
    try:
        url = cli.url()
        assert url.startswith("http://127.0.0.1:")
        watched = state(url)
        assert watched == final
        assert json.loads(get(url + "setup.json")) == json.loads(setup)
    finally:
        assert cli.stop() == 0


def test_the_server_binds_loopback_only(tmp_path):
    with LiveServer(LiveState(_setup(tmp_path)), 0) as live:
        host, port = live.address
        assert host == "127.0.0.1"
        assert state(live.url)["deliveries"] == 0
        other = _non_loopback_address()
        if other is not None:
            with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
                pass
        with pytest.raises(urllib.error.HTTPError):
            get(live.url + "nothing")


def test_a_taken_port_is_a_user_error(tmp_path):
    with LiveServer(LiveState(_setup(tmp_path)), 0) as live:
        port = live.address[1]
        with pytest.raises(P2PError, match=f"cannot serve the live page on 127.0.0.1:{port}"):
            LiveServer(LiveState(_setup(tmp_path)), port)


def test_run_live_on_a_taken_port_starts_nothing(tmp_path):
    with LiveServer(None, 0) as taken:
        with pytest.raises(urllib.error.HTTPError, match="503"):
            get(taken.url + "state.json")  # bound, no run shown yet
        r = subprocess.run([sys.executable, "-m", "testbed.cli", "run", "-t", "mesh", "-n", "3", "--backend", "local",
                            "--live", str(taken.address[1]), "--out", str(tmp_path / "runs")],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"cannot serve the live page on 127.0.0.1:{taken.address[1]}" in r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_watch_without_a_run_directory_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "watch", str(tmp_path / "nope"), "--port", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "p2p: error: no run directory" in r.stderr and "Traceback" not in r.stderr


def test_progress_says_deliveries_of_expected_and_the_rate():
    assert Progress.deliveries(12_345, 986_400, 2.0) == "12,345/986,400 deliveries, 6,172/s"
    assert Progress.deliveries(10, None, 0.0) == "10 deliveries, 0/s"


def test_a_local_run_without_a_terminal_prints_deliveries_of_expected_every_few_seconds(tmp_path):
    out = io.StringIO()  # not a tty: one line per update, at most every 5 s
    progress = Progress(stream=out)
    assert not progress.tty and progress.interval == 5.0
    spec = RunSpec.parse("mesh", 5)
    plan = prepare_run(spec, tmp_path, predict(spec.graph(), "mesh"))
    LocalRunner().run(plan, Progress(stream=out, interval=0.01))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("local mesh-5:")]
    assert lines and all(re.search(r", [\d,]+/320 deliveries, [\d,]+/s, [\d.]+ s$", line) for line in lines), lines


def test_the_plan_knows_the_expected_total(tmp_path):
    spec = RunSpec.parse("mesh", 4)
    plan = prepare_run(spec, tmp_path, predict(spec.graph(), "mesh"))
    assert plan.expected_deliveries == 4 * 15
    unknown = prepare_run(spec, tmp_path, None, run_id="other")
    assert unknown.expected_deliveries is None
    assert isinstance(unknown.peers[0], PeerPlan)


def _setup(tmp_path: Path) -> LiveSetup:
    spec = RunSpec.parse("cycle", 3)
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    return LiveSetup.of(run_dir, spec, predict(spec.graph(), "cycle"))


def _non_loopback_address() -> str | None:
    """This host's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_the_state_follows_the_files_line_by_line(tmp_path):
    setup = _setup(tmp_path)
    logs = setup.run_dir / "logs"
    live = LiveState(setup, min_interval=0)

    def append(name: str, text: str) -> None:
        with open(logs / name, "a") as f:
            f.write(text)

    assert [r["state"] for r in live.snapshot()["peers"]] == ["starting"] * 3
    append("0.events.jsonl", '{"t":1.0,"peer":0,"ev":"start"}\n{"t":1.1,"peer":0,"ev":"link_up","nbr":1}\n')
    append("1.events.jsonl", '{"t":1.0,"peer":1,"ev":"start"}\n'
                             '{"t":1.2,"peer":1,"ev":"progress","recv":1,"sent":2,"in":{"0":[1,23]}}\n')
    append("1.txt", '{"id":0,"hops":[0]}\n{"id":2,"hops":[2,0]}\n{"id":2,"hops"')  # the last line still open
    snap = live.snapshot()
    assert [r["state"] for r in snap["peers"]] == ["linked", "flooding", "starting"]
    # While the run goes on: the peers' own progress records, not their message logs.
    assert snap["peers"][1]["delivered"] == 1 and snap["peers"][1]["sent"] == 2
    assert {(e["src"], e["dst"]): (e["frames"], e["bytes"]) for e in snap["links"] if e["frames"]} == {(0, 1): (1, 23)}
    append("1.txt", ':[2]}\n')
    append("2.events.jsonl", '{"t":1.3,"peer":2,"ev":"error","nbr":0,"reason":"bad_frame","detail":"","count":3}\n')
    append("0.events.jsonl", '{"t":1.5,"peer":0,"ev":"summary","recv":0,"sent":0,"exit_reason":"expected"}\n')
    (setup.run_dir / "faults.jsonl").write_text(
        '{"t":1.0,"clock":"start"}\n{"t":1.4,"fault":"kill:1@0.4","action":"kill","peers":[1],"edges":[]}\n')
    snap = live.snapshot()
    assert [r["state"] for r in snap["peers"]] == ["done", "failed", "starting"]
    assert snap["deliveries"] == 1 and snap["errors"] == {"bad_frame": 3}
    assert [f["fault"] for f in snap["faults"]] == ["kill:1@0.4"]
    assert snap["elapsed"] is not None and not snap["ended"]
    # Once every peer is done or failed, the message logs are read: exactly what p2p analyse counts.
    append("2.events.jsonl", '{"t":1.6,"peer":2,"ev":"summary","recv":0,"sent":0,"exit_reason":"expected"}\n')
    snap = live.snapshot()
    assert snap["ended"] and snap["deliveries"] == 3 and snap["peers"][1]["delivered"] == 3
    assert {(e["src"], e["dst"]): (e["frames"], e["bytes"]) for e in snap["links"] if e["frames"]} == {
        (0, 1): (2, 19 + 4 + 21 + 4), (2, 1): (1, 19 + 4)}


def test_senders_of_many_digits_and_lines_that_are_no_message(tmp_path):
    spec = RunSpec.parse("cycle", 12)
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    live = LiveState(LiveSetup.of(run_dir, spec, None), min_interval=0)
    lines = ['{"id":10,"hops":[10]}', '{"id":9,"hops":[9,10]}', '{"id":1,"hops":[1,0]}', "not a message]}",
             '{"id":3,"hops":[3,12]}', "}", ""]
    (run_dir / "logs" / "11.txt").write_text("\n".join(lines) + "\n")
    for p in range(12):  # every peer ended: the message logs are read
        (run_dir / "logs" / f"{p}.events.jsonl").write_text(
            f'{{"t":1.0,"peer":{p},"ev":"summary","recv":0,"sent":0,"exit_reason":"expected"}}\n')
    snap = live.snapshot()
    assert snap["ended"]
    assert snap["peers"][11]["delivered"] == 3  # the lines that are messages from a peer
    assert {(e["src"], e["dst"]): (e["frames"], e["bytes"]) for e in snap["links"] if e["frames"]} == {
        (10, 11): (2, len(lines[0]) + len(lines[1]) + 8), (0, 11): (1, len(lines[2]) + 4)}
    assert snap["expected"] is None and snap["peers"][0]["expected"] is None


def test_a_fault_run_shows_the_fault_the_killed_peer_and_the_summary(tmp_path):
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "run", "-t", "mesh", "-n", "6", "--backend", "local",
                        "--fault", "kill:3@deliveries=500", "--no-plots", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    run_dir = (tmp_path / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    live = serve_run(run_dir, 0)
    try:
        s, m = state(live.url), metrics(live.url)
    finally:
        live.stop()
    assert [f["fault"] for f in s["faults"]] == ["kill:3@deliveries=500"]
    assert m["p2p_faults_fired_total"] == {(("action", "kill"),): 1}
    assert s["peers"][3]["state"] == "failed" and s["ended"]
    assert (s["deliveries"], s["bytes"]) == (summary["deliveries"], summary["bytes"])
    assert not s["exact"] and s["expected"] == summary["expected_deliveries"]
    assert m["p2p_run_info"][next(iter(m["p2p_run_info"]))] == 1
    assert dict(next(iter(m["p2p_run_info"])))["prediction"] == "upper_bound"
