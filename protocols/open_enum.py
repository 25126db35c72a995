"""Enums that read values they do not know as `UNKNOWN`, for forward-compatible messages.

A writer may add an enum value (a compatible change); an older reader then gets
`UNKNOWN` instead of a validation failure.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["OpenStrEnum"]


class OpenStrEnum(StrEnum):
    """A `StrEnum` whose unknown values read as its `UNKNOWN` member (which it must define)."""

    @classmethod
    def _missing_(cls, value: object) -> OpenStrEnum | None:
        return cls.__members__.get("UNKNOWN")
