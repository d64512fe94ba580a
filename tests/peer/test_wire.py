import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.wire import (
    HEADER,
    FrameError,
    decode_handshake,
    encode_frame,
    encode_handshake,
    encode_payload,
    parse_payload,
)


@pytest.mark.parametrize("hops,size", [([1], 23), ([1, 0], 25), ([1, 0, 4], 27), ([1, 0, 4, 3], 29)])
def test_frame_sizes_match_the_original_tool(hops, size):
    frame = encode_frame(encode_payload(hops[0], hops))
    assert len(frame) == size
    assert HEADER.unpack_from(frame)[0] == size - 4


def test_payload_is_compact_json_with_keys_in_order():
    payload = encode_payload(1, [1, 0, 4, 3])
    assert payload == b'{"id":1,"hops":[1,0,4,3]}'
    assert json.loads(payload) == {"id": 1, "hops": [1, 0, 4, 3]}


def test_handshake_is_four_byte_big_endian():
    assert encode_handshake(258) == b"\x00\x00\x01\x02"
    assert decode_handshake(b"\x00\x00\x01\x02") == 258


@given(st.integers(min_value=2, max_value=2000).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), min_size=1, max_size=12, unique=True))))
def test_parse_roundtrip(n_hops):
    n, hops = n_hops
    author, parsed, canonical = parse_payload(encode_payload(hops[0], hops), n)
    assert (author, parsed, canonical) == (hops[0], hops, True)


def test_non_canonical_but_valid_json_is_accepted():
    author, hops, canonical = parse_payload(b'{ "id": 2, "hops": [2, 0] }', 5)
    assert (author, hops, canonical) == (2, [2, 0], False)


@pytest.mark.parametrize("payload,reason", [
    (b"\xff\xfe", "bad_utf8"),
    (b'{"id":1,"hops":[1', "bad_json"),
    (b'[1,2]', "bad_type"),
    (b'{"id":"1","hops":[1]}', "bad_id"),
    (b'{"id":true,"hops":[1]}', "bad_id"),
    (b'{"id":-1,"hops":[1]}', "bad_id"),
    (b'{"id":1,"hops":[]}', "bad_hops"),
    (b'{"id":1,"hops":[1.5]}', "bad_hops"),
    (b'{"id":9,"hops":[9]}', "bad_id"),
    (b'{"id":1,"hops":[1,7]}', "bad_hops"),
    (b'{"id":1,"hops":[0,1]}', "bad_hops"),
    (b'{"id":1,"hops":[1,2,1]}', "bad_hops"),
    (b'{"id":1,"hops":[1],"x":0}', "bad_type"),
])
def test_invalid_messages_are_rejected_with_a_reason(payload, reason):
    with pytest.raises(FrameError) as e:
        parse_payload(payload, 5)
    assert e.value.reason == reason


@given(st.binary(max_size=64))
def test_parser_never_crashes_on_garbage(data):
    try:
        author, hops, _ = parse_payload(data, 10)
    except FrameError:
        return
    assert 0 <= author < 10 and hops[0] == author and len(set(hops)) == len(hops)


HUGE = b"9" * 5000  # beyond Python's int() limit of 4300 digits (a ValueError, not a FrameError)


@pytest.mark.parametrize("payload,reason", [
    (b'{"id":' + HUGE + b',"hops":[1]}', "bad_id"),
    (b'{"id":1,"hops":[1,' + HUGE + b']}', "bad_hops"),
    (b'{"id":1,"hops":[' + HUGE + b',1]}', "bad_hops"),
    (b'{"id": ' + HUGE + b', "hops": [1]}', "bad_id"),
    (b'{"id": 1, "hops": [1, ' + HUGE + b']}', "bad_hops"),
    (b'{"id": 1, "hops": [1, -' + HUGE + b']}', "bad_hops"),
    (b'{"id": 1, "hops": [1, [' + HUGE + b']]}', "bad_hops"),
    (b'{"id":1,"hops":[1],"x":' + HUGE + b'}', "bad_type"),
    (b'{"id":12,"hops":[12]}', "bad_id"),  # more digits than n - 1 = 4
    (b'{"id":1,"hops":[1,10]}', "bad_hops"),
])
def test_ids_longer_than_any_peer_id_are_rejected_before_int(payload, reason):
    with pytest.raises(FrameError) as e:
        parse_payload(payload, 5)
    assert e.value.reason == reason


def test_the_digit_bound_still_accepts_the_largest_id():
    assert parse_payload(b'{"id":999,"hops":[999,0]}', 1000) == (999, [999, 0], True)
    assert parse_payload(b'{"id": 999, "hops": [999, 0]}', 1000) == (999, [999, 0], False)
    assert parse_payload(b'{"id": -0, "hops": [0]}', 1) == (0, [0], False)  # as json.loads reads it
