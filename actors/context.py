"""`RunnerContext`: what a step may do besides changing its state.

A context is made for one step invocation and is valid only while that step runs; do not
store it. Everything a step does through it is buffered and committed only when the step
returns: emitted events, messages to other agents, timers. A step that raises or suspends
commits nothing.

Calls to the outside world (``ctx.call_tool``, ``ctx.chat``, ``ctx.call``) look synchronous. The
engine answers them from the turn's journal; when the result is not journaled yet the call
records the pending effect and raises `Suspend`, an internal signal the engine catches. The
runtime executes the effect, journals its result and re-runs the turn, and this time the call
returns the result. Steps must therefore be deterministic: the same event, state and call
results must lead to the same calls in the same order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.effects import EffectKind, EffectResult
from actors.messaging import OpenAsk, Outbound, OutboundKind, ask_correlation_id
from protocols.errors import (
    AgentRunError,
    ContextError,
    ModelNonRetryableError,
    ModelRetryableError,
    ToolError,
    UserError,
)
from protocols.events import ChatMessage, Event

if TYPE_CHECKING:
    from actors.engine import _Turn

__all__ = ["RunnerContext", "Suspend"]


class Suspend(BaseException):  # noqa: N818 - a control-flow signal, outside the error tree
    """Raised inside a step when a call's result is not journaled yet. It derives from
    BaseException so that a step's ``except Exception`` cannot swallow it."""


class RunnerContext:
    """The context passed to a step as ``ctx``."""

    def __init__(self, turn: _Turn, path: str, event: Event) -> None:
        self._turn = turn
        self._path = path
        self._event = event
        self._calls = 0
        self.events: list[Event] = []
        self.sends: list[Outbound] = []
        self.asks: list[OpenAsk] = []
        self.timers: list[tuple[float, Event]] = []
        self.errors: list[Any] = []

    # -- identity -----------------------------------------------------------------------------

    @property
    def address(self) -> Any:
        """This agent's own address (`protocols.AgentAddress`)."""
        return self._turn.address

    @property
    def sender(self) -> Any:
        """The address of the agent that sent the message being handled, or None for an input."""
        return self._turn.sender

    @property
    def correlation_id(self) -> str | None:
        """The correlation id of the ask being handled (what ``ctx.reply`` answers), or None
        when the message being handled was not sent with ``ctx.ask``."""
        return getattr(self._turn, "correlation_id", None)

    @property
    def turn_id(self) -> str:
        """The id of the current turn (unique per agent key and incoming message)."""
        return self._turn.turn_id

    # -- emitting -----------------------------------------------------------------------------

    def send_event(self, event: Event) -> None:
        """Emit an event inside this turn; steps subscribed to its type receive it next.

        ``OutputEvent(x)`` emits ``x`` as an output of the agent; ``ChatModelEvent`` invokes a
        model; ``ToolCallEvent`` calls a tool.
        """
        if not isinstance(event, Event):
            raise UserError(
                f"send_event takes an Event, got {type(event).__name__!r}; wrap plain values "
                "in OutputEvent(value) or define an Event subclass"
            )
        self.events.append(event)

    def send(self, address: Any, message: Any) -> None:
        """Send ``message`` to another agent at ``address`` (an `AgentAddress`, a
        `TopicAddress`, or its string form ``"agent_type/key"`` / ``"topic:name"``); delivered
        after the turn commits. A topic address publishes (see `publish`)."""
        recipient = _parse_address(address)
        kind: OutboundKind = "publish" if _is_topic(recipient) else "send"
        self.sends.append(Outbound(recipient, message, kind=kind))

    def ask(self, address: Any, message: Any, *, timeout_s: float = 30.0) -> str:
        """Send ``message`` to the agent at ``address`` and expect an answer; return the ask's
        correlation id.

        The step does not wait: the answer arrives later as a turn of its own, an `AskReply`
        (when the recipient answered with ``ctx.reply`` within ``timeout_s``) or an
        `AskTimeout` (when it did not); both carry the returned correlation id, so keep it in
        the state to match them. The id is derived from the turn and the call index, so a
        replayed turn asks under the same id.
        """
        recipient = _parse_address(address)
        if _is_topic(recipient):
            raise UserError(
                f"ctx.ask needs an agent address, got the topic {str(recipient)!r}; "
                "ask one agent ('agent_type/key') or publish to the topic"
            )
        if not timeout_s > 0:
            raise UserError(f"ctx.ask timeout_s must be > 0, got {timeout_s!r}")
        correlation_id = ask_correlation_id(self._turn.address, self._next_id())
        self.sends.append(Outbound(recipient, message, correlation_id, kind="ask"))
        self.asks.append(OpenAsk(correlation_id, recipient, float(timeout_s)))
        return correlation_id

    def publish(self, topic: Any, message: Any) -> None:
        """Publish ``message`` to a topic (``"prices"``, ``"topic:prices"`` or a
        `TopicAddress`); every agent type subscribed to it receives it (see
        `actors.messaging.Subscription`)."""
        from protocols.addresses import TopicAddress

        if isinstance(topic, str) and not topic.startswith("topic:"):
            try:
                recipient: Any = TopicAddress(topic)
            except Exception as exc:
                raise UserError(f"ctx.publish: topic {topic!r} is not valid: {exc}") from None
        else:
            recipient = _parse_address(topic)
        if not _is_topic(recipient):
            raise UserError(
                f"ctx.publish takes a topic, got the agent address {str(recipient)!r}; "
                "use ctx.send for one agent"
            )
        self.sends.append(Outbound(recipient, message, kind="publish"))

    def reply(self, message: Any) -> None:
        """Answer whoever sent the message being handled: the sending agent, or, for an input
        record, the agent's output stream. Answering an ask carries its correlation id, so the
        asker receives an `AskReply`."""
        if self._turn.sender is None:
            from protocols.events import OutputEvent

            self.events.append(OutputEvent(output=message))
        else:
            self.sends.append(
                Outbound(self._turn.sender, message, self.correlation_id, kind="reply")
            )

    def schedule(self, delay_s: float, event: Event) -> None:
        """Deliver ``event`` to this agent after ``delay_s`` seconds, as a turn of its own."""
        if not isinstance(event, Event):
            raise UserError(f"schedule takes an Event, got {type(event).__name__!r}")
        if delay_s < 0:
            raise UserError(f"schedule delay_s must be >= 0, got {delay_s!r}")
        self.timers.append((float(delay_s), event))

    # -- journaled calls ----------------------------------------------------------------------

    def call(self, kind: EffectKind | str, target: str, payload: dict[str, Any]) -> Any:
        """Make one journaled call and return its value; raise the typed error if it failed.

        ``kind`` is an `EffectKind` (``"model"``, ``"tool"``, ``"mcp"``, ``"context"``); the
        target and payload conventions are those of `WorkflowExecutor`.
        """
        result = self._turn.await_one(
            self._next_id(), EffectKind(kind), target, payload, rate_key=None
        )
        return _value_or_raise(result, EffectKind(kind), target)

    def call_tool(self, tool_name: str, /, **arguments: Any) -> Any:
        """Call a tool by name (a local ``@tool``, an MCP tool, or ``"server/tool"``) and
        return its result; raises `ToolError` when it fails."""
        call_id = self._next_id()  # numbered even when resolving fails: ids stay stable
        kind, target = self._turn.resolve_tool(tool_name)
        result = self._turn.await_one(
            call_id, kind, target, {"arguments": arguments}, rate_key=None
        )
        return _value_or_raise(result, kind, target)

    def chat(
        self, model: str, messages: list[ChatMessage | str], *, max_iterations: int = 10
    ) -> ChatMessage:
        """Ask a model and return its final answer, running its tool calls in between.

        Tool failures are fed back to the model and also reported as `ErrorEvent`s.
        Raises `ModelError` when the model call fails or ``max_iterations`` is reached.
        """
        convo = [ChatMessage.user(m) if isinstance(m, str) else m for m in messages]
        answer, errors = self._turn.model_loop(self._next_id(), model, convo, max_iterations)
        self.errors.extend(errors[:-1] if answer is None else errors)
        if answer is None:
            last = errors[-1]
            exc_type = ModelRetryableError if last.retryable else ModelNonRetryableError
            raise exc_type(last.message)
        return answer

    def search(self, source: str, query: Any, **options: Any) -> Any:
        """Query a context source (vector, SQL, REST) by name; raises `ContextError`."""
        return self.call(EffectKind.CONTEXT, source, {"query": query, **options})

    def _next_id(self) -> str:
        call_id = f"{self._path}#{self._calls}"
        self._calls += 1
        return call_id


def _is_topic(address: Any) -> bool:
    from protocols.addresses import TopicAddress

    return isinstance(address, TopicAddress)


def _parse_address(address: Any) -> Any:
    """Parse string addresses early, so a malformed one fails in the step that sent it."""
    if not isinstance(address, str):
        return address
    try:
        from protocols.addresses import parse_address
    except ImportError:  # pragma: no cover - protocols without addresses: keep the string
        return address
    return parse_address(address)


_ERRORS: dict[EffectKind, type[AgentRunError]] = {
    EffectKind.TOOL: ToolError,
    EffectKind.MCP: ToolError,
    EffectKind.CONTEXT: ContextError,
}


def _value_or_raise(result: EffectResult, kind: EffectKind, target: str) -> Any:
    if result.error is None:
        return result.value
    err = result.error
    message = f"{kind.value} call {target!r} failed: {err.error_type}: {err.message}"
    if kind is EffectKind.MODEL:
        exc_type: type[AgentRunError] = (
            ModelRetryableError if err.retryable else ModelNonRetryableError
        )
    else:
        exc_type = _ERRORS[kind]
    exc = exc_type(message)
    exc.retryable = err.retryable
    raise exc
