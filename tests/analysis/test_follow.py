"""analysis/follow.py: the logs read while they grow (whole lines only), and peer/logfiles.py's names."""

from __future__ import annotations

import json
import os

from analysis.follow import PROGRESS_TAIL, DeliveryCounter, Follow, ListenWatch, read_progress
from peer.logfiles import (
    EVENTS,
    MESSAGES,
    STDERR,
    TRAFFIC,
    events_file,
    log_name,
    messages_file,
    parse_log_name,
    stderr_file,
    traffic_file,
    traffic_tmp_file,
)

# ---- the primitive: whole lines appended since an offset ----------------------------------


def test_a_file_that_appears_late_reads_as_empty_until_then(tmp_path):
    f = Follow(tmp_path / "0.txt")
    assert f.read() == b"" and f.offset == 0
    (tmp_path / "0.txt").write_bytes(b"a\nb\n")
    assert f.read() == b"a\nb\n" and f.offset == 4


def test_a_line_still_being_written_is_read_next_time(tmp_path):
    path = tmp_path / "0.txt"
    path.write_bytes(b"one\ntw")
    f = Follow(path)
    assert f.read() == b"one\n" and f.offset == 4
    assert f.read() == b""  # still open
    with open(path, "ab") as out:
        out.write(b"o\nthr")
    assert f.read() == b"two\n" and f.offset == 8
    with open(path, "ab") as out:
        out.write(b"ee\n")
    assert f.read() == b"three\n" and f.read() == b""


def test_growth_between_reads_is_read_once_in_whole_line_blocks(tmp_path):
    path = tmp_path / "0.txt"
    lines = [b"%d\n" % i * (i % 7 + 1) for i in range(500)]
    f = Follow(path, chunk=64)  # many blocks, most cut inside a line
    got = []
    for k in range(0, 500, 100):
        with open(path, "ab") as out:
            out.write(b"".join(lines[k : k + 100]))
        blocks = list(f.blocks())
        assert all(b.endswith(b"\n") for b in blocks)
        got.append(b"".join(blocks))
    assert got == [b"".join(lines[k : k + 100]) for k in range(0, 500, 100)]
    assert f.offset == path.stat().st_size


def test_chunks_hand_out_whole_lines_without_cutting_the_read(tmp_path):
    path = tmp_path / "0.txt"
    path.write_bytes(b"ab\ncd\nef")
    pairs = list(Follow(path, chunk=5).chunks())
    assert [data[:end] for data, end in pairs] == [b"ab\n", b"cd\n"]
    assert all(b"\n" not in data[end:] for data, end in pairs)


def test_a_line_longer_than_a_read_is_read_whole(tmp_path):
    path = tmp_path / "0.txt"
    long = b"x" * 1000 + b"\n"
    path.write_bytes(b"a\n" + long + b"b\n" + b"y" * 300)
    f = Follow(path, chunk=16)
    assert f.read() == b"a\n" + long + b"b\n"
    with open(path, "ab") as out:
        out.write(b"\n")
    assert f.read() == b"y" * 300 + b"\n"


def test_a_restarted_writer_appends_and_the_offset_stays_valid(tmp_path):
    path = tmp_path / "0.txt"
    f = Follow(path)
    for incarnation in range(3):  # each opens the log with O_APPEND, as a restarted peer does
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, b"run %d\n" % incarnation)
        os.close(fd)
        assert f.read() == b"run %d\n" % incarnation
    assert f.offset == path.stat().st_size


def test_a_start_offset_reads_from_there(tmp_path):
    path = tmp_path / "0.txt"
    path.write_bytes(b"first\nsecond\n")
    assert Follow(path, 6).read() == b"second\n"
    assert Follow(path, 3).read() == b"st\nsecond\n"  # a cut line is its caller's to skip


# ---- counting deliveries, waiting for listen events, progress -----------------------------


def test_delivery_counter_reads_only_new_bytes_and_counts_complete_lines(tmp_path):
    counter = DeliveryCounter(tmp_path, [0, 1, 2])
    assert counter.count() == 0  # no log yet
    (tmp_path / "0.txt").write_bytes(b'{"id":1,"hops":[1]}\n{"id":2,"hops":[2]}\n{"id":3,')
    assert counter.count() == 2  # a torn last line counts once it is complete
    with open(tmp_path / "0.txt", "ab") as f:
        f.write(b'"hops":[3]}\n')
    (tmp_path / "2.txt").write_bytes(b"x\n" * 1000)
    assert counter.count() == 1003
    assert counter.bytes_read == (tmp_path / "0.txt").stat().st_size + 2000
    assert counter.count() == 1003 and counter.lines == 1003
    big = b"y" * 100 + b"\n"
    with open(tmp_path / "1.txt", "ab") as f:
        f.write(big * ((DeliveryCounter.CHUNK // len(big)) * 3))  # more than one read's worth
    assert counter.count() == 1003 + (DeliveryCounter.CHUNK // len(big)) * 3


def test_listen_watch_waits_for_whole_listen_lines(tmp_path):
    watch = ListenWatch(tmp_path, [0, 1])
    assert watch.waiting() == [0, 1]
    (tmp_path / "0.events.jsonl").write_bytes(b'{"t":1.0,"peer":0,"ev":"start"}\n{"t":1.1,"peer":0,"ev":"lis')
    assert watch.waiting() == [0, 1]
    with open(tmp_path / "0.events.jsonl", "ab") as f:
        f.write(b'ten","addr":"127.0.0.1:1"}\n')
    (tmp_path / "1.events.jsonl").write_bytes(b'{"t": 1.2, "peer": 1, "ev": "listen", "addr": "x"}\n')
    assert watch.waiting() == []


def test_listen_watch_forgets_peers_that_will_never_listen(tmp_path):
    watch = ListenWatch(tmp_path, [0, 1, 2])
    watch.forget([1, 5])
    assert watch.waiting() == [0, 2]


def _events(tmp_path, peer: int, records: list[dict], tail: bytes = b"") -> None:
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    events_file(tmp_path, peer).write_bytes(text + tail)


def test_read_progress_takes_each_peers_last_count(tmp_path):
    start = {"t": 1.0, "peer": 0, "ev": "start"}
    padding = [{"t": 1.0 + i / 1000, "peer": 0, "ev": "note", "text": "z" * 40} for i in range(200)]
    _events(tmp_path, 0, [start, {"t": 1.1, "ev": "progress", "recv": 3, "sent": 1}, *padding,
                          {"t": 1.2, "ev": "progress", "recv": 7, "sent": 2}])
    _events(tmp_path, 1, [start, {"t": 1.3, "ev": "summary", "recv": 9, "sent": 9}])
    _events(tmp_path, 2, [start, {"t": 1.1, "ev": "progress", "recv": 4, "sent": 1}],
            tail=b'{"t":1.4,"ev":"summary","recv":50')  # still being written: not counted
    assert events_file(tmp_path, 0).stat().st_size > PROGRESS_TAIL  # the tail starts inside a line
    assert read_progress(tmp_path, 4) == (1, 7 + 9 + 4)  # peer 3 has no log yet


def test_read_progress_sees_nothing_beyond_the_tail(tmp_path):
    padding = [{"t": 1.0, "peer": 0, "ev": "note", "text": "z" * 40} for _ in range(200)]
    _events(tmp_path, 0, [{"t": 1.1, "ev": "progress", "recv": 3, "sent": 1}, *padding])
    assert read_progress(tmp_path, 1) == (0, 0)


# ---- the file names ---------------------------------------------------------------------


def test_log_file_names_are_defined_once():
    assert [log_name(3, k) for k in (MESSAGES, TRAFFIC, EVENTS, STDERR)] == [
        "3.txt", "3.traffic.txt", "3.events.jsonl", "3.stderr.txt"]
    assert [f("/r/logs", 12).as_posix() for f in (messages_file, traffic_file, events_file, stderr_file)] == [
        "/r/logs/12.txt", "/r/logs/12.traffic.txt", "/r/logs/12.events.jsonl", "/r/logs/12.stderr.txt"]
    assert traffic_tmp_file("/r/logs", 12).name == ".12.traffic.txt.tmp"
    assert parse_log_name(traffic_tmp_file("/r", 12).name) is None


def test_parse_log_name_knows_only_peer_log_files():
    assert parse_log_name("3.txt") == (3, MESSAGES)
    assert parse_log_name("0.traffic.txt") == (0, TRAFFIC)
    assert parse_log_name("17.events.jsonl") == (17, EVENTS)
    assert parse_log_name("4.stderr.txt") == (4, STDERR)
    for name in ("03.txt", "x.txt", "3.json", "3.txt\n", "3", "-1.txt", "3.events.jsonl.tmp", "spec.json"):
        assert parse_log_name(name) is None, name
