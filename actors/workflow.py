"""The `Workflow` base class: collects decorated definitions and compiles them.

Definitions are checked twice, as early as each check can be made:

* when the class is created: step signatures, duplicate names, async steps;
* when the workflow is instantiated: the ``@model`` and ``@mcp_server`` factories are called,
  tools are built, and every tool or MCP server a model names must exist.

A mistake raises `UserError` naming what is wrong, before any event is processed. The compiled
form (`CompiledWorkflow`) is what the engine executes; it holds only picklable definitions.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from actors.decorators import ATTR, DefinitionInfo, StepInfo, unwrap
from actors.models.base import ChatModel
from actors.state import State
from protocols.errors import UserError
from protocols.events import Event

__all__ = ["CompiledWorkflow", "ModelSpec", "StepSpec", "Workflow"]


@dataclass(frozen=True)
class StepSpec:
    """One compiled step: its name, function, event types and whether it takes ``self``."""

    name: str
    fn: Callable[..., Any]
    events: tuple[type[Event], ...]
    takes_self: bool

    def accepts(self, event: Event) -> bool:
        return isinstance(event, self.events)


@dataclass(frozen=True)
class ModelSpec:
    """A model as the engine sees it: the client plus the agent-side settings.

    ``tools`` names local tools; every tool of each server in ``mcp_servers`` is offered unless
    ``mcp_allow`` lists the allowed ones. ``remote_prompt`` names an MCP prompt that becomes the
    system prompt. ``output_instruction`` is appended to the system prompt.
    """

    name: str
    model: ChatModel
    prompt: str | None = None
    tools: tuple[str, ...] = ()
    mcp_servers: tuple[str, ...] = ()
    mcp_allow: tuple[str, ...] | None = None
    remote_prompt: str | None = None
    output_instruction: str | None = None


@dataclass
class CompiledWorkflow:
    """Everything the engine and the executor need, validated and picklable."""

    name: str
    state_type: type[BaseModel]
    steps: list[StepSpec]
    tools: dict[str, Any] = field(default_factory=dict)  # name -> actors.tools.Tool
    models: dict[str, ModelSpec] = field(default_factory=dict)
    mcp_servers: dict[str, Any] = field(default_factory=dict)  # name -> actors.mcp.MCPServer
    context_sources: dict[str, Any] = field(default_factory=dict)
    instance: Workflow | None = None

    def validate(self) -> None:
        """Raise `UserError` when a model names a tool or an MCP server that does not exist."""
        for spec in self.models.values():
            for tool_name in spec.tools:
                if tool_name not in self.tools:
                    raise UserError(
                        f"model {spec.name!r} of workflow {self.name!r} names tool {tool_name!r}, "
                        f"which is not defined; define it with @tool (defined: "
                        f"{sorted(self.tools)!r})"
                    )
            for server in spec.mcp_servers:
                if server not in self.mcp_servers:
                    raise UserError(
                        f"model {spec.name!r} of workflow {self.name!r} names MCP server "
                        f"{server!r}, which is not defined; define it with @mcp_server (defined: "
                        f"{sorted(self.mcp_servers)!r})"
                    )
        if not self.steps:
            raise UserError(f"workflow {self.name!r} has no @step; add one, e.g. @step(InputEvent)")


@dataclass(frozen=True)
class _Member:
    attr: str
    fn: Callable[..., Any]
    info: DefinitionInfo | StepInfo
    takes_self: bool


class Workflow:
    """Base class of every agent workflow.

    Subclasses declare ``@tool``, ``@model``, ``@mcp_server`` and ``@step`` members, and may set
    ``state_type`` to their own pydantic model (default: `State`, mapping-like with
    ``messages``). An instance is a definition: it is compiled and validated when created, and
    the runtimes (local runner, Flink operator, Ray pool) execute it.
    """

    state_type: ClassVar[type[BaseModel]] = State
    _members: ClassVar[dict[str, _Member]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        members: dict[str, _Member] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                fn = unwrap(value)
                info = getattr(fn, ATTR, None) if fn is not None else None
                if fn is None or info is None:
                    members.pop(attr, None)  # a subclass may shadow a definition
                    continue
                takes_self = not isinstance(value, staticmethod) and _first_is_self(fn)
                members[attr] = _Member(attr, fn, info, takes_self)
        for member in members.values():
            if isinstance(member.info, StepInfo):
                _check_step(cls, member)
        _check_duplicates(cls, members)
        cls._members = members
        state_type = cls.__dict__.get("state_type")
        if state_type is not None and not (
            isinstance(state_type, type) and issubclass(state_type, BaseModel)
        ):
            raise UserError(
                f"{cls.__name__}.state_type must be a pydantic BaseModel subclass, got "
                f"{state_type!r}"
            )

    def __init__(self) -> None:
        self._compiled: CompiledWorkflow | None = None
        self._compiled = self.compile()

    @property
    def name(self) -> str:
        """The workflow's name: its class name unless a subclass says otherwise."""
        return type(self).__name__

    def compiled(self) -> CompiledWorkflow:
        """The compiled form, built on first use when a subclass skipped ``super().__init__``."""
        compiled = getattr(self, "_compiled", None)
        if compiled is None:
            compiled = self._compiled = self.compile()
        return compiled

    def compile(self) -> CompiledWorkflow:
        """Build and validate the compiled form. Subclasses extend `_build`, not this."""
        compiled = self._build()
        compiled.validate()
        return compiled

    def override(self, **models: ChatModel) -> Workflow:
        """A copy of this workflow with the named models replaced, e.g. by a test model.

        The replacement keeps the original's prompt, tools and MCP servers.
        """
        import copy

        clone = copy.copy(self)
        compiled = copy.copy(self.compiled())
        compiled.models = dict(compiled.models)
        for name, replacement in models.items():
            if name not in compiled.models:
                raise UserError(
                    f"override names model {name!r}, which workflow {self.name!r} does not "
                    f"define (defined: {sorted(compiled.models)!r})"
                )
            spec = compiled.models[name]
            compiled.models[name] = ModelSpec(
                name=spec.name,
                model=replacement,
                prompt=spec.prompt,
                tools=spec.tools,
                mcp_servers=spec.mcp_servers,
                mcp_allow=spec.mcp_allow,
                remote_prompt=spec.remote_prompt,
                output_instruction=spec.output_instruction,
            )
        compiled.instance = clone
        clone._compiled = compiled
        return clone

    def _build(self) -> CompiledWorkflow:
        from actors.tools import Tool

        compiled = CompiledWorkflow(
            name=self.name, state_type=type(self).state_type, steps=[], instance=self
        )
        for member in type(self)._members.values():
            info = member.info
            if isinstance(info, StepInfo):
                compiled.steps.append(
                    StepSpec(
                        name=info.name or member.attr,
                        fn=member.fn,
                        events=_step_events(type(self), member),
                        takes_self=member.takes_self,
                    )
                )
                continue
            name = info.name or member.attr
            fn = member.fn.__get__(self, type(self)) if member.takes_self else member.fn
            if info.kind == "tool":
                compiled.tools[name] = Tool.from_function(
                    fn, name=name, blocking=info.blocking, inline=info.inline
                )
            elif info.kind == "model":
                chat_model = _call_factory(self, "model", name, fn)
                if not isinstance(chat_model, ChatModel):
                    raise UserError(
                        f"@model {name!r} of {self.name!r} returned {type(chat_model).__name__!r}; "
                        "return a ChatModel such as OpenAIChatModel(...) or OllamaChatModel(...)"
                    )
                compiled.models[name] = ModelSpec(
                    name=name,
                    model=chat_model,
                    prompt=chat_model.prompt,
                    tools=tuple(chat_model.tools),
                    mcp_servers=tuple(chat_model.mcp_servers),
                )
            elif info.kind == "context_source":
                source = _call_factory(self, "context_source", name, fn)
                if not callable(getattr(source, "query", source)):
                    raise UserError(
                        f"@context_source {name!r} of {self.name!r} returned "
                        f"{type(source).__name__!r}; return an object with a query(payload) "
                        "method, or a callable"
                    )
                compiled.context_sources[name] = source
            else:
                from actors.mcp import MCPServer

                server = _call_factory(self, "mcp_server", name, fn)
                if not isinstance(server, MCPServer):
                    raise UserError(
                        f"@mcp_server {name!r} of {self.name!r} returned "
                        f"{type(server).__name__!r}; return MCPServerStdio(...) or "
                        "MCPServerHTTP(...)"
                    )
                compiled.mcp_servers[name] = server
        return compiled

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _first_is_self(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] in ("self", "cls")


def _call_factory(wf: Workflow, kind: str, name: str, fn: Callable[..., Any]) -> Any:
    try:
        return fn()
    except TypeError as exc:
        raise UserError(
            f"@{kind} {name!r} of {wf.name!r} must be callable without arguments "
            f"(besides self): {exc}"
        ) from exc


def _check_step(cls: type, member: _Member) -> None:
    fn = member.fn
    label = f"step {member.attr!r} of {cls.__name__!r}"
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise UserError(
            f"{label} is async; steps are synchronous and deterministic: make it a plain def and "
            "call models and tools through ctx.chat(...) / ctx.call_tool(...) or events"
        )
    params = list(inspect.signature(fn).parameters.values())
    if member.takes_self:
        params = params[1:]
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) != 3 or any(p.kind is p.VAR_POSITIONAL for p in params):
        shown = ", ".join(p.name for p in params)
        raise UserError(
            f"{label} takes ({shown}); a step takes exactly (event, state, ctx), "
            "plus self when it is a method"
        )
    _step_events(cls, member, forward_ok=True)


def _step_events(
    cls: type, member: _Member, *, forward_ok: bool = False
) -> tuple[type[Event], ...]:
    """The step's event types: named in ``@step(...)`` or read from the annotation. With
    ``forward_ok`` (at class creation) an annotation naming a class defined later is left to be
    resolved when the workflow is instantiated."""
    assert isinstance(member.info, StepInfo)
    if member.info.events:
        return member.info.events
    label = f"step {member.attr!r} of {cls.__name__!r}"
    params = list(inspect.signature(member.fn).parameters)
    event_param = params[1] if member.takes_self else params[0]
    try:
        hints = typing.get_type_hints(member.fn)
    except Exception as exc:
        if forward_ok and isinstance(exc, NameError):
            return ()  # a class defined further down the module: resolved at instantiation
        raise UserError(
            f"{label}: cannot read the annotation of {event_param!r} ({exc}); "
            "name the event types instead: @step(InputEvent, ...)"
        ) from exc
    hint = hints.get(event_param)
    args = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or (typing.get_origin(hint) is typing.Union)
        else (hint,)
    )
    events = tuple(a for a in args if isinstance(a, type) and issubclass(a, Event))
    if not events or len(events) != len(args):
        raise UserError(
            f"{label}: bare @step needs the event parameter {event_param!r} annotated with Event "
            f"subclasses, got {hint!r}; or name them: @step(InputEvent, ...)"
        )
    return events


def _check_duplicates(cls: type, members: dict[str, _Member]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for member in members.values():
        info = member.info
        kind = "step" if isinstance(info, StepInfo) else info.kind
        name = info.name or member.attr
        if (kind, name) in seen:
            raise UserError(
                f"{cls.__name__!r} defines {kind} {name!r} twice (members {seen[(kind, name)]!r} "
                f"and {member.attr!r}); give one of them another name"
            )
        seen[(kind, name)] = member.attr
