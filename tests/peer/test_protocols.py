"""Each protocol's decisions on fake messages, its parameters, and how they reach the peer."""

import random

import pytest

from generator.spec import PROTOCOL_PARAMS, PROTOCOLS, RunSpec
from peer.config import PeerConfig
from peer.protocols import PROTOCOLS as CLASSES
from peer.protocols import DedupFlood, Gossip, HopLimitedFlood, HopListFlood
from peer.wire import encode_payload, parse_payload


def msg(author, *hops):
    """(author, hops, payload, canonical) as the peer hands them to receive()."""
    hops = [author, *hops]
    payload = encode_payload(author, hops)
    return author, hops, payload, True


def forwarded(payload):
    return parse_payload(payload, 100)[:2]


def test_the_protocol_tables_agree():
    assert PROTOCOLS == tuple(CLASSES) == ("v1", "flood", "gossip", "ttl")
    assert PROTOCOL_PARAMS == {"v1": {}, "flood": {}, "gossip": {"fanout": 2}, "ttl": {"ttl": 3}}


def test_reaches_all():
    assert HopListFlood.reaches_all and DedupFlood.reaches_all and not Gossip.reaches_all
    assert HopLimitedFlood(0, [1], 5, ttl=4).reaches_all
    assert not HopLimitedFlood(0, [1], 5, ttl=3).reaches_all
    assert not Gossip(0, [1, 2], 3, seed=1, fanout=5).reaches_all


@pytest.mark.parametrize("cls", [HopListFlood, DedupFlood, HopLimitedFlood])
def test_author_sends_own_message_to_every_neighbour(cls):
    payload, targets = cls(2, [4, 0, 3], 5).author()
    assert payload == b'{"id":2,"hops":[2]}' and targets == [0, 3, 4]


def test_v1_forwards_every_copy_to_neighbours_not_in_hops():
    p = HopListFlood(3, [0, 1, 2, 4], 5)
    payload, targets = p.receive(*msg(0, 1))
    assert targets == [2, 4] and forwarded(payload) == (0, [0, 1, 3])
    assert p.receive(*msg(0, 2))[1] == [1, 4]  # a second copy is forwarded too
    assert p.receive(*msg(0, 1, 2, 4)) == (b"", [])


def test_non_canonical_payloads_are_re_encoded():
    p = HopListFlood(3, [0, 1, 2], 5)
    payload, targets = p.receive(0, [0, 1], b'{ "id": 0, "hops": [0, 1] }', False)
    assert payload == b'{"id":0,"hops":[0,1,3]}' and targets == [2]


def test_flood_forwards_only_the_first_copy():
    p = DedupFlood(3, [0, 1, 2, 4], 5)
    payload, targets = p.receive(*msg(0, 1))
    assert forwarded(payload) == (0, [0, 1, 3])
    assert targets == [0, 2, 4]  # every neighbour but the sender 1, the author included
    assert p.receive(*msg(0)) == (b"", [])  # the direct copy came second: logged by the peer, not forwarded
    assert p.receive(*msg(0, 2)) == (b"", [])
    assert p.receive(*msg(1))[1] == [0, 2, 4]  # another author's first copy
    assert p.receive(*msg(2, 0, 1))[1] == [0, 2, 4]  # only the sender is skipped, whatever the hop list


def test_flood_sends_to_every_neighbour_but_the_sender():
    for hops in ([1, 2, 3], [0, 3], [2]):
        _, targets = DedupFlood(4, [0, 1, 2, 3], 5).receive(*msg(hops[0], *hops[1:]))
        assert targets == [nb for nb in (0, 1, 2, 3) if nb != hops[-1]]
    assert DedupFlood.accepts_own_id and not HopListFlood.accepts_own_id


def test_ttl_forwards_while_the_hop_list_is_shorter_than_ttl():
    p = HopLimitedFlood(5, [0, 1, 2, 3, 4], 6, ttl=3)
    assert p.receive(*msg(0))[1] == [1, 2, 3, 4]
    payload, targets = p.receive(*msg(0, 1))
    assert targets == [2, 3, 4] and forwarded(payload) == (0, [0, 1, 5])
    assert p.receive(*msg(0, 1, 2)) == (b"", [])  # 3 hops: the message has travelled 3 links
    one = HopLimitedFlood(5, [0, 1], 6, ttl=1)
    assert one.receive(*msg(0)) == (b"", [])
    assert one.author()[1] == [0, 1]


@pytest.mark.parametrize("bad", [0, -1, "2", 1.5, True])
def test_protocol_parameters_are_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integer"):
        HopLimitedFlood(0, [1], 3, ttl=bad)
    with pytest.raises(ValueError, match="positive integer"):
        Gossip(0, [1], 3, seed=1, fanout=bad)


def test_parameters_of_other_protocols_are_ignored():
    HopListFlood(0, [1], 3, fanout=2, ttl=3)
    DedupFlood(0, [1], 3, fanout=2, ttl=3)


def test_gossip_picks_fanout_neighbours_not_in_hops():
    nbrs = list(range(1, 10))
    p = Gossip(0, nbrs, 12, seed=7, fanout=3)
    payload, targets = p.author()
    assert payload == b'{"id":0,"hops":[0]}' and len(targets) == 3 and set(targets) <= set(nbrs)
    for hops in ([1], [2, 5, 3], [11, 4, 6, 8]):
        payload, targets = p.receive(*msg(hops[0], *hops[1:]))
        assert len(targets) == 3 and not set(targets) & set(hops) and targets == sorted(targets)
        assert forwarded(payload) == (hops[0], [*hops, 0])
    few = p.receive(*msg(1, 2, 3, 4, 5, 6, 7))[1]
    assert few == [8, 9]  # fewer candidates than the fanout: all of them
    assert p.receive(*msg(1, 2, 3, 4, 5, 6, 7, 8, 9)) == (b"", [])


def test_gossip_choices_depend_on_seed_peer_and_hops_only():
    nbrs = list(range(1, 12))
    hop_lists = [[a, *random.Random(a).sample(range(12, 30), 3)] for a in range(1, 12)]
    first = Gossip(0, nbrs, 30, seed=5, fanout=2)
    answers = {tuple(h): first.receive(*msg(h[0], *h[1:]))[1] for h in hop_lists}
    second = Gossip(0, nbrs, 30, seed=5, fanout=2)
    for h in reversed(hop_lists):  # another arrival order, repeated copies: the same answers
        assert second.receive(*msg(h[0], *h[1:]))[1] == answers[tuple(h)]
        assert second.receive(*msg(h[0], *h[1:]))[1] == answers[tuple(h)]
    assert len(set(map(tuple, answers.values()))) > 3  # different copies, different choices
    other_seed = Gossip(0, nbrs, 30, seed=6, fanout=2)
    assert any(other_seed.receive(*msg(h[0], *h[1:]))[1] != answers[tuple(h)] for h in hop_lists)


def test_gossip_choices_are_roughly_uniform():
    p = Gossip(0, list(range(1, 6)), 100, seed=1, fanout=1)
    counts = {nb: 0 for nb in range(1, 6)}
    for a in range(6, 100):
        for b in range(6, 100):
            if a != b:
                counts[p.receive(*msg(a, b))[1][0]] += 1
    total = sum(counts.values())
    assert all(abs(c / total - 0.2) < 0.02 for c in counts.values()), counts


def test_gossip_without_seed_still_works():
    p = Gossip(0, [1, 2, 3, 4], 5, fanout=2)
    assert len(p.receive(*msg(1))[1]) == 2


def test_peer_cli_passes_protocol_parameters():
    cfg = PeerConfig.from_argv(["--id", "0", "--n", "3", "--protocol", "gossip", "--seed", "4", "--fanout", "3",
                                "--ttl", "5", "-p", "1=127.0.0.1:1"])
    assert (cfg.protocol, cfg.seed, cfg.protocol_params) == ("gossip", 4, {"fanout": 3, "ttl": 5})
    default = PeerConfig.from_argv(["--id", "0", "--n", "3"])
    # Parameters not given stay out of the config: the protocol takes its own defaults.
    assert default.protocol_params == {}
    assert Gossip(0, [1], 3, **default.protocol_params).fanout == 2
    assert HopLimitedFlood(0, [1], 3, **default.protocol_params).ttl == 3


def test_run_plan_passes_protocol_parameters(tmp_path):
    from testbed.base import prepare_run

    spec = RunSpec.parse("mesh", 4, protocol="gossip", params={"fanout": "3"})
    assert spec.seed is not None and spec.protocol_params() == {"fanout": 3}
    plan = prepare_run(spec, tmp_path, None)
    args = plan.peer_args(plan.peers[0], lambda nb: f"h{nb}:1", "/logs")
    assert args[args.index("--fanout") + 1] == "3" and args[args.index("--seed") + 1] == str(spec.seed)
    ttl = prepare_run(RunSpec.parse("mesh", 4, protocol="ttl"), tmp_path, None)
    targs = ttl.peer_args(ttl.peers[0], lambda nb: f"h{nb}:1", "/logs")
    assert targs[targs.index("--ttl") + 1] == "3" and "--fanout" not in targs
    v1 = prepare_run(RunSpec.parse("mesh", 4), tmp_path, None)
    vargs = v1.peer_args(v1.peers[0], lambda nb: f"h{nb}:1", "/logs")
    assert "--ttl" not in vargs and "--fanout" not in vargs and "--seed" not in vargs
