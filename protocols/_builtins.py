"""Register the built-in runtime events (protocols.events) in the default registry."""

from __future__ import annotations

from protocols import events
from protocols.registry import MessageRegistry, default_registry

__all__ = ["BUILTIN_EVENTS", "register_builtins"]

BUILTIN_EVENTS: tuple[type[events.Event], ...] = tuple(
    obj
    for obj in vars(events).values()
    if isinstance(obj, type)
    and issubclass(obj, events.Event)
    and obj.__module__ == events.__name__
    and "builtin_name" in vars(obj)
)
"""Every event class of protocols.events that declares its own `builtin_name`."""


def register_builtins(registry: MessageRegistry | None = None) -> None:
    """Register every built-in event under its `builtin_name`, version 1 (idempotent)."""
    target = default_registry if registry is None else registry
    for cls in BUILTIN_EVENTS:
        target.register(cls, getattr(cls, "builtin_name"), 1)  # noqa: B009 (a ClassVar of subclasses)
