"""Tool calling through schema-constrained JSON, for models without native tool calls.

Why: small local models (SmolLM2-135M on llama.cpp, many Ollama models) ignore or mangle the
``tools`` parameter, but they follow a JSON grammar. `JsonToolStrategy` removes ``tools`` from
the request, describes the tools in the system message and constrains the answer (through
``response_format``, which llama.cpp, vLLM, Ollama and OpenAI turn into a grammar) to exactly
one of::

    {"tool": "<name>", "arguments": {...}}      a tool call
    {"final": "<text>"}                         the answer

Earlier tool calls and tool results in the conversation are rewritten into that same shape
(an assistant JSON turn, then a user turn with the result) because chat templates of small
models often drop or garble the ``tool`` role.

Parsing lives here; validation against the tool schemas (`validate_tool_call`) and the bounded
retry with the error fed back live in `actors.models.local.LocalChatModel`, which knows the
tools of each call.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from actors.models.base import ToolSchema
from actors.models.tool_strategy import NativeToolStrategy, ToolStrategy, register_tool_strategy
from protocols.errors import ConfigError, ModelNonRetryableError
from protocols.events import ChatMessage, ToolCall

__all__ = [
    "JsonToolStrategy",
    "SchemaStyle",
    "ToolCallFormatError",
    "answer_schema",
    "parse_answer",
    "rewrite_history",
    "tool_rounds",
    "validate_tool_call",
]

SchemaStyle = Literal["json_schema", "json_object"]
"""How the answer schema is sent: ``json_schema`` is the OpenAI form (OpenAI, vLLM, Ollama,
llama.cpp's C++ server); ``json_object`` with a ``schema`` key is what llama-cpp-python's
server reads (it ignores ``json_schema``)."""

_SCHEMA_NAME = "tool_call_or_final"
# What small models copy from the instructions instead of answering.
_PLACEHOLDERS = frozenset({"", "...", "<answer>", "<your answer>", "<text>"})


class ToolCallFormatError(ModelNonRetryableError):
    """The model's answer does not follow the JSON tool protocol, or fails a tool's schema.

    A `ModelNonRetryableError` because resending the same request cannot fix it; the caller
    may instead ask again with `feedback` appended (see `LocalChatModel`).

    Attributes:
        raw: The answer's text as the model produced it.
        feedback: One sentence for the model saying what was wrong.
    """

    def __init__(self, message: str, *, raw: str, feedback: str) -> None:
        super().__init__(message)
        self.raw = raw
        self.feedback = feedback

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: the default exception pickling (cls(*args)) would drop them,
        # and errors cross processes (Ray workers).
        return (_rebuild_format_error, (str(self), self.raw, self.feedback))


def _rebuild_format_error(message: str, raw: str, feedback: str) -> ToolCallFormatError:
    return ToolCallFormatError(message, raw=raw, feedback=feedback)


def answer_schema(tools: list[ToolSchema], *, allow_final: bool = True) -> dict[str, Any]:
    """The JSON schema of one answer: a call of one of `tools`, or (if allowed) a final one."""
    variants: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "tool": {"type": "string", "const": tool.name},
                "arguments": _object_schema(tool.parameters),
            },
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    if allow_final or not variants:
        variants.append(
            {
                "type": "object",
                "properties": {"final": {"type": "string"}},
                "required": ["final"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": variants}


def _object_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def _tools_prompt(tools: list[ToolSchema]) -> str:
    lines = [
        "You can call tools. Reply with exactly one JSON object and nothing else:",
        '- to call a tool: {"tool": "<tool name>", "arguments": {...}}',
        '- to answer the user: {"final": "<your answer>"}',
        "Tools:",
    ]
    for tool in tools:
        params = json.dumps(tool.parameters.get("properties", {}), separators=(",", ":"))
        desc = f": {tool.description}" if tool.description else ""
        lines.append(f"- {tool.name}{desc} Arguments: {params}")
    lines.append("When a tool result arrives, use it to answer with a final JSON answer.")
    return "\n".join(lines)


class JsonToolStrategy(ToolStrategy):
    """Offer tools as a constrained JSON answer instead of the ``tools`` parameter.

    Two turn policies help small models, which otherwise answer from thin air or repeat the
    same call forever; both only narrow the schema of one answer:

    Args:
        schema_style: ``"json_schema"`` (OpenAI form, the default) or ``"json_object"``
            (llama-cpp-python's server).
        first_turn_tool: Right after a user message, allow only a tool call (like
            ``tool_choice="required"``); later answers may be final.
        max_tool_rounds: After this many tool-call turns since the last user message, allow
            only a final answer. None: no limit (the agent's own iteration cap applies).
    """

    name = "json"

    def __init__(
        self,
        schema_style: SchemaStyle = "json_schema",
        *,
        first_turn_tool: bool = False,
        max_tool_rounds: int | None = None,
    ) -> None:
        if schema_style not in ("json_schema", "json_object"):
            raise ConfigError(
                "schema_style",
                f"unknown style {schema_style!r}",
                "use 'json_schema' (OpenAI, vLLM, Ollama) or 'json_object' (llama-cpp-python)",
            )
        if max_tool_rounds is not None and max_tool_rounds < 1:
            raise ConfigError(
                "max_tool_rounds", f"must be >= 1 or None, got {max_tool_rounds!r}", "pass 1"
            )
        self.schema_style: SchemaStyle = schema_style
        self.first_turn_tool = first_turn_tool
        self.max_tool_rounds = max_tool_rounds

    def response_format(
        self, tools: list[ToolSchema], *, allow_final: bool = True
    ) -> dict[str, Any]:
        """The ``response_format`` request field that constrains the answer."""
        schema = answer_schema(tools, allow_final=allow_final)
        if self.schema_style == "json_object":
            return {"type": "json_object", "schema": schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": _SCHEMA_NAME, "schema": schema, "strict": True},
        }

    def build_request(self, request: dict[str, Any], tools: list[ToolSchema]) -> dict[str, Any]:
        original = list(request.get("messages") or [])
        rounds = tool_rounds(original)
        offer = list(tools)
        if self.max_tool_rounds is not None and rounds >= self.max_tool_rounds:
            offer = []
        must_call = bool(offer) and self.first_turn_tool and rounds == 0
        messages = rewrite_history(original, more_tools=bool(offer))
        out = {k: v for k, v in request.items() if k not in ("tools", "tool_choice")}
        if not tools:
            out["messages"] = messages
            return out
        out["messages"] = _with_tools_prompt(messages, _tools_prompt(tools))
        out["response_format"] = self.response_format(offer, allow_final=not must_call)
        return out

    def parse_response(self, message: dict[str, Any]) -> ChatMessage:
        if message.get("tool_calls"):  # the server did native calls after all: take them
            return NativeToolStrategy().parse_response(message)
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        return parse_answer(text)

    def _key(self) -> tuple[Any, ...]:
        return (self.schema_style, self.first_turn_tool, self.max_tool_rounds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonToolStrategy) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash((type(self), *self._key()))

    def __repr__(self) -> str:
        return (
            f"JsonToolStrategy(schema_style={self.schema_style!r}, "
            f"first_turn_tool={self.first_turn_tool!r}, max_tool_rounds={self.max_tool_rounds!r})"
        )


def parse_answer(text: str) -> ChatMessage:
    """Read one protocol answer; plain text that is not a JSON object is a final answer.

    Raises:
        ToolCallFormatError: A JSON object that is neither a tool call nor a final answer.
    """
    stripped = text.strip()
    if not stripped.startswith("{"):
        if stripped.startswith("[") or stripped.startswith('"'):
            raise _format_error(text, "the reply is not a JSON object")
        return ChatMessage.assistant(text)
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise _format_error(
            text, f"the reply is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from exc
    if not isinstance(value, dict):
        raise _format_error(text, "the reply is not a JSON object")
    if "final" in value and "tool" not in value:
        final = value["final"]
        final_text = final if isinstance(final, str) else json.dumps(final)
        if final_text.strip().lower() in _PLACEHOLDERS:
            raise _format_error(
                text, "the final answer is empty or a placeholder; write the actual answer"
            )
        return ChatMessage.assistant(final_text)
    name = value.get("tool")
    if not isinstance(name, str) or not name:
        raise _format_error(text, 'the reply has neither a "tool" name nor a "final" answer')
    arguments = value.get("arguments", {})
    if not isinstance(arguments, dict):
        raise _format_error(text, f'"arguments" of tool {name!r} is not a JSON object')
    call = ToolCall(id="call_0", name=name, arguments=json.dumps(arguments))
    return ChatMessage.assistant(None, [call])


def _format_error(raw: str, problem: str) -> ToolCallFormatError:
    return ToolCallFormatError(
        f"the model's answer does not follow the JSON tool protocol: {problem}; "
        f"answer was {raw[:200]!r}",
        raw=raw,
        feedback=problem,
    )


def validate_tool_call(call: ToolCall, tools: list[ToolSchema], *, raw: str) -> None:
    """Check that `call` names one of `tools` and that its arguments fit that tool's schema.

    Raises:
        ToolCallFormatError: Unknown tool, arguments that are not a JSON object, or arguments
            failing the schema; `feedback` says which, for the model.
    """
    import jsonschema

    by_name = {tool.name: tool for tool in tools}
    tool = by_name.get(call.name)
    if tool is None:
        raise ToolCallFormatError(
            f"the model called unknown tool {call.name!r}; offered: {sorted(by_name)!r}",
            raw=raw,
            feedback=f"there is no tool {call.name!r}; the tools are {sorted(by_name)!r}",
        )
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ToolCallFormatError(
            f"arguments of tool {call.name!r} are not valid JSON: {exc.msg}",
            raw=raw,
            feedback=f"the arguments of {call.name!r} are not valid JSON",
        ) from exc
    validator_cls = jsonschema.validators.validator_for(tool.parameters)
    errors = sorted(
        validator_cls(tool.parameters).iter_errors(arguments), key=lambda e: list(e.path)
    )
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "arguments"
        problem = f"{where}: {first.message}"
        raise ToolCallFormatError(
            f"arguments of tool {call.name!r} fail its schema: {problem}",
            raw=raw,
            feedback=f"the arguments of {call.name!r} are invalid ({problem})",
        )


def tool_rounds(messages: list[dict[str, Any]]) -> int:
    """Assistant turns with tool calls since the last user message."""
    rounds = 0
    for message in reversed(messages):
        role = message.get("role")
        if role == "user":
            break
        if role == "assistant" and message.get("tool_calls"):
            rounds += 1
    return rounds


def rewrite_history(
    messages: list[dict[str, Any]], *, more_tools: bool = True
) -> list[dict[str, Any]]:
    """Rewrite native tool turns (Chat Completions dicts) into the JSON protocol's turns.

    A tool result becomes a user turn; the last one also says what to do next (answer, or
    call another tool when `more_tools`), which small models need spelled out.
    """
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        calls = message.get("tool_calls") or []
        if role == "assistant" and calls:
            for call in calls:
                function = call.get("function") or {}
                name = str(function.get("name") or "")
                names[str(call.get("id") or "")] = name
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    arguments = {}
                text = json.dumps({"tool": name, "arguments": arguments})
                out.append({"role": "assistant", "content": text})
        elif role == "tool":
            name = names.get(str(message.get("tool_call_id") or ""), "the tool")
            result = message.get("content") or ""
            out.append({"role": "user", "content": f"Result of {name}: {result}"})
        else:
            out.append({k: v for k, v in message.items() if k != "tool_calls"})
    if messages and messages[-1].get("role") == "tool":
        hint = (
            "Now answer the user's question with a final answer that uses this result, "
            "or call another tool."
            if more_tools
            else "Now answer the user's question with a final answer that uses this result."
        )
        last = out[-1]
        out[-1] = {**last, "content": f"{last['content']}\n{hint}"}
    return out


def _with_tools_prompt(messages: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """Put the tools prompt into the system message (chat templates keep only the first)."""
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{prompt}".strip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


register_tool_strategy("json", JsonToolStrategy)
