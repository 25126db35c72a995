"""peek_route: the hand-read fast path agrees with msgpack on every route encoding."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vector_cases import NOW, read_vector

from protocols import (
    DeadLetterReason,
    DecodeFailure,
    Envelope,
    RouteInfo,
    decode_envelope,
    encode_envelope,
    peek_route,
)
from protocols.events import InputEvent


def _frame(header: bytes, payload: bytes = b"\x80") -> bytes:
    return struct.pack(">2sBBII", b"FA", 1, 0, len(header), len(payload)) + header + payload


def _header(recipient: object, type_name: object, version: object, rest: int = 10) -> bytes:
    return msgpack.packb([recipient, type_name, version, *([None] * rest)])


@pytest.mark.parametrize(
    ("recipient", "type_name", "version"),
    [
        ("a/k", "t", 1),  # fixstr, fixstr, positive fixint
        ("agent/" + "k" * 40, "flink_actors.ChatModelResponseEvent", 127),  # str8, str8
        ("agent/" + "k" * 300, "t" * 200, 128),  # str16 recipient, uint8 version: slow path
        ("topic:" + "x" * 249, "n", 70000),  # str16, uint32
        ("a/ü€", "shop.Bestellung", 2),  # non-ASCII UTF-8
    ],
)
def test_route_encodings(recipient: str, type_name: str, version: int) -> None:
    data = _frame(_header(recipient, type_name, version))
    assert peek_route(data) == RouteInfo(recipient, type_name, version)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (_header("a/k", "t", 0), "type version 0"),
        (_header("a/k", "t", -1), "type version -1"),
        (_header("a/k", "t", True), "must start with [str, str, int]"),
        (_header("a/k", b"t", 1), "must start with [str, str, int]"),
        (_header("no-slash", "t", 1), "malformed agent address"),
        (_header("a/k", "t", 1, rest=9), "13-element array"),
        (_header("a/k", "t", 1, rest=11), "13-element array"),
        (msgpack.packb({"a/k": 1}), "13-element array"),
        (b"\x9d\xa3a/k\xa1t", "not msgpack"),  # the array ends after two elements
        (b"\x9d\xa3a/\xff\xa1t\x01" + b"\xc0" * 10, "not msgpack"),  # invalid UTF-8
    ],
)
def test_bad_routes_are_malformed(header: bytes, reason: str) -> None:
    failure = peek_route(_frame(header))
    assert isinstance(failure, DecodeFailure), failure
    assert failure.reason is DeadLetterReason.MALFORMED and reason in failure.message


def test_route_must_lie_inside_the_header() -> None:
    """A recipient string running past the header length is not read from the payload."""
    header = _header("a/k", "t", 1)
    data = struct.pack(">2sBBII", b"FA", 1, 0, 5, len(header) - 5) + header
    assert isinstance(peek_route(data), DecodeFailure)


def test_rest_of_the_header_is_checked_by_decode_only() -> None:
    """Routing reads the route; a bad element after it is the consumer's dead letter."""
    header = msgpack.packb(["a/k", "flink_actors.InputEvent", 1, b"short", *([None] * 9)])
    data = _frame(header)
    assert peek_route(data) == RouteInfo("a/k", "flink_actors.InputEvent", 1)
    failure = decode_envelope(data, now=NOW)
    assert isinstance(failure, DecodeFailure) and failure.reason is DeadLetterReason.MALFORMED


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    agent_type=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,40}", fullmatch=True),
    key=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=300),
)
def test_peek_agrees_with_decode(agent_type: str, key: str) -> None:
    env = Envelope.wrap(InputEvent({"k": key}), recipient=f"{agent_type}/{key}")
    data = encode_envelope(env)
    decoded = decode_envelope(data)
    assert isinstance(decoded, Envelope)
    assert peek_route(data) == (str(decoded.recipient), decoded.type_name, decoded.type_version)


def test_golden_vectors_route() -> None:
    for name in ("chat_request", "tool_result_to_topic"):
        data = read_vector(name)
        env = decode_envelope(data, now=NOW)
        assert isinstance(env, Envelope)
        assert peek_route(data) == (str(env.recipient), env.type_name, env.type_version)


def test_array16_header_is_read_too() -> None:
    """Writers use a fixarray; a reader also accepts the same 13 elements as an array 16."""
    fixarray = _header("a/k", "t", 3)
    assert fixarray[0] == 0x9D
    data = _frame(b"\xdc\x00\x0d" + fixarray[1:])
    assert peek_route(data) == RouteInfo("a/k", "t", 3)
