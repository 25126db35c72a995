"""`AgentWorkflow`: the built-in ReAct agent of the proposal.

``AgentWorkflow(model=..., prompt=..., mcp_servers=[...], local_tools=[...], tools=[...])`` is a
`Workflow` with two steps:

* on `InputEvent`: start a conversation with the input and send a `ChatModelEvent` to its model
  (named ``"model"``); the engine runs the tool loop;
* on `ChatModelResponseEvent`: emit the answer's text as an `OutputEvent`, or, with
  ``output_type``, the answer parsed and validated into that type. An answer that does not
  validate is sent back to the model with the validation errors, ``output_retries`` times.

``state.messages`` holds the current input's conversation (reset for each input). Subclass it
to add steps, e.g. one handling `ErrorEvent`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from actors.decorators import ATTR, DefinitionInfo, step, unwrap
from actors.models.base import ChatModel
from actors.workflow import CompiledWorkflow, ModelSpec, Workflow
from protocols.errors import ModelNonRetryableError, UserError
from protocols.events import (
    ChatMessage,
    ChatModelEvent,
    ChatModelResponseEvent,
    InputEvent,
    OutputEvent,
)

__all__ = ["AgentWorkflow"]

MODEL_NAME = "model"


class AgentWorkflow(Workflow):
    """A ReAct agent: one model, a system prompt, local tools and MCP tools.

    Args:
        model: the chat model (its own ``prompt``, ``tools`` and ``mcp_servers`` are ignored).
        prompt: the system prompt.
        mcp_servers: MCP servers whose tools the model may call; a list (named ``mcp0``,
            ``mcp1``, ...) or a mapping of name to server.
        local_tools: Python functions (or ``@tool`` members) the model may call.
        tools: allow-list of MCP tool names; None offers every tool of every server.
        output_type: parse and validate the final answer into this type (e.g. a pydantic
            model) instead of emitting its text.
        remote_prompt: name of an MCP prompt to use as the system prompt (``"server/name"``
            picks the server); ``prompt``, when also given, is ignored.
        max_iterations: model calls allowed per input before giving up.
        output_retries: how often an answer that fails ``output_type`` validation is retried.
        name: the agent's name (its agent type in addresses); default ``"AgentWorkflow"``.
    """

    def __init__(
        self,
        model: ChatModel,
        prompt: str | None = None,
        mcp_servers: Sequence[Any] | Mapping[str, Any] | None = None,
        local_tools: Sequence[Callable[..., Any]] | None = None,
        tools: Sequence[str] | None = None,
        output_type: Any = None,
        remote_prompt: str | None = None,
        *,
        max_iterations: int = 10,
        output_retries: int = 1,
        name: str | None = None,
    ) -> None:
        if not isinstance(model, ChatModel):
            raise UserError(
                f"AgentWorkflow(model=...) takes a ChatModel such as OpenAIChatModel(...) or "
                f"OllamaChatModel(...), got {type(model).__name__!r}"
            )
        if isinstance(tools, str):
            raise UserError(f"AgentWorkflow(tools=...) takes a list of names, got {tools!r}")
        servers = (
            dict(mcp_servers)
            if isinstance(mcp_servers, Mapping)
            else {f"mcp{i}": s for i, s in enumerate(mcp_servers or [])}
        )
        if remote_prompt is not None and not servers:
            raise UserError(
                f"AgentWorkflow(remote_prompt={remote_prompt!r}) needs mcp_servers=[...] to "
                "fetch the prompt from"
            )
        if max_iterations < 1:
            raise UserError(f"max_iterations must be >= 1, got {max_iterations!r}")
        self.model = model
        self.prompt = prompt
        self.mcp_servers = servers
        self.local_tools = list(local_tools or [])
        self.tools = None if tools is None else list(tools)
        self.output_type = output_type
        self.remote_prompt = remote_prompt
        self.max_iterations = max_iterations
        self.output_retries = output_retries
        self._name = name
        self._adapter: TypeAdapter[Any] | None = (
            None if output_type is None else TypeAdapter(output_type)
        )
        super().__init__()

    @property
    def name(self) -> str:
        return self._name or type(self).__name__

    def _build(self) -> CompiledWorkflow:
        from actors.mcp import MCPServer
        from actors.tools import Tool

        compiled = super()._build()
        local_names: list[str] = []
        for fn in self.local_tools:
            if isinstance(fn, Tool):
                built = fn
            else:
                target = unwrap(fn)
                if target is None:
                    raise UserError(f"AgentWorkflow(local_tools=...) takes functions, got {fn!r}")
                info = getattr(target, ATTR, None)
                if isinstance(info, DefinitionInfo):
                    built = Tool.from_function(
                        target, name=info.name, blocking=info.blocking, inline=info.inline
                    )
                else:
                    built = Tool.from_function(target)
            if built.name in compiled.tools:
                raise UserError(
                    f"AgentWorkflow has two tools named {built.name!r}; rename one with "
                    "@tool(name=...)"
                )
            compiled.tools[built.name] = built
            local_names.append(built.name)
        for name, server in self.mcp_servers.items():
            if not isinstance(server, MCPServer):
                raise UserError(
                    f"AgentWorkflow(mcp_servers=...) takes MCPServerStdio(...) or "
                    f"MCPServerHTTP(...), got {type(server).__name__!r} for {name!r}"
                )
            compiled.mcp_servers[name] = server
        allow = None
        if self.tools is not None:
            allow = tuple(t for t in self.tools if t not in local_names)
            if allow and not self.mcp_servers:
                raise UserError(
                    f"AgentWorkflow(tools={self.tools!r}) allow-lists MCP tools, but no "
                    "mcp_servers are given and no local tool has those names"
                )
        compiled.models[MODEL_NAME] = ModelSpec(
            name=MODEL_NAME,
            model=self.model,
            prompt=self.prompt,
            tools=tuple(local_names),
            mcp_servers=tuple(self.mcp_servers),
            mcp_allow=allow,
            remote_prompt=self.remote_prompt,
            output_instruction=self._output_instruction(),
        )
        return compiled

    def _output_instruction(self) -> str | None:
        if self._adapter is None:
            return None
        schema = json.dumps(self._adapter.json_schema(), separators=(",", ":"))
        return (
            "Give your final answer as one JSON value, with no other text, matching this JSON "
            f"schema: {schema}"
        )

    @step(InputEvent)
    def on_input(self, event: InputEvent, state: Any, ctx: Any) -> None:
        """Start the conversation for this input and ask the model."""
        state.messages = _to_messages(event.input)
        state["output_attempts"] = 0
        ctx.send_event(
            ChatModelEvent(
                model=MODEL_NAME, messages=state.messages, max_iterations=self.max_iterations
            )
        )

    @step(ChatModelResponseEvent)
    def on_response(self, event: ChatModelResponseEvent, state: Any, ctx: Any) -> None:
        """Emit the answer, validated into ``output_type`` when one is set."""
        state.messages.append(event.response)
        content = event.response.content or ""
        if self._adapter is None:
            ctx.send_event(OutputEvent(output=content))
            return
        try:
            value = self._adapter.validate_json(_strip_fences(content))
        except ValidationError as exc:
            attempts = state.get("output_attempts", 0)
            if attempts >= self.output_retries:
                raise ModelNonRetryableError(
                    f"the model's answer does not validate as {self.output_type!r} after "
                    f"{attempts + 1} attempts: {exc}"
                ) from exc
            state["output_attempts"] = attempts + 1
            state.messages.append(
                ChatMessage.user(
                    f"Your answer is not valid: {exc}. Answer again with only the JSON value."
                )
            )
            ctx.send_event(
                ChatModelEvent(
                    model=MODEL_NAME, messages=state.messages, max_iterations=self.max_iterations
                )
            )
            return
        ctx.send_event(OutputEvent(output=value))

    def __repr__(self) -> str:
        return (
            f"AgentWorkflow(model={self.model!r}, tools={sorted(self.compiled().tools)!r}, "
            f"mcp_servers={sorted(self.mcp_servers)!r})"
        )


def _to_messages(value: Any) -> list[Any]:
    if isinstance(value, ChatMessage):
        return [value]
    if isinstance(value, str):
        return [ChatMessage.user(value)]
    if isinstance(value, list) and all(isinstance(v, ChatMessage | str) for v in value):
        return [ChatMessage.user(v) if isinstance(v, str) else v for v in value]
    if isinstance(value, BaseModel):
        return [ChatMessage.user(value.model_dump_json())]
    return [ChatMessage.user(json.dumps(value, default=str))]


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()
