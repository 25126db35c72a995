"""Test doubles for agent workflows: models that answer without a network.

* `TestModel` calls every tool it is offered once (arguments made up from each tool's JSON
  schema), then answers with the tools' results (or a fixed ``output``).
* `FunctionModel` answers with your function: ``fn(messages, tools) -> ChatMessage | str``.
* `ScriptedModel` answers from a queue: text, tool calls, or an exception to raise.

Each records what it was asked in ``requests`` so tests can assert on prompts and tool schemas.
Use them with ``workflow.override(model_name=TestModel())`` or pass them where a model goes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from actors.models.base import ChatModel, ChatResult, ToolSchema
from protocols.errors import ModelNonRetryableError
from protocols.events import ChatMessage, ToolCall, Usage

__all__ = ["FunctionModel", "ScriptedModel", "TestModel", "tool_call"]


def tool_call(tool_name: str, /, **arguments: Any) -> ToolCall:
    """A tool call for `ScriptedModel`, e.g. ``tool_call("get_weather", city="Paris")``."""
    return ToolCall(id=f"call_{tool_name}", name=tool_name, arguments=json.dumps(arguments))


class _RecordingModel(ChatModel):
    provider = "test"

    def __init__(self, *, model: str, **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        self.requests: list[tuple[list[ChatMessage], list[ToolSchema]]] = []

    async def chat(
        self, messages: list[ChatMessage], *, tools: list[ToolSchema] | None = None
    ) -> ChatResult:
        self.requests.append((list(messages), list(tools or [])))
        answer = await self._answer(list(messages), list(tools or []))
        return ChatResult(
            message=answer, usage=_usage(messages, answer), model=self.model, provider="test"
        )

    async def _answer(self, messages: list[ChatMessage], tools: list[ToolSchema]) -> ChatMessage:
        raise NotImplementedError

    @property
    def calls(self) -> int:
        """How many times the model was called."""
        return len(self.requests)


class TestModel(_RecordingModel):
    """Calls each offered tool once, then answers.

    The answer is ``output`` when given (a string, or a dict / pydantic object sent as JSON),
    else a JSON object of the tools' results by tool name, else ``"success (no tool calls)"``.
    ``call_tools`` limits which tools are called (default: all offered).
    """

    __test__ = False

    def __init__(
        self,
        *,
        output: str | dict[str, Any] | BaseModel | None = None,
        call_tools: Iterable[str] | None = None,
        model: str = "test",
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.output = output
        self.call_tools = None if call_tools is None else set(call_tools)

    async def _answer(self, messages: list[ChatMessage], tools: list[ToolSchema]) -> ChatMessage:
        since_user = _since_last_user(messages)
        called = {c.name for m in since_user for c in m.tool_calls}
        todo = [
            t
            for t in tools
            if t.name not in called and (self.call_tools is None or t.name in self.call_tools)
        ]
        if todo and not called:
            return ChatMessage.assistant(
                None,
                [
                    ToolCall(
                        id=f"call_{len(messages)}_{j}",
                        name=t.name,
                        arguments=json.dumps(_example_arguments(t.parameters)),
                    )
                    for j, t in enumerate(todo)
                ],
            )
        if self.output is not None:
            if isinstance(self.output, BaseModel):
                return ChatMessage.assistant(self.output.model_dump_json())
            if isinstance(self.output, dict):
                return ChatMessage.assistant(json.dumps(self.output))
            return ChatMessage.assistant(self.output)
        results = {m.name or m.tool_call_id: m.content for m in since_user if m.role == "tool"}
        if results:
            return ChatMessage.assistant(json.dumps(results))
        return ChatMessage.assistant("success (no tool calls)")


class FunctionModel(_RecordingModel):
    """Answers with ``fn(messages, tools)``, sync or async, returning a `ChatMessage` or text."""

    __test__ = False

    def __init__(
        self,
        fn: Callable[[list[ChatMessage], list[ToolSchema]], Any],
        *,
        model: str = "function",
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.fn = fn

    async def _answer(self, messages: list[ChatMessage], tools: list[ToolSchema]) -> ChatMessage:
        answer = self.fn(messages, tools)
        if inspect.isawaitable(answer):
            answer = await answer
        return _as_message(answer)


class ScriptedModel(_RecordingModel):
    """Answers from a queue, one item per call.

    An item is a string (a text answer), a `ChatMessage`, a `ToolCall` or a list of them (an
    answer asking for those tool calls), or an exception (raised by that call). When the queue
    is empty the call fails with `ModelNonRetryableError`.
    """

    __test__ = False

    def __init__(self, answers: Iterable[Any], *, model: str = "scripted", **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        self.answers = list(answers)

    async def _answer(self, messages: list[ChatMessage], tools: list[ToolSchema]) -> ChatMessage:
        if not self.answers:
            raise ModelNonRetryableError(
                f"ScriptedModel has no answers left (call {len(self.requests)}); script more"
            )
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return _as_message(answer)


def _as_message(answer: Any) -> ChatMessage:
    if isinstance(answer, ChatMessage):
        return answer
    if isinstance(answer, str):
        return ChatMessage.assistant(answer)
    if isinstance(answer, ToolCall):
        answer = [answer]
    if isinstance(answer, list) and all(isinstance(c, ToolCall) for c in answer):
        calls = [c.model_copy(update={"id": f"{c.id}_{j}"}) for j, c in enumerate(answer)]
        return ChatMessage.assistant(None, calls)
    raise TypeError(
        f"a test model answer must be a str, ChatMessage or ToolCall(s), got "
        f"{type(answer).__name__!r}"
    )


def _since_last_user(messages: list[ChatMessage]) -> list[ChatMessage]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return messages[i + 1 :]
    return messages


def _example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties", {})
    required = schema.get("required", list(props))
    return {name: _example_value(props[name], schema) for name in required if name in props}


def _example_value(prop: dict[str, Any], root: dict[str, Any]) -> Any:
    if "default" in prop:
        return prop["default"]
    if "enum" in prop:
        return prop["enum"][0]
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        target = root.get("$defs", {}).get(name, {})
        return (
            _example_arguments(target) if "properties" in target else _example_value(target, root)
        )
    for key in ("anyOf", "oneOf"):
        if key in prop:
            options = [p for p in prop[key] if p.get("type") != "null"] or prop[key]
            return _example_value(options[0], root)
    kind = prop.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" and "properties" in prop:
        return _example_arguments(prop)
    return {
        "string": "a",
        "integer": 0,
        "number": 0.0,
        "boolean": False,
        "array": [],
        "object": {},
        "null": None,
    }.get(kind, "a")


def _usage(messages: list[ChatMessage], answer: ChatMessage) -> Usage:
    words_in = sum(len((m.content or "").split()) for m in messages)
    words_out = len((answer.content or "").split()) + len(answer.tool_calls)
    return Usage(input_tokens=max(words_in, 1), output_tokens=max(words_out, 1))
