"""Fuzzing: random and mutated bytes give envelopes or typed failures, never an exception."""

from __future__ import annotations

import contextlib

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vector_cases import NOW, read_vector

from protocols import (
    DeadLetter,
    DeadLetterReason,
    DecodeFailure,
    Envelope,
    RouteInfo,
    SerializationError,
    decode_envelope,
    encode_envelope,
    peek_route,
)

VALID = [read_vector("chat_request"), read_vector("tool_result_to_topic")]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(data: bytes) -> None:
    result = decode_envelope(data, now=NOW)
    assert isinstance(result, Envelope | DecodeFailure)
    if isinstance(result, DecodeFailure):
        assert isinstance(result.reason, DeadLetterReason) and result.message
        assert DeadLetter.decode(result.to_dead_letter().encode()).reason is result.reason
    else:
        encode_envelope(result)  # whatever decodes, encodes
    lazy = decode_envelope(data, now=NOW, validate=False)
    if isinstance(lazy, Envelope):
        assert isinstance(lazy.try_payload(), object)
    route = peek_route(data)
    assert isinstance(route, RouteInfo | DecodeFailure)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_behind_a_valid_fixed_header(tail: bytes) -> None:
    _check(b"FA\x01\x00" + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if not data:
            break
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_valid_envelopes(data: bytes) -> None:
    _check(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.lists(json_values, min_size=0, max_size=14), json_values)
def test_well_framed_random_header_and_payload(header: list[object], payload: object) -> None:
    head = msgpack.packb(header)
    body = msgpack.packb(payload)
    frame = b"FA\x01\x00" + len(head).to_bytes(4, "big") + len(body).to_bytes(4, "big")
    _check(frame + head + body)


@FUZZ
@given(st.binary(max_size=200))
def test_dead_letter_decode_raises_only_serialization_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        DeadLetter.decode(b"FD\x01\x00" + data)
