"""The definition decorators: `@tool`, `@model`, `@mcp_server` and `@step`.

Each decorator only attaches a small, frozen metadata record to the function and returns it
unchanged; the `Workflow` class collects the records when the class is created. They work bare
(``@tool``) and with arguments (``@tool(name="x")``), on plain functions, on methods taking
``self``, and stacked on ``@staticmethod`` in either order, because users paste the proposal's
``@tool`` / ``@staticmethod`` form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from protocols.errors import UserError
from protocols.events import Event

__all__ = [
    "DefinitionInfo",
    "StepInfo",
    "context_source",
    "mcp_server",
    "model",
    "step",
    "tool",
]

F = TypeVar("F")

DefinitionKind = Literal["tool", "model", "mcp_server", "context_source"]
ATTR = "__flink_actors_definition__"


@dataclass(frozen=True)
class DefinitionInfo:
    """What `@tool`, `@model` or `@mcp_server` recorded: the kind, an optional name, and for a
    tool whether it may block and whether it runs inside the turn (see `tool`)."""

    kind: DefinitionKind
    name: str | None = None
    blocking: bool = True
    inline: bool = False


@dataclass(frozen=True)
class StepInfo:
    """What `@step` recorded: the event types the step subscribes to (empty: from the hint)."""

    events: tuple[type[Event], ...]
    name: str | None = None


def unwrap(member: Any) -> Callable[..., Any] | None:
    """The function behind a class member (staticmethod, classmethod or plain function)."""
    if isinstance(member, staticmethod | classmethod):
        member = member.__func__
    return member if callable(member) else None


def _mark(obj: F, info: DefinitionInfo | StepInfo) -> F:
    target = unwrap(obj)
    if target is None:
        raise UserError(f"@{_label(info)} decorates functions, not {type(obj).__name__!r}")
    setattr(target, ATTR, info)
    return obj


def _label(info: DefinitionInfo | StepInfo) -> str:
    return "step" if isinstance(info, StepInfo) else info.kind


def _definition(
    kind: DefinitionKind, fn: Any, name: str | None, blocking: bool = True, inline: bool = False
) -> Any:
    info = DefinitionInfo(kind, name, blocking, inline)
    if fn is None:
        return lambda f: _mark(f, info)
    if isinstance(fn, str):
        raise UserError(f"write @{kind}(name={fn!r}), not @{kind}({fn!r})")
    return _mark(fn, info)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *, name: str | None = None, blocking: bool = True, inline: bool = False
) -> Callable[[F], F]: ...
def tool(
    fn: Any = None, /, *, name: str | None = None, blocking: bool = True, inline: bool = False
) -> Any:
    """Declare a tool a model may call. Its JSON schema comes from the type hints and the
    Google-style docstring; it may be sync or async; ``name`` defaults to the function name.

    A sync tool runs in a thread, so one that blocks (I/O, sleeps) cannot stall the other calls
    its worker serves. ``blocking=False`` declares a sync tool that never blocks (pure
    computation of microseconds, e.g. a lookup): it then runs on the worker's event loop, which
    saves the hand-off to a thread, about 0.2 ms of CPU per call on this project's machines.

    ``inline=True`` goes further for such a tool: it runs inside the agent's turn, where the
    engine runs (in Flink: the operator's task thread), and its result is journaled like any
    call's, so a replay does not run it again. No worker round trip: in the runtime benchmark
    a call through the Ray pool costs ~0.2-0.3 ms of CPU and a wake-up of the turn. Only for
    functions of microseconds that never block: an inline tool holds up every key the
    operator serves while it runs.
    """
    return _definition("tool", fn, name, blocking, inline)


@overload
def model(fn: F, /) -> F: ...
@overload
def model(*, name: str | None = None) -> Callable[[F], F]: ...
def model(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Declare a chat model: the function returns a `ChatModel` (with its prompt, tool names
    and MCP server names); ``ChatModelEvent(model=<name>)`` invokes it."""
    return _definition("model", fn, name)


@overload
def mcp_server(fn: F, /) -> F: ...
@overload
def mcp_server(*, name: str | None = None) -> Callable[[F], F]: ...
def mcp_server(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Declare an MCP server: the function returns an `MCPServerStdio` or `MCPServerHTTP`."""
    return _definition("mcp_server", fn, name)


@overload
def context_source(fn: F, /) -> F: ...
@overload
def context_source(*, name: str | None = None) -> Callable[[F], F]: ...
def context_source(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Declare a context source (vector, SQL, REST lookup) that ``ctx.search(name, query)``
    queries: the function returns an object with a ``query(payload)`` method, or a callable
    taking the payload; sync or async. Its answers are journaled like any other call."""
    return _definition("context_source", fn, name)


def step(*events: Any, name: str | None = None) -> Any:
    """Declare a step handling ``(event, state, ctx)`` for the given event types.

    ``@step(InputEvent, ChatModelResponseEvent)`` subscribes to both types (and their
    subclasses). Bare ``@step`` reads the types from the event parameter's annotation.
    """
    if len(events) == 1 and not isinstance(events[0], type) and unwrap(events[0]) is not None:
        return _mark(events[0], StepInfo((), name))  # bare @step
    for ev in events:
        if not (isinstance(ev, type) and issubclass(ev, Event)):
            raise UserError(
                f"@step takes Event subclasses, got {ev!r}; write @step(InputEvent, ...)"
            )
    return lambda f: _mark(f, StepInfo(tuple(events), name))
