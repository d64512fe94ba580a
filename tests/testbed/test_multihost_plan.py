"""The multi-host harness without Docker: names, socket paths, the image copy command, refusals."""

from __future__ import annotations

import subprocess

import pytest

from testbed import multihost


def test_a_cluster_plan_names_every_node_and_a_socket_short_enough_for_unix():
    c = multihost.plan_cluster("mh-0a1b2c", 3)
    assert [n.name for n in c.nodes] == ["mh-0a1b2c-node-1", "mh-0a1b2c-node-2", "mh-0a1b2c-node-3"]
    assert c.manager is c.nodes[0] and c.network == "mh-0a1b2c-net"
    assert c.env() == {"DOCKER_HOST": f"unix://{multihost.STATE_ROOT}/mh-0a1b2c/node-1/docker.sock"}
    assert all(len(str(n.socket).encode()) < 108 for n in c.nodes)  # sun_path holds 108 bytes with its NUL
    assert c.node("mh-0a1b2c-node-2") is c.nodes[1]
    with pytest.raises(multihost.HarnessError, match="no node"):
        c.node("elsewhere")


def test_new_cluster_ids_differ_and_are_ours():
    ids = {multihost.new_cluster_id() for _ in range(20)}
    assert len(ids) == 20 and all(i.startswith("mh-") for i in ids)


def test_down_refuses_an_id_the_harness_did_not_make():
    with pytest.raises(multihost.HarnessError, match="not a cluster id"):
        multihost.down("cycle-5-20260101-000000-abcd", host=object())


def test_the_image_goes_to_each_named_node_by_save_and_load():
    c = multihost.plan_cluster("mh-0a1b2c", 3)
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    multihost.copy_image(c, "p2p-peer:latest", nodes=c.nodes[1:], run=run)
    assert [cmd[-1] for cmd in calls] == [
        "docker save p2p-peer:latest | docker exec -i mh-0a1b2c-node-2 docker load",
        "docker save p2p-peer:latest | docker exec -i mh-0a1b2c-node-3 docker load",
    ]
    assert all(cmd[:3] == ["bash", "-o", "pipefail"] for cmd in calls)  # a failed save is a failure


def test_a_failed_copy_names_the_command():
    c = multihost.plan_cluster("mh-0a1b2c", 1)

    def run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "Error response from daemon: No such container")

    with pytest.raises(multihost.HarnessError, match="docker exec -i mh-0a1b2c-node-1 docker load.*No such container"):
        multihost.copy_image(c, run=run)


def test_the_cli_has_help_for_every_command(capsys):
    for argv in (["--help"], ["up", "--help"], ["down", "--help"], ["status", "--help"]):
        with pytest.raises(SystemExit) as e:
            multihost.main(argv)
        assert e.value.code == 0
    assert "DOCKER_HOST" in capsys.readouterr().out
