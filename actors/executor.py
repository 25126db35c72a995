"""`WorkflowExecutor`: executes a workflow's effects in the current process.

The local runner uses it directly; a Ray worker builds one from the same (pickled) workflow.
It implements `EffectExecutor`: it never raises for a failed call, it returns an
`EffectResult` whose ``error`` says what went wrong, so one failure cannot sink its batch-mates.

Request conventions (what the engine emits):

=========  ====================  ==============================================================
kind       target                payload -> value
=========  ====================  ==============================================================
model      model name            ``{"messages": [ChatMessage], "tools": [ToolSchema]}`` ->
                                 ``ChatResult`` as a dict (``usage`` also on the result)
tool       local tool name       ``{"arguments": {...}}`` -> the tool's JSON-compatible result
mcp        ``server/tool``       ``{"arguments": {...}}`` -> the MCP tool's result
mcp        ``server``            ``{"op": "list_tools"}`` -> ``[ToolSchema]`` as dicts (cached
                                 here for ``mcp_cache_s`` seconds); ``{"op": "list_prompts"}``
                                 -> ``[str]``; ``{"op": "get_prompt", "name": ...,
                                 "arguments": {...}}`` -> ``str``
context    source name           ``{"query": ..., **options}`` -> the source's result
=========  ====================  ==============================================================
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic_core import to_jsonable_python

from actors.effects import EffectError, EffectKind, EffectRequest, EffectResult
from actors.models.base import ToolSchema
from actors.tools import Tool
from actors.workflow import CompiledWorkflow
from protocols.errors import AgentRunError, ContextError, DeadlineExceeded, ToolError, UserError
from protocols.events import ChatMessage

__all__ = ["WorkflowExecutor", "execute_inline", "failed_result"]


def failed_result(call_id: str, exc: Exception, started: float) -> EffectResult:
    """The `EffectResult` of a call that raised `exc` (``started``: its `perf_counter`)."""
    return EffectResult(
        call_id=call_id,
        error=EffectError(
            error_type=type(exc).__name__,
            message=str(exc),
            retryable=bool(getattr(exc, "retryable", False))
            if isinstance(exc, AgentRunError)
            else False,
        ),
        latency_ms=(time.perf_counter() - started) * 1000,
    )


def execute_inline(tool: Tool, call_id: str, arguments: dict[str, Any]) -> EffectResult:
    """Run an ``inline`` tool now and return its result as an executor would: the same
    JSON-compatible value, or the same error, so a replay from the journal sees what the
    first pass saw."""
    started = time.perf_counter()
    try:
        value = to_jsonable_python(tool.call_inline(arguments), fallback=str)
    except Exception as exc:
        return failed_result(call_id, exc, started)
    return EffectResult(
        call_id=call_id, value=value, latency_ms=(time.perf_counter() - started) * 1000
    )


class WorkflowExecutor:
    """Executes `EffectRequest`s against one compiled workflow's definitions."""

    def __init__(self, compiled: CompiledWorkflow, *, mcp_cache_s: float = 60.0) -> None:
        self.compiled = compiled
        self.mcp_cache_s = mcp_cache_s
        self._tool_lists: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    async def execute(self, request: EffectRequest) -> EffectResult:
        """Run one request; failures come back as ``EffectResult.error``, never raised."""
        started = time.perf_counter()
        usage = None
        try:
            coro = self._dispatch(request)
            if request.deadline_s is not None:
                remaining = request.deadline_s - time.time()
                if remaining <= 0:
                    coro.close()
                    raise DeadlineExceeded(f"call {request.call_id!r} is past its deadline")
                try:
                    value, usage = await asyncio.wait_for(coro, remaining)
                except TimeoutError as exc:
                    raise DeadlineExceeded(
                        f"call {request.call_id!r} ran past its deadline"
                    ) from exc
            else:
                value, usage = await coro
            value = to_jsonable_python(value, fallback=str)
        except Exception as exc:
            return failed_result(request.call_id, exc, started)
        return EffectResult(
            call_id=request.call_id,
            value=value,
            usage=usage,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def _dispatch(self, request: EffectRequest) -> tuple[Any, Any]:
        kind, target, payload = request.kind, request.target, request.payload
        if kind is EffectKind.MODEL:
            spec = self.compiled.models.get(target)
            if spec is None:
                raise UserError(f"unknown model {target!r}")
            messages = [ChatMessage.model_validate(m) for m in payload.get("messages", [])]
            tools = [ToolSchema.model_validate(t) for t in payload.get("tools", [])]
            result = await spec.model.chat(messages, tools=tools or None)
            return result.model_dump(mode="json"), result.usage
        if kind is EffectKind.TOOL:
            tool = self.compiled.tools.get(target)
            if tool is None:
                raise ToolError(f"unknown tool {target!r}")
            return await tool.call(dict(payload.get("arguments", {}))), None
        if kind is EffectKind.MCP:
            return await self._mcp(target, payload), None
        if kind is EffectKind.CONTEXT:
            source = self.compiled.context_sources.get(target)
            if source is None:
                raise ContextError(
                    f"unknown context source {target!r}; defined: "
                    f"{sorted(self.compiled.context_sources)!r}"
                )
            fn = getattr(source, "query", source)
            value = fn(payload)
            if asyncio.iscoroutine(value):
                value = await value
            return value, None
        raise UserError(f"unknown effect kind {kind!r}")

    async def _mcp(self, target: str, payload: dict[str, Any]) -> Any:
        op = payload.get("op", "call_tool")
        server_name, _, tool_name = target.partition("/")
        server = self.compiled.mcp_servers.get(server_name)
        if server is None:
            raise ToolError(
                f"unknown MCP server {server_name!r}; defined: "
                f"{sorted(self.compiled.mcp_servers)!r}"
            )
        if op == "call_tool":
            return await server.call_tool(tool_name, dict(payload.get("arguments", {})))
        if op == "list_tools":
            cached = self._tool_lists.get(server_name)
            if cached is not None and time.monotonic() - cached[0] < self.mcp_cache_s:
                return cached[1]
            listing = [s.model_dump(mode="json") for s in await server.list_tools()]
            self._tool_lists[server_name] = (time.monotonic(), listing)
            return listing
        if op == "list_prompts":
            return await server.list_prompts()
        if op == "get_prompt":
            return await server.get_prompt(payload["name"], payload.get("arguments"))
        raise UserError(f"unknown MCP operation {op!r}")

    async def aclose(self) -> None:
        """Close the models' and MCP servers' connections."""
        for spec in self.compiled.models.values():
            await spec.model.aclose()
        for server in self.compiled.mcp_servers.values():
            await server.aclose()
