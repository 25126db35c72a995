"""Typed decode failures and the dead-letter records they become.

Decoding in the runtime's hot path never raises: it returns a `DecodeFailure`, and the
runtime turns it into a `DeadLetter` (the failure plus where the bytes came from) that it
writes to a dead-letter Kafka topic. Bad input is data, never a stopped job.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgpack

from protocols.errors import SerializationError

__all__ = ["DeadLetter", "DeadLetterReason", "DecodeFailure"]


class DeadLetterReason(StrEnum):
    """Why bytes could not be delivered. The values are stable: dashboards count them."""

    TRUNCATED = "truncated"
    """Fewer bytes than the header announces (or than a header needs)."""
    MALFORMED = "malformed"
    """Not an envelope: bad magic, bad lengths, a header field of the wrong type."""
    UNKNOWN_FORMAT_VERSION = "unknown_format_version"
    """A wire format version (or flag bit) this decoder does not know."""
    UNKNOWN_TYPE = "unknown_type"
    """A message type name or version that no registered class or upcaster handles."""
    INVALID_PAYLOAD = "invalid_payload"
    """The payload does not validate against its registered class."""
    OVERSIZE = "oversize"
    """More bytes than the configured limit (default 1 MiB)."""
    EXPIRED = "expired"
    """The envelope's deadline passed before it was decoded."""
    PROCESSING_FAILED = "processing_failed"
    """Decoded fine, but the runtime gave up on it (for the runtime's own use)."""


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """What went wrong with one input, as data. Fields beyond `data` are filled when known."""

    reason: DeadLetterReason
    message: str
    data: bytes = field(repr=False)
    type_name: str | None = None
    type_version: int | None = None
    recipient: str | None = None

    def __bool__(self) -> bool:
        """A failure is falsy, so `if not (env := decode_envelope(b)):` reads naturally."""
        return False

    def to_dead_letter(
        self,
        *,
        source_topic: str | None = None,
        source_partition: int | None = None,
        source_offset: int | None = None,
        failed_at: float | None = None,
    ) -> DeadLetter:
        """Attach the source position and the time, ready for the dead-letter topic."""
        return DeadLetter(
            reason=self.reason,
            message=self.message,
            original=self.data,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            failed_at=time.time() if failed_at is None else failed_at,
            type_name=self.type_name,
            type_version=self.type_version,
            recipient=self.recipient,
        )


_DL_MAGIC = b"FD"
_DL_FORMAT = 1
_DL_HEADER = struct.Struct(">2sBB")


def _expect(value: object, kind: Any, name: str) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SerializationError(f"malformed dead letter: {name} is {value!r:.60}")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered input: why, the original bytes, and where they were read from.

    Wire form (documented in docs/wire-format.md): ``"FD"``, format version 1, flags 0, then a
    msgpack array ``[reason, message, original, source_topic, source_partition,
    source_offset, failed_at, type_name, type_version, recipient]``.
    """

    reason: DeadLetterReason
    message: str
    original: bytes = field(repr=False)
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    failed_at: float = 0.0
    type_name: str | None = None
    type_version: int | None = None
    recipient: str | None = None

    def encode(self) -> bytes:
        """Serialize for the dead-letter topic."""
        body = msgpack.packb(
            [
                self.reason.value,
                self.message,
                bytes(self.original),
                self.source_topic,
                self.source_partition,
                self.source_offset,
                float(self.failed_at),
                self.type_name,
                self.type_version,
                self.recipient,
            ]
        )
        return _DL_HEADER.pack(_DL_MAGIC, _DL_FORMAT, 0) + body

    @classmethod
    def decode(cls, data: bytes) -> DeadLetter:
        """Read a record written by `encode`; raise `SerializationError` on anything else.

        Not a hot path: dead letters are read by people and tools, who want an exception.
        """
        if len(data) < _DL_HEADER.size:
            raise SerializationError(f"dead letter too short: {len(data)} bytes")
        magic, version, flags = _DL_HEADER.unpack_from(data)
        if magic != _DL_MAGIC:
            raise SerializationError(f"not a dead letter: magic {magic!r}, expected {_DL_MAGIC!r}")
        if version != _DL_FORMAT or flags != 0:
            raise SerializationError(
                f"dead letter format {version} flags {flags} unknown; this reader knows "
                f"format {_DL_FORMAT} flags 0: upgrade flink-actors"
            )
        try:
            fields = msgpack.unpackb(data[_DL_HEADER.size :])
            (reason, message, original, topic, partition, offset, failed_at, tname, tver, rcpt) = (
                fields
            )
            _expect(message, str, "message")
            _expect(original, bytes, "original")
            _expect(topic, str | None, "source_topic")
            _expect(partition, int | None, "source_partition")
            _expect(offset, int | None, "source_offset")
            _expect(failed_at, float | int, "failed_at")
            _expect(tname, str | None, "type_name")
            _expect(tver, int | None, "type_version")
            _expect(rcpt, str | None, "recipient")
            return cls(
                reason=DeadLetterReason(reason),
                message=message,
                original=original,
                source_topic=topic,
                source_partition=partition,
                source_offset=offset,
                failed_at=failed_at,
                type_name=tname,
                type_version=tver,
                recipient=rcpt,
            )
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"malformed dead letter: {exc}") from exc

    def to_kafka_record(self) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) for the dead-letter topic: keyed by recipient when known."""
        headers = [("fa.dlq.reason", self.reason.value.encode())]
        if self.source_topic is not None:
            headers.append(("fa.dlq.source", self.source_topic.encode()))
        key = self.recipient.encode() if self.recipient is not None else None
        return key, self.encode(), headers
