"""The quiescence and runaway stops of other implementations' peers (testbed/quiescence.py), on a
clock the test sets: no processes, no sleeps."""

from generator.adapter import Adapter
from testbed.quiescence import IDLE_MARGIN, RUNAWAY_FACTOR, RUNAWAY_SLACK, QuietWatch

QUIET = Adapter(command=("x",), exit_mode="quiescence", quiescence=2.0, stop_grace=1.0)
SELF = Adapter(command=("x",), exit_mode="self", quiescence=2.0, stop_grace=1.0)


def grow(tmp_path, p, data=b'{"id":0,"hops":[0]}\n'):
    with open(tmp_path / f"{p}.txt", "ab") as f:
        f.write(data)


def test_a_quiescence_peer_is_signalled_after_the_silence_then_killed_after_the_grace(tmp_path):
    w = QuietWatch(tmp_path, {1: QUIET})
    w.restart_clock(100.0)
    assert w.due(101.0, {1}, ours_done=False) == ([], [])
    grow(tmp_path, 1)
    assert w.due(101.5, {1}, ours_done=False) == ([], [])  # a new line: the silence starts again
    assert w.due(103.0, {1}, ours_done=False) == ([], [])
    assert w.due(103.5, {1}, ours_done=False) == ([(1, "SIGTERM")], [])
    assert w.due(104.0, {1}, ours_done=False) == ([], [])
    assert w.due(104.5, {1}, ours_done=False) == ([], [1])  # still alive after the grace
    assert w.stopped == {1} and w.runaways == set()


def test_a_self_exiting_peer_is_only_stopped_once_ours_are_done_and_every_log_is_quiet(tmp_path):
    w = QuietWatch(tmp_path, {1: SELF, 2: SELF})
    w.restart_clock(100.0)
    assert w.due(110.0, {1, 2}, ours_done=False) == ([], [])
    grow(tmp_path, 2)
    assert w.due(111.0, {1, 2}, ours_done=True) == ([], [])  # peer 2's log just grew
    assert w.due(113.0, {1, 2}, ours_done=True) == ([(1, "SIGTERM"), (2, "SIGTERM")], [])


def test_a_self_exiting_peer_gets_the_run_idle_and_a_margin_before_the_backstop(tmp_path):
    """idle 5 s against quiescence 2 s: the peer's own idle exit comes first, not the backstop."""
    w = QuietWatch(tmp_path, {1: SELF}, idle=5.0)
    w.restart_clock(100.0)
    assert w.due(100.0, {1}, ours_done=True) == ([], [])  # its log's last change: now
    assert w.due(100.0 + 5.0, {1}, ours_done=True) == ([], [])  # its own idle exit is due only now
    assert w.due(100.0 + 5.0 + IDLE_MARGIN - 0.1, {1}, ours_done=True) == ([], [])
    assert w.due(100.0 + 5.0 + IDLE_MARGIN, {1}, ours_done=True) == ([(1, "SIGTERM")], [])
    q = QuietWatch(tmp_path, {2: QUIET}, idle=5.0)  # a quiescence-mode peer keeps its adapter's window
    q.restart_clock(100.0)
    assert q.due(100.0, {2}, ours_done=False) == ([], [])
    assert q.due(102.0, {2}, ours_done=False) == ([(2, "SIGTERM")], [])


def test_a_peer_whose_logs_outgrow_its_prediction_is_stopped_as_a_runaway(tmp_path):
    w = QuietWatch(tmp_path, {1: SELF, 2: SELF}, {1: 100, 2: 100})
    w.restart_clock(100.0)
    grow(tmp_path, 1, b"x" * (RUNAWAY_FACTOR * 100 + RUNAWAY_SLACK))
    assert w.due(100.1, {1, 2}, ours_done=False) == ([], [])  # at the budget: not past it
    grow(tmp_path, 1, b"\n")
    assert w.due(100.2, {1, 2}, ours_done=False) == ([(1, "SIGTERM")], [])
    assert w.runaways == {1} and w.stopped == set()
