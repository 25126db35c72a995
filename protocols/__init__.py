"""Typed agent envelopes: addresses, message registry, wire format, dead letters.

Imports only the standard library, pydantic and msgpack. The built-in runtime events are
registered in the default registry when this package is imported.
"""

from __future__ import annotations

from protocols._builtins import BUILTIN_EVENTS, register_builtins
from protocols.addresses import AgentAddress, TopicAddress, WireAddress, parse_address
from protocols.envelope import Envelope, EnvelopeHeader
from protocols.errors import (
    AgentRunError,
    ConfigError,
    ContextError,
    DeadlineExceeded,
    DeliveryError,
    FlinkActorsError,
    ModelError,
    ModelNonRetryableError,
    ModelRetryableError,
    SerializationError,
    ToolError,
    UserError,
)
from protocols.failures import DeadLetter, DeadLetterReason, DecodeFailure
from protocols.ids import new_message_id
from protocols.kafka import KafkaRecord, route_from_kafka, to_kafka_record
from protocols.open_enum import OpenStrEnum
from protocols.registry import (
    MessageRegistry,
    MessageType,
    default_registry,
    message,
    upcaster,
)
from protocols.wire import (
    DEFAULT_MAX_BYTES,
    FORMAT_VERSION,
    RouteInfo,
    decode_envelope,
    encode_envelope,
    peek_route,
)

register_builtins()

__all__ = [
    "AgentAddress",
    "AgentRunError",
    "BUILTIN_EVENTS",
    "ConfigError",
    "ContextError",
    "DEFAULT_MAX_BYTES",
    "DeadLetter",
    "DeadLetterReason",
    "DeadlineExceeded",
    "DecodeFailure",
    "DeliveryError",
    "Envelope",
    "EnvelopeHeader",
    "FORMAT_VERSION",
    "FlinkActorsError",
    "KafkaRecord",
    "MessageRegistry",
    "MessageType",
    "ModelError",
    "ModelNonRetryableError",
    "ModelRetryableError",
    "OpenStrEnum",
    "RouteInfo",
    "SerializationError",
    "ToolError",
    "TopicAddress",
    "UserError",
    "WireAddress",
    "decode_envelope",
    "default_registry",
    "encode_envelope",
    "message",
    "new_message_id",
    "parse_address",
    "peek_route",
    "register_builtins",
    "route_from_kafka",
    "to_kafka_record",
    "upcaster",
]
