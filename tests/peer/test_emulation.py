import pytest

from peer.emulation import LinkShape, Shaper, is_lost


def test_shape_parsing_on_top_of_a_base():
    base = LinkShape(latency=0.01, loss=0.1)
    assert LinkShape.parse("latency=0.05,bandwidth=1000", base) == LinkShape(0.05, 0.0, 0.1, 1000.0)
    with pytest.raises(ValueError):
        LinkShape.parse("delay=1")
    with pytest.raises(ValueError):
        LinkShape(loss=1.5)


def test_loss_is_decided_by_content_and_seed_not_by_order():
    frames = [b'{"id":%d,"hops":[%d,%d]}' % (a, a, b) for a in range(50) for b in range(50)]
    first = [f for f in frames if is_lost(7, 1, 2, f, 0.1)]
    again = [f for f in reversed(frames) if is_lost(7, 1, 2, f, 0.1)]
    assert sorted(first) == sorted(again)
    assert 0.07 < len(first) / len(frames) < 0.13
    assert first != [f for f in frames if is_lost(8, 1, 2, f, 0.1)]  # another seed drops others
    assert not any(is_lost(7, 1, 2, f, 0.0) for f in frames)


def test_delays_keep_fifo_and_bandwidth_serialises():
    s = Shaper(LinkShape(latency=0.1, jitter=0.09), seed=3, sender=0, receiver=1)
    times = [s.release_time(now=i * 0.001, nbytes=10) for i in range(200)]
    assert times == sorted(times) and min(times) >= 0.01
    b = Shaper(LinkShape(bandwidth=1000), seed=None, sender=0, receiver=1)
    assert [b.release_time(0.0, 500) for _ in range(3)] == [0.5, 1.0, 1.5]
