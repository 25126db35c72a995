"""How an envelope lies in a Kafka record, so routing never decodes the payload.

- key: the recipient's canonical address string, UTF-8 (Kafka partitions by it, so one
  agent instance's messages stay in order on one partition; Flink keys by the same string);
- value: the envelope bytes (`encode_envelope`);
- headers: the type name and version, the wire format version, the message id, and the W3C
  trace context, so brokers' tools, filters and tracers can read them without us.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols.envelope import Envelope
from protocols.failures import DeadLetterReason, DecodeFailure
from protocols.wire import FORMAT_VERSION, RouteInfo, encode_envelope

__all__ = [
    "HEADER_FORMAT",
    "HEADER_MESSAGE_ID",
    "HEADER_TRACEPARENT",
    "HEADER_TRACESTATE",
    "HEADER_TYPE",
    "HEADER_VERSION",
    "KafkaRecord",
    "route_from_kafka",
    "to_kafka_record",
]

HEADER_TYPE = "fa.type"
HEADER_VERSION = "fa.version"
HEADER_FORMAT = "fa.format"
HEADER_MESSAGE_ID = "fa.message_id"
HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"
_FORMAT_BYTES = str(FORMAT_VERSION).encode()

KafkaRecord = tuple[bytes, bytes, list[tuple[str, bytes]]]


def to_kafka_record(env: Envelope) -> KafkaRecord:
    """(key, value, headers) for producing `env`; header values are UTF-8 bytes."""
    headers = [
        (HEADER_TYPE, env.type_name.encode()),
        (HEADER_VERSION, str(env.type_version).encode()),
        (HEADER_FORMAT, _FORMAT_BYTES),
        (HEADER_MESSAGE_ID, str(env.message_id).encode()),
    ]
    if env.traceparent is not None:
        headers.append((HEADER_TRACEPARENT, env.traceparent.encode()))
    if env.tracestate is not None:
        headers.append((HEADER_TRACESTATE, env.tracestate.encode()))
    return str(env.recipient).encode(), encode_envelope(env), headers


def route_from_kafka(
    key: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> RouteInfo | DecodeFailure:
    """Route from a record's key and headers alone, without reading its value. Never raises.

    Fails (MALFORMED) when the key or the type headers are missing; callers then fall back
    to `peek_route(value)`.
    """
    try:
        found = dict(headers)
        type_name = found.get(HEADER_TYPE)
        version = found.get(HEADER_VERSION)
        if key is None or type_name is None or version is None:
            return DecodeFailure(
                DeadLetterReason.MALFORMED,
                "record lacks the key or the fa.type / fa.version headers",
                b"",
            )
        return RouteInfo(bytes(key).decode(), bytes(type_name).decode(), int(version))
    except Exception as exc:
        return DecodeFailure(DeadLetterReason.MALFORMED, f"unreadable record headers: {exc}", b"")
