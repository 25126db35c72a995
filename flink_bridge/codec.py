"""Bytes for Flink keyed state: events in the mailbox, journal entries, the active turn.

State outlives the Python process and, across a savepoint, the code version, so it holds
msgpack of plain data, never pickles. An event is stored as its type name plus its JSON-mode
dump; the type is looked up among the built-in events and the events the workflow's steps
subscribe to, so user events defined in a job's `__main__` decode in the TaskManager too.
"""

from __future__ import annotations

from typing import Any

import msgpack

from actors.effects import EffectResult
from protocols.errors import SerializationError
from protocols.events import (
    AskReply,
    AskTimeout,
    ChatModelEvent,
    ChatModelResponseEvent,
    ErrorEvent,
    Event,
    InputEvent,
    OutputEvent,
    ToolCallEvent,
    ToolResultEvent,
)

__all__ = ["EventCodec", "decode_result", "encode_result", "type_name"]

_BUILTINS: tuple[type[Event], ...] = (
    InputEvent,
    OutputEvent,
    ChatModelEvent,
    ChatModelResponseEvent,
    ToolCallEvent,
    ToolResultEvent,
    ErrorEvent,
    AskReply,
    AskTimeout,
)


def type_name(cls: type) -> str:
    """The stable name an event type is stored under."""
    builtin = getattr(cls, "builtin_name", None)
    if builtin and cls in _BUILTINS:
        return str(builtin)
    return f"{cls.__module__}:{cls.__qualname__}"


class EventCodec:
    """Encodes events for state; decodes the types it was built with."""

    def __init__(self, event_types: list[type[Event]] | tuple[type[Event], ...] = ()) -> None:
        self._types: dict[str, type[Event]] = {}
        for cls in (*_BUILTINS, *event_types):
            self._register(cls)

    def _register(self, cls: type[Event]) -> None:
        self._types[type_name(cls)] = cls
        for sub in cls.__subclasses__():
            self._register(sub)

    def encode(self, event: Event) -> bytes:
        cls = type(event)
        name = type_name(cls)
        if name not in self._types:
            self._types[name] = cls
        return msgpack.packb([name, event.model_dump(mode="json")], use_bin_type=True)

    def decode(self, data: bytes) -> Event:
        try:
            name, body = msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise SerializationError(f"stored event is not valid msgpack: {exc}") from exc
        cls = self._types.get(name)
        if cls is None:
            raise SerializationError(
                f"stored event type {name!r} is unknown to this job; subscribe a @step to it "
                "or keep its class importable"
            )
        return cls.model_validate(body)


def encode_result(result: EffectResult) -> bytes:
    """A journal entry: the call's result as msgpack."""
    return msgpack.packb(result.model_dump(mode="json"), use_bin_type=True)


def decode_result(data: bytes) -> EffectResult:
    body: Any = msgpack.unpackb(data, raw=False)
    return EffectResult.model_validate(body)
