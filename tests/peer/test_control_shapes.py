"""A peer applies control.json's ``shapes`` (shape faults) to its links: the keys on top of
each link's configured shape, one ``shape`` event per change, bad entries refused whole."""

from __future__ import annotations

import json
import os

from peer.emulation import LinkShape
from tests.peer.support import events, listening_socket, make_peer


def write(path, data, bump: int) -> None:
    path.write_text(json.dumps(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))  # the peer re-reads on a new mtime


def test_shape_changes_apply_on_top_of_each_links_configured_shape(tmp_path):
    control = tmp_path / "control.json"
    write(control, {"blocked": []}, 0)
    peer = make_peer(tmp_path, 0, 3, {1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2)}, listening_socket(),
                     control=control, latency=0.1, link_shapes={2: LinkShape(latency=0.05)})
    peer._control_mtime = -1
    peer._read_control()
    assert 1 in peer._shapers and not peer._lossy
    write(control, {"blocked": [], "shapes": {"0-1": {"loss": 0.5}, "0-2": {"jitter": 0.01}, "3-4": {"loss": 1}}}, 1)
    peer._read_control()
    assert peer._shapers[1].shape == LinkShape(latency=0.1, loss=0.5)
    assert peer._shapers[2].shape == LinkShape(latency=0.05, jitter=0.01)
    assert peer._lossy
    shapes = [(e["nbr"], e["latency"], e["jitter"], e["loss"]) for e in events(tmp_path, 0) if e["ev"] == "shape"]
    assert shapes == [(1, 0.1, 0.0, 0.5), (2, 0.05, 0.01, 0.0)]
    # The same keys again: nothing changes, no event. A bad value: the whole file is refused.
    write(control, {"blocked": [], "shapes": {"0-1": {"loss": 0.5}, "0-2": {"jitter": 0.01}}}, 2)
    peer._read_control()
    write(control, {"blocked": [], "shapes": {"0-1": {"loss": 2}, "0-2": {"jitter": 0}}}, 3)
    peer._read_control()
    assert peer._shapers[1].shape.loss == 0.5 and peer._shapers[2].shape.jitter == 0.01
    recs = events(tmp_path, 0)
    assert sum(e["ev"] == "shape" for e in recs) == 2
    assert [e["reason"] for e in recs if e["ev"] == "error"] == ["bad_control"]
    os.close(peer.cfg.listen_fd)


def test_a_shape_fault_gives_an_unshaped_link_its_emulation(tmp_path):
    control = tmp_path / "control.json"
    write(control, {"blocked": [], "shapes": {"0-1": {"latency": 0.2}}}, 0)
    peer = make_peer(tmp_path, 0, 2, {1: ("127.0.0.1", 1)}, listening_socket(), control=control)
    assert peer._shapers == {}
    peer._control_mtime = -1
    peer._read_control()
    assert peer._shapers[1].shape == LinkShape(latency=0.2) and not peer._lossy
    os.close(peer.cfg.listen_fd)
