"""Built-in runtime events: what every workflow can receive and emit.

These are wire types: they travel in envelopes, live in the call journal and in Flink state,
so they hold only msgpack-friendly data (str, int, float, bool, None, lists, dicts, models).
Events accept their first fields positionally, so `OutputEvent(response)` works as in the
proposal's sketch.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

_M = TypeVar("_M", bound=BaseModel)

__all__ = [
    "AskReply",
    "AskTimeout",
    "ChatMessage",
    "ChatModelEvent",
    "ChatModelResponseEvent",
    "ErrorEvent",
    "Event",
    "InputEvent",
    "OutputEvent",
    "ToolCall",
    "ToolCallEvent",
    "ToolResultEvent",
    "Usage",
]


class Event(BaseModel):
    """Base of every event a workflow step can receive or send.

    User events subclass it. Positional arguments fill the fields in declaration order.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)

    def __init__(self, /, *args: Any, **data: Any) -> None:
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(
                    f"{type(self).__name__} takes at most {len(names)} positional arguments "
                    f"({len(args)} given)"
                )
            for name, value in zip(names, args, strict=False):
                if name in data:
                    raise TypeError(f"{type(self).__name__} got two values for {name!r}")
                data[name] = value
        super().__init__(**data)

    # Validation (`model_validate`, decoding a payload) never passes positional arguments, so
    # pydantic may skip this `__init__` there and build instances in its core: without the
    # marker it calls back into Python for every event validated, which doubles the cost.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


class Usage(BaseModel):
    """Tokens used by one model call, and its cost when the price is known."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __eq__(self, other: object) -> bool:
        """`BaseModel.__eq__` with a short cut for two plain `Usage`.

        Dumping a `ChatModelResponseEvent` compares its usage with the default (to leave the
        default out), and `BaseModel.__eq__` is a slow Python method.
        """
        if type(other) is Usage and type(self) is Usage:
            return self.__dict__ == other.__dict__  # type: ignore[no-any-return]
        return super().__eq__(other)

    def __hash__(self) -> int:
        # Defining __eq__ drops the hash pydantic gives frozen models: the same one again.
        return hash((self.input_tokens, self.output_tokens, self.cost_usd))

    def __add__(self, other: Usage) -> Usage:
        # Usage is frozen, so adding nothing may return the other side itself: most results
        # of tools (and of models that report nothing) carry an empty usage, and building a
        # model here was 5% of a turn's CPU in the operator's profile.
        if other.input_tokens == 0 and other.output_tokens == 0 and other.cost_usd is None:
            return self
        if self.input_tokens == 0 and self.output_tokens == 0 and self.cost_usd is None:
            return other
        cost = (
            None
            if self.cost_usd is None and other.cost_usd is None
            else (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        )
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=cost,
        )


class ToolCall(BaseModel):
    """One tool call requested by a model. `arguments` is the JSON text the model produced."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str = "{}"


class ChatMessage(BaseModel):
    """One message of a chat conversation, in the OpenAI role convention."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        return cls(role="user", content=content)

    @classmethod
    def assistant(
        cls, content: str | None, tool_calls: list[ToolCall] | None = None
    ) -> ChatMessage:
        return cls(role="assistant", content=content, tool_calls=tool_calls or [])

    @classmethod
    def tool(cls, tool_call_id: str, content: str, *, name: str | None = None) -> ChatMessage:
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)


def _as_chat_message(value: Any) -> Any:
    """Plain strings in a conversation are user messages; dicts are parsed as messages."""
    if isinstance(value, str):
        return ChatMessage.user(value)
    return value


class InputEvent(Event):
    """Delivered once for each input record that reaches an agent."""

    builtin_name: ClassVar[str] = "flink_actors.InputEvent"
    input: Any


class OutputEvent(Event):
    """Sent by a step to emit one output record."""

    builtin_name: ClassVar[str] = "flink_actors.OutputEvent"
    output: Any


class ChatModelEvent(Event):
    """Sent by a step to invoke the named model; answered by a `ChatModelResponseEvent`.

    The runtime runs the model's tool calls and feeds their results back to the model until
    it answers without tool calls, or `max_iterations` model calls have been made.
    """

    builtin_name: ClassVar[str] = "flink_actors.ChatModelEvent"
    model: str
    messages: list[ChatMessage]
    max_iterations: int = 10

    @field_validator("messages", mode="before")
    @classmethod
    def _coerce_messages(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and any(map(isinstance, value, repeat(str))):
            return [_as_chat_message(v) for v in value]
        return value


class ChatModelResponseEvent(Event):
    """The final answer of a model invoked by a `ChatModelEvent`."""

    builtin_name: ClassVar[str] = "flink_actors.ChatModelResponseEvent"
    model: str
    response: ChatMessage
    usage: Usage = Usage()
    """A shared frozen default: a factory would build a `Usage` on every dump (to leave the
    default out, pydantic compares with a fresh default) and on every decode without it."""
    request_id: str = ""


class ToolCallEvent(Event):
    """Sent by a step to call a tool directly; answered by a `ToolResultEvent`."""

    builtin_name: ClassVar[str] = "flink_actors.ToolCallEvent"
    tool_name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    call_id: str = ""


class ToolResultEvent(Event):
    """The result of a tool call, or its error text when `is_error` is set."""

    builtin_name: ClassVar[str] = "flink_actors.ToolResultEvent"
    tool_name: str
    result: Any = None
    is_error: bool = False
    call_id: str = ""


class ErrorEvent(Event):
    """A failure that a workflow can handle: a step that raised, a failed model or tool call.

    `error_type` is the exception class name, `retryable` says whether a retry could help,
    `source_event` names the type of event being handled when it happened.
    """

    builtin_name: ClassVar[str] = "flink_actors.ErrorEvent"
    error_type: str
    message: str
    retryable: bool = False
    source_event: str | None = None
    step: str | None = None
    cause: str | None = None


# -- request/reply (ctx.ask) -------------------------------------------------------------------


class AskReply(Event):
    """The answer to a ``ctx.ask``: delivered to the asking agent when the recipient answered
    with ``ctx.reply`` before the ask's timeout.

    `message` is the reply in JSON mode (a dict for a pydantic model, else the plain value), so
    the event stays plain data in the journal and in keyed state; `parse(MyReply)` turns it back
    into the model. `message_type` is the reply's registered type name (or its class name).
    """

    builtin_name: ClassVar[str] = "flink_actors.AskReply"
    correlation_id: str
    sender: str
    message_type: str
    message: Any = None

    def parse(self, model_type: type[_M]) -> _M:
        """The reply as an instance of ``model_type`` (validated from `message`)."""
        return model_type.model_validate(self.message)


class AskTimeout(Event):
    """Delivered to the asking agent when no reply to its ``ctx.ask`` came within
    `timeout_s` (simulated or processing time, depending on the runtime). A reply arriving
    later is dropped."""

    builtin_name: ClassVar[str] = "flink_actors.AskTimeout"
    correlation_id: str
    recipient: str
    timeout_s: float
