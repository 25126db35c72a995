"""The envelope: addressing, lineage, trace context and one typed message.

An envelope decoded from the wire keeps its payload as the msgpack bytes it arrived with;
`Envelope.payload` validates them against the registered class the first time it is read
and keeps the result. Routing and forwarding never pay for the payload, and the consumer
pays once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgpack
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from protocols.addresses import AgentAddress, TopicAddress, WireAddress
from protocols.errors import SerializationError, UserError
from protocols.failures import DeadLetterReason, DecodeFailure
from protocols.ids import new_message_id
from protocols.registry import MessageRegistry, default_registry

__all__ = ["Envelope", "EnvelopeHeader", "dump_payload"]

_TRACEPARENT_LEN = 55


class EnvelopeHeader(BaseModel):
    """Every envelope field except the payload (shared with JSON-shaped variants)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: UUID = Field(default_factory=new_message_id)
    """Unique and time-ordered (UUIDv7)."""
    type_name: str
    """The registered name of the payload's message type."""
    type_version: int = Field(default=1, ge=1)
    """The schema version the payload was written with."""
    recipient: WireAddress
    """An agent (`AgentAddress`) or a topic (`TopicAddress`); its string is the Kafka key."""
    sender: WireAddress | None = None
    """Who sent it; None for input from outside the agent system."""
    correlation_id: UUID | None = None
    """The conversation or request this message belongs to (request/reply)."""
    causation_id: UUID | None = None
    """The message id of the message that caused this one (causal chains)."""
    traceparent: str | None = None
    """W3C trace context `traceparent` header, e.g. '00-<trace id>-<span id>-01'."""
    tracestate: str | None = None
    """W3C trace context `tracestate` header."""
    created_at: float = Field(default_factory=time.time)
    """Unix seconds at creation."""
    deadline: float | None = None
    """Unix seconds after which the message is dead-lettered instead of delivered."""
    attempt: int = Field(default=1, ge=1)
    """Delivery attempt, from 1."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Free-form string metadata."""

    @field_validator("traceparent")
    @classmethod
    def _check_traceparent(cls, value: str | None) -> str | None:
        if value is not None and (len(value) < _TRACEPARENT_LEN or value[2:3] != "-"):
            raise ValueError(
                f"traceparent {value!r} is not W3C trace context "
                "('00-<32 hex trace id>-<16 hex span id>-<2 hex flags>')"
            )
        return value


# Shared Packers (see protocols.wire): the strict one is faster and takes the exact builtin
# types a JSON-mode dump holds; the other takes the rest (str subclasses in `Any` fields...).
_pack = msgpack.Packer().pack
_pack_strict = msgpack.Packer(strict_types=True).pack


def pack_msgpack(data: Any) -> bytes:
    """msgpack bytes of `data`: the strict Packer, or the plain one for what it refuses
    (same bytes for the same values)."""
    try:
        return _pack_strict(data)  # type: ignore[no-any-return]
    except TypeError:
        return _pack(data)  # type: ignore[no-any-return]


_TO_PYTHON: dict[type[BaseModel], Callable[..., Any]] = {}
"""`cls.__pydantic_serializer__.to_python` per complete message class: reading a class
attribute of a pydantic model goes through its metaclass hook, a dictionary lookup doesn't."""


def _to_python_of(cls: type[BaseModel]) -> Callable[..., Any]:
    to_python = cls.__pydantic_serializer__.to_python
    if cls.__pydantic_complete__:
        _TO_PYTHON[cls] = to_python
    return to_python


def dump_payload(payload: BaseModel) -> bytes:
    """The msgpack bytes of a payload: its JSON-mode dump, by alias, without default values.

    Leaving out fields equal to their default makes the payload smaller and cheaper to read
    (the reader fills in its default); `protocols.compat` therefore treats a changed default
    as an incompatible change.
    """
    try:
        to_python = _TO_PYTHON.get(type(payload))
        if to_python is None:
            to_python = _to_python_of(type(payload))
        data = to_python(payload, mode="json", by_alias=True, exclude_defaults=True)
        return pack_msgpack(data)
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize payload {type(payload).__qualname__!r}: {exc}"
        ) from exc


class Envelope(EnvelopeHeader):
    """A typed message with its addressing, lineage and trace context.

    Build one with `Envelope.wrap(payload, recipient=...)`; read the message with
    `envelope.payload` (validated once, on first access, when decoded from bytes).
    """

    _payload: BaseModel | None = PrivateAttr(default=None)
    _raw: bytes | None = PrivateAttr(default=None)
    _wire: bytes | None = PrivateAttr(default=None)
    _registry: MessageRegistry | None = PrivateAttr(default=None)

    @classmethod
    def wrap(
        cls,
        payload: BaseModel,
        *,
        recipient: AgentAddress | TopicAddress | str,
        sender: AgentAddress | TopicAddress | str | None = None,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
        deadline: float | None = None,
        headers: dict[str, str] | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        cause: Envelope | None = None,
        attempt: int = 1,
        registry: MessageRegistry | None = None,
    ) -> Envelope:
        """Wrap a registered message model for `recipient`.

        `cause` is the envelope being handled: the new one inherits its correlation id (or
        takes its message id as one), its trace context and its deadline, and records it as
        the causation. Explicit arguments win over inherited values.
        """
        if not isinstance(payload, BaseModel):
            raise UserError(
                f"Envelope.wrap needs a registered pydantic message, got "
                f"{type(payload).__qualname__!r}; decorate its class with @message('<name>')"
            )
        reg = default_registry if registry is None else registry
        entry = reg.type_of(type(payload))
        if cause is not None:
            causation_id = causation_id if causation_id is not None else cause.message_id
            if correlation_id is None:
                correlation_id = cause.correlation_id or cause.message_id
            traceparent = traceparent if traceparent is not None else cause.traceparent
            tracestate = tracestate if tracestate is not None else cause.tracestate
            deadline = deadline if deadline is not None else cause.deadline
        try:
            env = cls(
                type_name=entry.name,
                type_version=entry.version,
                recipient=recipient,  # type: ignore[arg-type]
                sender=sender,  # type: ignore[arg-type]
                correlation_id=correlation_id,
                causation_id=causation_id,
                traceparent=traceparent,
                tracestate=tracestate,
                deadline=deadline,
                attempt=attempt,
                headers=dict(headers) if headers else {},
            )
        except ValidationError as exc:
            raise UserError(f"cannot wrap a {entry.name!r} message: {exc}") from exc
        env._payload = payload
        env._registry = registry
        return env

    def reply(
        self,
        payload: BaseModel,
        *,
        sender: AgentAddress | TopicAddress | str | None = None,
        headers: dict[str, str] | None = None,
        registry: MessageRegistry | None = None,
    ) -> Envelope:
        """An envelope answering this one: to its sender, correlated and caused by it."""
        if self.sender is None:
            raise UserError(
                f"envelope {self.message_id} has no sender to reply to; "
                "use Envelope.wrap(payload, recipient=..., cause=envelope)"
            )
        return Envelope.wrap(
            payload,
            recipient=self.sender,
            sender=sender if sender is not None else self.recipient,
            headers=headers,
            cause=self,
            registry=registry if registry is not None else self._registry,
        )

    def next_attempt(self) -> Envelope:
        """The same envelope (same id and payload bytes) with `attempt` raised by one."""
        return self.model_copy(update={"attempt": self.attempt + 1})

    @property
    def payload(self) -> BaseModel:
        """The typed message; validated on first access. Raises `SerializationError` if invalid."""
        found = self.__pydantic_private__["_payload"]  # type: ignore[index]
        if found is not None:
            return found
        result = self.try_payload()
        if isinstance(result, DecodeFailure):
            raise SerializationError(result.message)
        return result

    def try_payload(self) -> BaseModel | DecodeFailure:
        """The typed message, or a `DecodeFailure` saying why it cannot be read. Never raises."""
        private = self.__pydantic_private__
        found = private["_payload"]  # type: ignore[index]
        if found is not None:
            return found  # type: ignore[no-any-return]
        raw = private["_raw"]  # type: ignore[index]
        if raw is None:
            return DecodeFailure(
                DeadLetterReason.MALFORMED,
                "envelope has no payload; build envelopes with Envelope.wrap(...)",
                b"",
                self.type_name,
                self.type_version,
                str(self.recipient),
            )
        result = validate_payload_bytes(
            raw,
            self.type_name,
            self.type_version,
            self._registry,
            str(self.recipient),
            self._wire,
        )
        if not isinstance(result, DecodeFailure):
            self._payload = result
        return result

    @property
    def payload_bytes(self) -> bytes:
        """The payload's wire bytes: as received when not yet read, else freshly dumped."""
        if self._payload is None and self._raw is not None:
            return self._raw
        return dump_payload(self.payload)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        if self.__dict__ != other.__dict__:
            return False
        if self._payload is None and other._payload is None:
            return self._raw == other._raw
        return self.try_payload() == other.try_payload()

    __hash__ = None  # type: ignore[assignment]

    def __repr_args__(self) -> Any:
        yield from super().__repr_args__()
        if self._payload is not None:
            yield "payload", self._payload
        elif self._raw is not None:
            yield "payload", f"<{len(self._raw)} bytes, not read yet>"


def validate_payload_bytes(
    raw: bytes,
    type_name: str,
    type_version: int,
    registry: MessageRegistry | None,
    recipient: str | None = None,
    wire: bytes | None = None,
) -> BaseModel | DecodeFailure:
    """Unpack and validate payload bytes against the registry. Never raises.

    `wire` is the whole envelope the payload came in: failures carry it, for the dead letter.
    """
    reg = default_registry if registry is None else registry
    original = raw if wire is None else wire
    try:
        if reg.resolve(type_name, type_version) is None:
            known = reg.versions(reg.canonical_name(type_name))
            return DecodeFailure(
                DeadLetterReason.UNKNOWN_TYPE,
                f"no message {type_name!r} version {type_version} is registered "
                f"(known versions: {known or 'none'})",
                original,
                type_name,
                type_version,
                recipient,
            )
        try:
            data = msgpack.unpackb(raw)
        except Exception as exc:
            return DecodeFailure(
                DeadLetterReason.MALFORMED,
                f"payload of {type_name!r} is not msgpack: {exc}",
                original,
                type_name,
                type_version,
                recipient,
            )
        return reg.validate(type_name, type_version, data)
    except Exception as exc:
        return DecodeFailure(
            DeadLetterReason.INVALID_PAYLOAD,
            f"payload of {type_name!r} version {type_version} is invalid: {exc}",
            original,
            type_name,
            type_version,
            recipient,
        )
