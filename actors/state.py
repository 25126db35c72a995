"""Agent state: the default mapping-like `State` and its msgpack codec.

A workflow declares its state type with the class attribute ``state_type`` (a pydantic
model class). The default, `State`, holds a conversation in ``messages`` and accepts any
extra key, read and written either as an attribute (``state.count``) or as an item
(``state["count"]``), so the proposal's ``state.messages.append(input)`` works unchanged.

State is stored as msgpack bytes (Flink keyed state, the local runner). Loading is tolerant:
fields added to the model since the bytes were written take their defaults, and keys the model
no longer declares are dropped unless the model allows extras, so a state model can grow across
an upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from protocols.errors import SerializationError
from protocols.events import ChatMessage

__all__ = ["State", "dump_state", "load_state"]

# A message is a ChatMessage when it looks like one, else kept as is (plain strings, dicts).
_Message = Annotated[ChatMessage | Any, Field(union_mode="left_to_right")]


class State(BaseModel):
    """The default agent state: ``messages`` plus any extra key, as attributes or items."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    messages: list[_Message] = Field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        extra = self.__pydantic_extra__
        if extra is not None and key in extra:
            del extra[key]
            return
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._all()

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # mapping-style iteration
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def get(self, key: str, default: Any = None) -> Any:
        """Return ``state[key]``, or ``default`` when the key is absent."""
        return self._all().get(key, default)

    def keys(self) -> list[str]:
        """The declared fields and the extra keys, in that order."""
        return list(self._all())

    def setdefault(self, key: str, default: Any) -> Any:
        """Return ``state[key]``, first setting it to ``default`` when absent."""
        if key not in self:
            self[key] = default
        return self[key]

    def _all(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(self.__pydantic_extra__ or {})
        return values


def dump_state(state: BaseModel) -> bytes:
    """Encode a state model as msgpack (JSON-compatible values, pydantic models as dicts)."""
    try:
        data = to_jsonable_python(state.model_dump(mode="python"), fallback=_refuse)
        return msgpack.packb(data, use_bin_type=True)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"state of type {type(state).__name__!r} cannot be encoded: {exc}; keep state to "
            "JSON-compatible values and pydantic models"
        ) from exc


def load_state(state_type: type[BaseModel], data: bytes) -> BaseModel:
    """Decode msgpack bytes into ``state_type``; missing fields take their defaults."""
    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise SerializationError(f"state bytes cannot be decoded: {exc}") from exc
    if not isinstance(raw, dict):
        raise SerializationError(f"state bytes decode to {type(raw).__name__!r}, not a mapping")
    fields = _declared_fields(state_type)
    if fields is not None:
        raw = {k: v for k, v in raw.items() if k in fields}
    try:
        return state_type.model_validate(raw)
    except ValidationError as exc:
        raise SerializationError(
            f"state bytes do not fit {state_type.__name__!r}: {exc}; give new fields defaults"
        ) from exc


_FIELDS: dict[type[BaseModel], frozenset[str] | None] = {}


def _declared_fields(state_type: type[BaseModel]) -> frozenset[str] | None:
    """The field names old state is filtered to (None: the type keeps extra keys). Cached per
    type: pydantic rebuilds `model_fields` on every access, the largest cost of a small load."""
    fields = _FIELDS.get(state_type, ...)
    if fields is ...:
        allow = state_type.model_config.get("extra") == "allow"
        fields = None if allow else frozenset(state_type.model_fields)
        _FIELDS[state_type] = fields
    return fields  # type: ignore[return-value]


def _refuse(value: Any) -> Any:
    raise TypeError(f"value of type {type(value).__name__!r} is not JSON-compatible")
