"""msgpack for Flink state and journals: `packb` / `unpackb`, pydantic-aware.

Pydantic models are stored as their JSON-mode dump (plain maps); reading gives plain data
back, which the owner validates into its model. Maps may have non-string keys.
"""

from __future__ import annotations

from typing import Any

import msgpack
from pydantic import BaseModel

from protocols.errors import SerializationError

__all__ = ["packb", "unpackb"]


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", by_alias=True)
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__qualname__!r}")


def packb(obj: Any) -> bytes:
    """msgpack bytes of `obj`; raise `SerializationError` for unsupported types."""
    try:
        return msgpack.packb(obj, default=_default)  # type: ignore[no-any-return]
    except Exception as exc:
        raise SerializationError(
            f"cannot pack {type(obj).__qualname__!r}: {exc}; store plain data or pydantic models"
        ) from exc


def unpackb(data: bytes) -> Any:
    """Plain data from `packb` bytes; raise `SerializationError` if they are not msgpack."""
    try:
        return msgpack.unpackb(data, strict_map_key=False)
    except Exception as exc:
        raise SerializationError(f"cannot unpack {len(data)} bytes: {exc}") from exc
