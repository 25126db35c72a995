"""Wire format: golden vectors byte-exact, the Kafka layout, every typed decode failure."""

from __future__ import annotations

import os
import struct

import msgpack
import pytest
from vector_cases import ENVELOPES, NOW, VECTORS, dead_letter, read_vector, to_hex

from protocols import (
    DeadLetter,
    DeadLetterReason,
    DecodeFailure,
    Envelope,
    MessageRegistry,
    RouteInfo,
    SerializationError,
    decode_envelope,
    encode_envelope,
    peek_route,
    route_from_kafka,
    to_kafka_record,
)
from protocols.events import ChatModelEvent

REGEN = os.environ.get("FLINK_ACTORS_REGEN_VECTORS") == "1"


@pytest.fixture(scope="module", autouse=True)
def _regenerate() -> None:
    if REGEN:
        VECTORS.mkdir(exist_ok=True)
        for name, build in ENVELOPES.items():
            (VECTORS / f"{name}.hex").write_text(to_hex(encode_envelope(build())))
        (VECTORS / "dead_letter.hex").write_text(to_hex(dead_letter().encode()))


def _decoded(data: bytes, **kwargs: object) -> Envelope:
    result = decode_envelope(data, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Envelope), result
    return result


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_golden_vector_decodes_and_reencodes_byte_exactly(name: str) -> None:
    data = read_vector(name)
    expected = ENVELOPES[name]()
    assert encode_envelope(expected) == data
    env = _decoded(data)
    assert env == expected
    assert env.payload == expected.payload
    assert encode_envelope(env) == data  # after the payload was read and re-dumped
    lazy = _decoded(data, validate=False)
    assert encode_envelope(lazy) == data  # unread payload: the received bytes go back out


def test_golden_vector_fields() -> None:
    env = _decoded(read_vector("chat_request"))
    assert str(env.recipient) == "support/customer-84721"
    assert str(env.sender) == "router/eu-1"
    assert str(env.message_id) == "01936f3e-5a00-7abc-8def-0123456789ab"
    assert env.attempt == 2 and env.headers == {"tenant": "acme"}
    assert env.deadline == 4102444800.0 and env.created_at == 1767225600.25
    assert isinstance(env.payload, ChatModelEvent) and env.payload.max_iterations == 3


def test_golden_dead_letter() -> None:
    data = read_vector("dead_letter")
    assert dead_letter().encode() == data
    assert DeadLetter.decode(data) == dead_letter()


def test_fixed_header_layout() -> None:
    data = read_vector("tool_result_to_topic")
    magic, version, flags, h_len, p_len = struct.unpack(">2sBBII", data[:12])
    assert (magic, version, flags) == (b"FA", 1, 0)
    assert 12 + h_len + p_len == len(data)
    header = msgpack.unpackb(data[12 : 12 + h_len])
    assert header[:3] == ["topic:tool-results", "flink_actors.ToolResultEvent", 1]
    assert header[4:9] == [None, None, None, None, None]
    payload = msgpack.unpackb(data[12 + h_len :])
    # Fields equal to their default (is_error=False) are left out; the reader fills them in.
    assert payload == {"tool_name": "search", "result": {"hits": [1, 2]}, "call_id": "c1"}


def test_peek_route_reads_without_the_payload() -> None:
    data = read_vector("chat_request")
    route = peek_route(data)
    assert route == RouteInfo("support/customer-84721", "flink_actors.ChatModelEvent", 1)
    assert isinstance(route, RouteInfo) and route.address.key == "customer-84721"
    # The payload is not read: garbage there does not matter to routing.
    corrupt = data[:-5] + b"\xc1\xc1\xc1\xc1\xc1"
    assert peek_route(corrupt) == route
    assert decode_envelope(corrupt, now=NOW).reason is DeadLetterReason.MALFORMED  # type: ignore[union-attr]


def test_kafka_record_layout() -> None:
    env = ENVELOPES["chat_request"]()
    key, value, headers = to_kafka_record(env)
    assert key == b"support/customer-84721"
    assert value == read_vector("chat_request")
    assert dict(headers) == {
        "fa.type": b"flink_actors.ChatModelEvent",
        "fa.version": b"1",
        "fa.format": b"1",
        "fa.message_id": b"01936f3e-5a00-7abc-8def-0123456789ab",
        "traceparent": b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": b"vendor=abc",
    }
    assert route_from_kafka(key, headers) == peek_route(value)
    missing = route_from_kafka(None, headers)
    assert isinstance(missing, DecodeFailure) and missing.reason is DeadLetterReason.MALFORMED


def test_int_timestamps_from_other_writers_decode_as_floats() -> None:
    data = read_vector("chat_request")
    h_len = struct.unpack_from(">I", data, 4)[0]
    header = msgpack.unpackb(data[12 : 12 + h_len])
    header[9], header[10] = 1767225600, 4102444800  # the format allows any int there
    env = _decoded(_with_header(data, header))
    assert type(env.created_at) is float and env.created_at == 1767225600.0
    assert type(env.deadline) is float and env.deadline == 4102444800.0


def test_decoded_envelopes_share_no_mutable_state() -> None:
    data = read_vector("chat_request")
    first, second = _decoded(data), _decoded(data)
    assert first.model_fields_set == set(Envelope.model_fields)
    retry = first.next_attempt()
    assert retry.attempt == 3 and first.attempt == 2
    assert first.model_fields_set == second.model_fields_set == set(Envelope.model_fields)
    assert first.headers is not second.headers


def test_builtin_subclasses_in_the_header_encode_like_their_base() -> None:
    class Text(str):
        pass

    env = ENVELOPES["chat_request"]()
    odd = env.model_copy(
        update={"type_name": Text(env.type_name), "headers": {Text("tenant"): Text("acme")}}
    )
    assert encode_envelope(odd) == encode_envelope(env)


def test_accepts_bytearray_and_memoryview() -> None:
    data = read_vector("chat_request")
    assert _decoded(bytearray(data)) == _decoded(memoryview(data))  # type: ignore[arg-type]


# --- typed failures ------------------------------------------------------------------------


def _reason(data: object, **kwargs: object) -> DeadLetterReason:
    kwargs.setdefault("now", NOW)
    result = decode_envelope(data, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, DecodeFailure), result
    assert not result
    return result.reason


def _with_payload(data: bytes, payload: bytes) -> bytes:
    h_len = struct.unpack_from(">I", data, 4)[0]
    head = data[: 12 + h_len]
    return head[:8] + struct.pack(">I", len(payload)) + head[12:] + payload


def _with_header(data: bytes, header: list[object]) -> bytes:
    h_len, p_len = struct.unpack_from(">II", data, 4)
    packed = msgpack.packb(header)
    return data[:4] + struct.pack(">II", len(packed), p_len) + packed + data[12 + h_len :]


def test_every_truncation_is_truncated() -> None:
    data = read_vector("chat_request")
    for n in range(len(data)):
        assert _reason(data[:n]) is DeadLetterReason.TRUNCATED, n


def test_bad_framing() -> None:
    data = read_vector("chat_request")
    assert _reason(b"XX" + data[2:]) is DeadLetterReason.MALFORMED
    assert _reason(b"X") is DeadLetterReason.MALFORMED
    assert _reason(data + b"\x00") is DeadLetterReason.MALFORMED
    assert _reason(data[:2] + b"\x02" + data[3:]) is DeadLetterReason.UNKNOWN_FORMAT_VERSION
    assert _reason(data[:2] + b"\x02") is DeadLetterReason.UNKNOWN_FORMAT_VERSION
    assert _reason(data[:3] + b"\x01" + data[4:]) is DeadLetterReason.UNKNOWN_FORMAT_VERSION
    assert _reason(None) is DeadLetterReason.MALFORMED


def test_oversize_limit_is_configurable() -> None:
    data = read_vector("chat_request")
    assert _reason(data, max_bytes=len(data) - 1) is DeadLetterReason.OVERSIZE
    assert isinstance(decode_envelope(data, max_bytes=len(data), now=NOW), Envelope)
    big = Envelope.wrap(ChatModelEvent(model="m", messages=["x" * (1 << 20)]), recipient="a/b")
    result = decode_envelope(encode_envelope(big))
    assert isinstance(result, DecodeFailure) and result.reason is DeadLetterReason.OVERSIZE
    assert "limit is 1048576" in result.message


def test_expired_deadline() -> None:
    data = read_vector("chat_request")
    assert _reason(data, now=4102444800.0) is DeadLetterReason.EXPIRED
    assert _reason(data, now=4102444801.0) is DeadLetterReason.EXPIRED
    assert isinstance(decode_envelope(data, now=4102444799.0), Envelope)
    fresh = Envelope.wrap(ChatModelEvent(model="m", messages=[]), recipient="a/b", deadline=1.0)
    failure = decode_envelope(encode_envelope(fresh))  # default now: the clock
    assert isinstance(failure, DecodeFailure) and failure.reason is DeadLetterReason.EXPIRED


def test_unknown_type() -> None:
    data = read_vector("chat_request")
    result = decode_envelope(data, now=NOW, registry=MessageRegistry())
    assert isinstance(result, DecodeFailure)
    assert result.reason is DeadLetterReason.UNKNOWN_TYPE
    assert result.type_name == "flink_actors.ChatModelEvent" and result.type_version == 1
    assert result.recipient == "support/customer-84721"
    assert result.data == data
    lazy = decode_envelope(data, now=NOW, registry=MessageRegistry(), validate=False)
    assert isinstance(lazy, DecodeFailure) and lazy.reason is DeadLetterReason.UNKNOWN_TYPE


def test_invalid_payload_eager_and_lazy() -> None:
    data = _with_payload(read_vector("chat_request"), msgpack.packb({"model": 5}))
    result = decode_envelope(data, now=NOW)
    assert isinstance(result, DecodeFailure)
    assert result.reason is DeadLetterReason.INVALID_PAYLOAD
    assert "'flink_actors.ChatModelEvent'" in result.message and result.data == data
    lazy = _decoded(data, validate=False)
    failure = lazy.try_payload()
    assert isinstance(failure, DecodeFailure) and failure.reason is DeadLetterReason.INVALID_PAYLOAD
    assert failure.data == data  # the whole envelope, for the dead letter
    with pytest.raises(SerializationError, match="is invalid"):
        _ = lazy.payload
    assert _reason(_with_payload(data, b"\xc1")) is DeadLetterReason.MALFORMED


def test_lazy_payload_is_validated_once() -> None:
    env = _decoded(read_vector("chat_request"), validate=False)
    first = env.payload
    assert env.payload is first and env.try_payload() is first


@pytest.mark.parametrize(
    ("index", "value", "fragment"),
    [
        (0, 5, "[str, str, int]"),
        (0, "no-slash", "no '/'"),
        (2, 0, "not >= 1"),
        (3, b"short", "message_id must be 16 bytes"),
        (4, "bad sender", "no '/'"),
        (5, "not-bytes", "correlation_id"),
        (6, 7, "causation_id"),
        (7, 1, "traceparent"),
        (8, 1, "tracestate"),
        (9, "yesterday", "created_at"),
        (10, "soon", "deadline"),
        (11, 0, "attempt"),
        (12, {"a": 1}, "headers must map strings to strings"),
        (12, [], "headers must be a map"),
    ],
)
def test_malformed_header_fields(index: int, value: object, fragment: str) -> None:
    data = read_vector("chat_request")
    h_len = struct.unpack_from(">I", data, 4)[0]
    header = msgpack.unpackb(data[12 : 12 + h_len])
    header[index] = value
    result = decode_envelope(_with_header(data, header), now=NOW)
    assert isinstance(result, DecodeFailure) and result.reason is DeadLetterReason.MALFORMED
    assert fragment in result.message


def test_header_of_wrong_shape() -> None:
    data = read_vector("chat_request")
    assert _reason(_with_header(data, [1, 2, 3])) is DeadLetterReason.MALFORMED
    h_len = struct.unpack_from(">I", data, 4)[0]
    assert _reason(data[:12] + b"\xc1" + data[13:]) is DeadLetterReason.MALFORMED
    assert h_len > 1


# --- dead letters ------------------------------------------------------------------------


def test_failure_becomes_a_dead_letter_record() -> None:
    data = read_vector("chat_request")
    failure = decode_envelope(data, now=4102444900.0)
    assert isinstance(failure, DecodeFailure)
    letter = failure.to_dead_letter(
        source_topic="agents.in", source_partition=2, source_offset=99, failed_at=5.0
    )
    assert letter.original == data and letter.reason is DeadLetterReason.EXPIRED
    assert DeadLetter.decode(letter.encode()) == letter
    key, value, headers = letter.to_kafka_record()
    assert key == b"support/customer-84721"
    assert DeadLetter.decode(value) == letter
    assert ("fa.dlq.reason", b"expired") in headers


@pytest.mark.parametrize(
    "data", [b"", b"FD", b"XX\x01\x00\x90", b"FD\x02\x00\x90", b"FD\x01\x00\x91\x01", b"FD\x01\x00"]
)
def test_bad_dead_letter_bytes_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        DeadLetter.decode(data)
