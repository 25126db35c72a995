"""Agent-to-agent messaging as data: outbound records, asks, topic subscriptions.

A step never delivers anything itself. ``ctx.send``, ``ctx.ask``, ``ctx.reply`` and
``ctx.publish`` each append one `Outbound` record to the turn; a completed turn hands them to
its runtime (`LocalRunner`, the simulation, the Flink operator), which routes them. Keeping the
routing rules here, as plain functions over plain records, is what lets every runtime deliver
messages the same way:

* a ``send`` goes to one agent address (or, for a topic address, like a ``publish``);
* an ``ask`` is a send that expects a reply: it carries a correlation id that is deterministic
  under replay, and the turn reports it in ``TurnOutcome.asks`` with its timeout, so the runtime
  can keep the open ask (not the user's state) and deliver `AskReply` or `AskTimeout`;
* a ``reply`` answers the sender of the message being handled and carries that message's
  correlation id when it was an ask;
* a ``publish`` goes to a `TopicAddress`; the agent types that declare a `Subscription` to the
  topic receive it, on one instance chosen by the subscription's key or on all instances.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from protocols.errors import UserError
from protocols.events import AskReply, Event, InputEvent

__all__ = [
    "BROADCAST",
    "OpenAsk",
    "Outbound",
    "OutboundKind",
    "Subscription",
    "ask_correlation_id",
    "ask_reply_event",
    "inbound_event",
    "message_type_name",
    "subscriptions_of",
    "topic_routes",
]

OutboundKind = Literal["send", "ask", "reply", "publish"]

_ASK_NAMESPACE = uuid.UUID("6f1c1d7e-7a55-4b53-9f0e-3f1a5e0c2a11")


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message a completed turn sends: to whom, what, and how.

    ``recipient`` is an `AgentAddress` or a `TopicAddress`. ``correlation_id`` is set for an
    ``ask`` (its own id) and for a ``reply`` to an ask (the ask's id); a reply with no
    correlation id answers a plain message and is delivered like a send.

    Unpacks as ``recipient, message`` for code written against the older ``(address, message)``
    tuples.
    """

    recipient: Any
    message: Any
    correlation_id: str | None = None
    kind: OutboundKind = "send"

    @property
    def reply_expected(self) -> bool:
        """True for an ask: the recipient's ``ctx.reply`` goes back to the asker."""
        return self.kind == "ask"

    def __iter__(self) -> Iterator[Any]:
        yield self.recipient
        yield self.message


@dataclass(frozen=True, slots=True)
class OpenAsk:
    """An ask a completed turn opened: the runtime waits ``timeout_s`` for its reply.

    The runtime keeps it (keyed by the asker and ``correlation_id``) with a deadline of its own
    clock plus ``timeout_s``: the first of reply and deadline wins, the other is dropped.
    """

    correlation_id: str
    recipient: Any
    timeout_s: float


def ask_correlation_id(address: Any, call_id: str) -> str:
    """The correlation id of the ask made as call ``call_id`` by the agent at ``address``.

    A UUID (it fits the envelope's ``correlation_id``) derived from the address and the
    deterministic call id, so a turn replayed after a restart asks under the same id.
    """
    return str(uuid.uuid5(_ASK_NAMESPACE, f"{address}|{call_id}"))


def message_type_name(message: Any) -> str:
    """The registered type name of ``message``, else its class name."""
    if isinstance(message, BaseModel):
        try:
            from protocols.registry import default_registry

            entry = default_registry.lookup(type(message))
        except Exception:  # pragma: no cover - a registry that cannot answer: use the class
            entry = None
        if entry is not None:
            return str(entry.name)
    return type(message).__name__


def _plain(message: Any) -> Any:
    return message.model_dump(mode="json") if isinstance(message, BaseModel) else message


def inbound_event(message: Any) -> Event:
    """The event an agent receives for ``message``: the message itself when it is an `Event`,
    else ``InputEvent(input=...)`` holding a pydantic model's JSON-mode dict or the plain
    value (as the Flink runtime does for envelope payloads)."""
    if isinstance(message, Event):
        return message
    return InputEvent(input=_plain(message))


def ask_reply_event(correlation_id: str, sender: Any, message: Any) -> AskReply:
    """The `AskReply` the asker receives for ``message``, a reply from ``sender``."""
    return AskReply(
        correlation_id=correlation_id,
        sender=str(sender),
        message_type=message_type_name(message),
        message=_plain(message),
    )


class _Broadcast:
    """The route of a subscription without a key: every live instance of the agent type."""

    _instance: _Broadcast | None = None

    def __new__(cls) -> _Broadcast:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "BROADCAST"

    def __reduce__(self) -> str:
        return "BROADCAST"


BROADCAST = _Broadcast()
"""Returned by `Subscription.route` for a broadcast subscription."""

KeySelector = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Subscription:
    """An agent type's subscription to a topic.

    Declare them on the workflow class::

        class Trader(Workflow):
            subscriptions = [
                Subscription("prices"),                   # every Trader instance gets each one
                Subscription("fills", key="trader_id"),   # the Trader whose key is msg.trader_id
                Subscription("news", key=lambda m: m.desk if m.urgent else None),
            ]

    ``key`` picks the one instance a published message goes to: a field name (read as an
    attribute or a dict item; picklable, so it travels to Flink workers as is) or a function of
    the message. A key of None means "not for this agent type" (a filter). Without ``key`` the
    subscription is a broadcast to every live instance of the type.
    """

    topic: str
    key: str | KeySelector | None = None

    def __post_init__(self) -> None:
        from protocols.addresses import TopicAddress

        try:
            TopicAddress(self.topic)
        except Exception as exc:
            raise UserError(f"Subscription topic {self.topic!r} is not valid: {exc}") from None
        if self.key is not None and not (isinstance(self.key, str) or callable(self.key)):
            raise UserError(
                f"Subscription({self.topic!r}) key must be a field name or a function of the "
                f"message, got {type(self.key).__name__!r}"
            )

    @property
    def broadcast(self) -> bool:
        return self.key is None

    def route(self, message: Any) -> str | _Broadcast | None:
        """The key of the instance ``message`` goes to, `BROADCAST`, or None (not delivered)."""
        if self.key is None:
            return BROADCAST
        if isinstance(self.key, str):
            if isinstance(message, Mapping):
                value = message.get(self.key)
            else:
                value = getattr(message, self.key, None)
        else:
            value = self.key(message)
        return None if value is None else str(value)


def subscriptions_of(workflow: Any) -> tuple[Subscription, ...]:
    """The subscriptions a workflow (or its engine) declares in ``subscriptions``; strings are
    broadcast subscriptions to that topic."""
    target = getattr(workflow, "workflow", workflow)  # an AgentEngine holds its workflow
    declared = getattr(target, "subscriptions", ()) or ()
    if isinstance(declared, str | Subscription):
        declared = [declared]
    found: list[Subscription] = []
    for item in declared:
        if isinstance(item, str):
            item = Subscription(item)
        if not isinstance(item, Subscription):
            raise UserError(
                f"{type(target).__name__}.subscriptions holds {type(item).__name__!r}; list "
                "Subscription('topic', key=...) items or topic names"
            )
        found.append(item)
    return tuple(found)


def topic_routes(
    subscriptions: Mapping[str, Sequence[Subscription]], topic: str, message: Any
) -> Iterable[tuple[str, str | _Broadcast]]:
    """``(agent_type, key or BROADCAST)`` for each subscription of each agent type matching a
    message published to ``topic``, in the mapping's order (an agent type subscribed twice to a
    topic receives the message once per matching subscription)."""
    for agent_type, subs in subscriptions.items():
        for sub in subs:
            if sub.topic != topic:
                continue
            route = sub.route(message)
            if route is not None:
                yield agent_type, route
