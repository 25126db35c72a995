"""Envelopes in and out of agent jobs: decoding with dead letters, outbound messages, the sink.

Inbound, each Kafka record value is decoded with `decode_envelope` (which never raises). A
record that cannot be delivered becomes a `DeadLetter` (reason, original bytes, source topic)
on a side output, written to a dead-letter topic by a transactional sink; the job keeps going.
A good envelope becomes an `Inbound` keyed by its recipient's key, carrying the event the
workflow receives and the envelope's metadata (sender, ids, trace context) for the turn.

What a step receives: the payload itself when it is an `Event` subclass (subscribe a step to
its class), else ``InputEvent(input=<the payload's JSON-mode dict>)``: a dict rather than the
model, because the turn's event is stored in keyed state as plain data and re-read on every
pass, so the step sees the same value on every pass and after a restore. A payload no step
accepts is dead-lettered (`processing_failed`) instead of failing inside the agent.

Outbound, `ctx.send`/`ctx.reply` messages of a completed turn become envelopes from the agent
to the recipient's inbox topic (`flink_bridge.topics`), caused by the message being handled
(same correlation id, causation = its message id, trace context and deadline inherited, as
`Envelope.wrap(cause=...)` does).

The sink is the Table API Kafka connector: it is the one PyFlink sink that writes a record
key, a value and headers taken from separate fields, and a topic chosen per record (the
``topic`` metadata column, with ``topic-pattern`` set so any topic is allowed).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from pydantic import BaseModel

from actors.messaging import Subscription, ask_reply_event
from flink_bridge.topics import topic_for
from protocols import (
    BUILTIN_EVENTS,
    DEFAULT_MAX_BYTES,
    AgentAddress,
    DeadLetter,
    DeadLetterReason,
    DecodeFailure,
    Envelope,
    TopicAddress,
    decode_envelope,
    default_registry,
    parse_address,
    to_kafka_record,
)
from protocols.errors import UserError
from protocols.events import Event, InputEvent, OutputEvent

__all__ = [
    "Inbound",
    "KeyedOutput",
    "MessageTypes",
    "OutRecord",
    "Published",
    "capture_message_types",
    "dead_letter_record",
    "decode_record",
    "envelope_kafka_sink",
    "envelope_meta",
    "install_message_types",
    "output_record",
    "send_record",
]

logger = logging.getLogger("flink_actors.flink_bridge")

DEAD_LETTERS_TAG_NAME = "agent-dead-letters"
SENDS_TAG_NAME = "agent-sends"


class Inbound(NamedTuple):
    """A decoded envelope on its way to the keyed agent operator."""

    key: str
    """The recipient's key: the Flink key."""
    event: bytes
    """The event the workflow receives, encoded with the operator's `EventCodec`."""
    meta: dict[str, Any]
    """`envelope_meta` of the envelope: sender, ids, trace context, deadline."""


class Published(NamedTuple):
    """A topic-addressed envelope on a topic the agent type subscribes to, routed.

    ``keyed`` has one `Inbound` per keyed subscription that chose a key; ``broadcast`` one
    `Inbound` (key ``""``) per broadcast subscription, to be copied to every live key by the
    fan-out (`flink_bridge.subscriptions`); ``skipped`` counts the keyed subscriptions whose
    key was None (the message is not for this type). Their meta has ``kind = "publish"``.
    """

    keyed: tuple[Inbound, ...]
    broadcast: tuple[Inbound, ...]
    skipped: int


class KeyedOutput(NamedTuple):
    """An output of an envelope-fed agent, with who emitted it and what caused it."""

    key: str
    output: Any
    meta: dict[str, Any] | None


class OutRecord(NamedTuple):
    """One Kafka record for the envelope sink."""

    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


MessageTypes = tuple[tuple[str, int, type[BaseModel], tuple[str, ...]], ...]


def capture_message_types() -> MessageTypes:
    """The user message types registered in this (driver) process, to re-register in workers.

    A class defined in a job's ``__main__`` travels to the TaskManager by value, without
    running its ``@message`` decorator there; classes of importable modules register on import
    (re-registering them is a no-op).
    """
    builtins = set(BUILTIN_EVENTS)
    return tuple(
        (e.name, e.version, e.cls, tuple(e.aliases))
        for e in default_registry
        if e.cls not in builtins
    )


def install_message_types(types: MessageTypes) -> None:
    """Register captured message types in this worker's default registry."""
    for name, version, cls, aliases in types:
        try:
            default_registry.register(cls, name, version, aliases=aliases)
        except UserError as exc:
            logger.warning("message type %r v%d not re-registered: %s", name, version, exc)


HEADER_KIND = "fa.kind"
HEADER_REPLY_EXPECTED = "fa.reply_expected"
HEADER_CORRELATION = "fa.correlation_id"


def _uuid_str(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def envelope_meta(env: Envelope) -> dict[str, Any]:
    """The metadata of `env` a turn needs (plain data: it is kept in keyed state).

    ``kind`` is the messaging kind the sender marked (``send``, ``ask``, ``reply``,
    ``publish``); ``ask_id`` the correlation id of an ask (the handling turn's ``ctx.reply``
    carries it back) or of the ask a reply answers (the asker's operator matches it against its
    open asks).
    """
    headers = env.headers or {}
    kind = headers.get(HEADER_KIND, "send")
    ask_id = headers.get(HEADER_CORRELATION) if kind in ("ask", "reply") else None
    return {
        "message_id": str(env.message_id),
        "type_name": env.type_name,
        "recipient": str(env.recipient),
        "sender": None if env.sender is None else str(env.sender),
        "correlation_id": _uuid_str(env.correlation_id),
        "traceparent": env.traceparent,
        "tracestate": env.tracestate,
        "deadline": env.deadline,
        "kind": kind,
        "ask_id": ask_id,
    }


def as_bytes(value: Any) -> bytes:
    """A Kafka value as `bytes`, whatever array form PyFlink hands over."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):  # Java byte[] as signed ints
        return bytes(b & 0xFF for b in value)
    return bytes(value)


def to_event(payload: BaseModel) -> Event:
    """The event a workflow receives for `payload` (see the module docstring)."""
    if isinstance(payload, Event):
        return payload
    return InputEvent(input=payload.model_dump(mode="json"))


def _event_of(env: Envelope) -> Event:
    """What the recipient's step receives: an `AskReply` for a reply to an ask, else the
    payload as `to_event` makes it."""
    headers = env.headers or {}
    ask_id = headers.get(HEADER_CORRELATION)
    if headers.get(HEADER_KIND) == "reply" and ask_id:
        return ask_reply_event(ask_id, env.sender, env.payload)
    return to_event(env.payload)


def decode_record(
    data: Any,
    *,
    agent_type: str,
    accepts: Callable[[Event], bool],
    encode_event: Callable[[Event], bytes],
    source_topic: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now: float | None = None,
    subscriptions: Sequence[Subscription] = (),
) -> Inbound | Published | DeadLetter:
    """One Kafka value -> an `Inbound` for the agent, or the `DeadLetter` saying why not.

    An envelope addressed to ``topic:<name>`` is `Published` (routed by each of
    `subscriptions` to that topic) when the agent type subscribes to ``<name>``, else a dead
    letter. Never raises: contract 4, bad input never stops the job.
    """
    raw = b""
    try:
        raw = as_bytes(data)
        decoded = decode_envelope(raw, max_bytes=max_bytes, now=now)
        if isinstance(decoded, DecodeFailure):
            return decoded.to_dead_letter(source_topic=source_topic)
        recipient = decoded.recipient
        problem = None
        if isinstance(recipient, TopicAddress) and any(
            s.topic == recipient.topic for s in subscriptions
        ):
            return _published(
                raw,
                decoded,
                recipient.topic,
                subscriptions,
                agent_type,
                accepts,
                encode_event,
                source_topic,
            )
        if not isinstance(recipient, AgentAddress):
            problem = (
                f"recipient {str(recipient)!r} is a topic agent type {agent_type!r} does not "
                "subscribe to; declare Subscription(<topic>) on the workflow to receive it"
            )
        elif recipient.agent_type != agent_type:
            problem = (
                f"recipient {str(recipient)!r} is not an agent of type {agent_type!r}, which this "
                f"job runs; write it to {topic_for(recipient)!r}"
            )
        event = None if problem else _event_of(decoded)
        if event is not None and not accepts(event):
            problem = (
                f"no step of agent type {agent_type!r} accepts {type(event).__name__!r} "
                f"(message {decoded.type_name!r}); add a @step for it"
            )
        if problem or event is None or not isinstance(recipient, AgentAddress):
            return _processing_failed(raw, problem or "undeliverable", source_topic, decoded)
        return Inbound(recipient.key, encode_event(event), envelope_meta(decoded))
    except Exception as exc:  # a bug of ours, or a payload that cannot be re-encoded
        return DeadLetter(
            reason=DeadLetterReason.PROCESSING_FAILED,
            message=f"cannot deliver: {type(exc).__name__}: {exc}",
            original=raw,
            source_topic=source_topic,
            failed_at=time.time(),
        )


def _published(
    raw: bytes,
    env: Envelope,
    topic: str,
    subscriptions: Sequence[Subscription],
    agent_type: str,
    accepts: Callable[[Event], bool],
    encode_event: Callable[[Event], bytes],
    source_topic: str | None,
) -> Published | DeadLetter:
    """Route a published envelope with each subscription to its topic (`Subscription.route`):
    a key, `BROADCAST`, or None (skipped). A key selector that raises makes a dead letter."""
    event = to_event(env.payload)
    if not accepts(event):
        message = (
            f"no step of agent type {agent_type!r} accepts {type(event).__name__!r} (message "
            f"{env.type_name!r} published to {topic!r}); add a @step for it"
        )
        return _processing_failed(raw, message, source_topic, env)
    meta = envelope_meta(env)
    meta["kind"] = "publish"
    meta["ask_id"] = None
    entry = encode_event(event)
    keyed: list[Inbound] = []
    broadcast: list[Inbound] = []
    skipped = 0
    for sub in subscriptions:
        if sub.topic != topic:
            continue
        try:
            route = sub.route(env.payload)
        except Exception as exc:
            message = (
                f"the key of Subscription({topic!r}) of agent type {agent_type!r} raised "
                f"{type(exc).__name__}: {exc}; make the key selector total (None skips)"
            )
            return _processing_failed(raw, message, source_topic, env)
        if route is None:
            skipped += 1
        elif isinstance(route, str):
            keyed.append(Inbound(route, entry, dict(meta)))
        else:  # BROADCAST
            broadcast.append(Inbound("", entry, dict(meta)))
    return Published(tuple(keyed), tuple(broadcast), skipped)


def _processing_failed(
    raw: bytes, message: str, source_topic: str | None, env: Envelope
) -> DeadLetter:
    return DeadLetter(
        reason=DeadLetterReason.PROCESSING_FAILED,
        message=message,
        original=raw,
        source_topic=source_topic,
        failed_at=time.time(),
        type_name=env.type_name,
        type_version=env.type_version,
        recipient=str(env.recipient),
    )


def dead_letter_record(letter: DeadLetter, topic: str) -> OutRecord:
    """The dead-letter topic's record for `letter` (keyed by recipient when known)."""
    key, value, headers = letter.to_kafka_record()
    return OutRecord(topic, key, value, dict(headers))


def _record(env: Envelope, topic: str, key: str) -> OutRecord:
    _, value, headers = to_kafka_record(env)
    return OutRecord(topic, key.encode(), value, dict(headers))


def _wrap(
    payload: BaseModel,
    recipient: AgentAddress | TopicAddress,
    sender: AgentAddress,
    cause: dict[str, Any] | None,
) -> Envelope:
    """`Envelope.wrap(..., cause=...)` from a cause kept as `envelope_meta`."""
    if cause is None:
        return Envelope.wrap(payload, recipient=recipient, sender=sender)
    message_id = UUID(cause["message_id"])
    correlation = cause.get("correlation_id")
    return Envelope.wrap(
        payload,
        recipient=recipient,
        sender=sender,
        correlation_id=UUID(correlation) if correlation else message_id,
        causation_id=message_id,
        traceparent=cause.get("traceparent"),
        tracestate=cause.get("tracestate"),
        deadline=cause.get("deadline"),
    )


def send_record(
    recipient: Any,
    message: Any,
    *,
    sender: AgentAddress,
    cause: dict[str, Any] | None,
    correlation_id: str | None = None,
    kind: str = "send",
) -> OutRecord:
    """The record of one `ctx.send`/`ask`/`reply`/`publish`: to the recipient's inbox topic,
    keyed by the recipient (an agent) or by the sender (a topic). Raises `UserError` for a
    message that is not a registered pydantic model.

    An ask, or a reply to one, carries its ``correlation_id`` as the envelope's correlation id
    (instead of the one inherited from the cause). The kind travels in the envelope's headers
    and the Kafka record's headers (``fa.kind``; ``fa.reply_expected = "1"`` on an ask;
    ``fa.correlation_id``), so the receiving operator can tell an ask to answer and a reply to
    match against its open asks.
    """
    address = parse_address(recipient) if isinstance(recipient, str) else recipient
    if not isinstance(message, BaseModel):
        raise UserError(
            f"ctx.send to {str(address)!r}: the message must be a registered pydantic model, "
            f"got {type(message).__name__!r}; decorate its class with @message('<name>')"
        )
    env = _wrap(message, address, sender, cause)
    marks: dict[str, str] = {}
    if kind != "send":
        marks[HEADER_KIND] = kind
    if correlation_id is not None:
        marks[HEADER_CORRELATION] = correlation_id
        if kind == "ask":
            marks[HEADER_REPLY_EXPECTED] = "1"
        update: dict[str, Any] = {"correlation_id": UUID(correlation_id)}
        env = env.model_copy(update={**update, "headers": {**env.headers, **marks}})
    elif marks:
        env = env.model_copy(update={"headers": {**env.headers, **marks}})
    key = str(address) if isinstance(address, AgentAddress) else str(sender)
    record = _record(env, topic_for(address), key)
    if marks:
        record.headers.update({k: v.encode() for k, v in marks.items()})
    return record


def output_record(
    output: Any, *, topic: str, sender: AgentAddress, cause: dict[str, Any] | None
) -> OutRecord:
    """An agent output as an envelope to ``topic:<topic>``, keyed by the emitting agent.

    The payload is the output itself when it is a registered message, else
    ``OutputEvent(output=...)``.
    """
    payload = output
    if not (isinstance(output, BaseModel) and default_registry.lookup(type(output))):
        payload = OutputEvent(output=output)
    env = _wrap(payload, TopicAddress(topic), sender, cause)
    return _record(env, topic, str(sender))


def outbound_records(
    sends: Iterable[Any], *, sender: AgentAddress, cause: dict[str, Any] | None
) -> Iterator[OutRecord | str]:
    """Records of a turn's sends (`actors.messaging.Outbound` records, or older
    ``(recipient, message)`` pairs); a send that cannot be encoded yields its error text."""
    for item in sends:
        recipient, message = item
        try:
            yield send_record(
                recipient,
                message,
                sender=sender,
                cause=cause,
                correlation_id=getattr(item, "correlation_id", None),
                kind=getattr(item, "kind", "send"),
            )
        except Exception as exc:
            yield f"{type(exc).__name__}: {exc}"


# -- Flink functions (pyflink imported lazily) -------------------------------------------------


class EnvelopeDecodeFunction:
    """Mixed into pyflink's `ProcessFunction` by `build_decode_function`."""

    def __init__(
        self,
        *,
        agent_type: str,
        event_types: tuple[type[Event], ...],
        message_types: MessageTypes,
        source_topic: str,
        dead_letter_topic: str | None,
        dead_letters_tag: Any,
        max_bytes: int,
        subscriptions: tuple[Subscription, ...] = (),
        broadcasts_tag: Any = None,
    ) -> None:
        self.agent_type = agent_type
        self.event_types = event_types
        self.message_types = message_types
        self.source_topic = source_topic
        self.dead_letter_topic = dead_letter_topic
        self.dead_letters_tag = dead_letters_tag
        self.max_bytes = max_bytes
        self.subscriptions = tuple(subscriptions)
        self.broadcasts_tag = broadcasts_tag

    def open(self, runtime_context: Any) -> None:
        from flink_bridge.codec import EventCodec

        install_message_types(self.message_types)
        self.codec = EventCodec(list(self.event_types))
        self.dead_letters = 0
        self.delivered = 0
        self.skipped = 0
        self.counter: Any = None
        self.skipped_counter: Any = None
        self.reason_counters: dict[str, Any] = {}
        try:  # a Flink metric when the execution mode offers one; else the log says it
            self.metrics = runtime_context.get_metrics_group().add_group("flink_actors")
            self.counter = self.metrics.counter("dead_letters")
            self.skipped_counter = self.metrics.counter("subscription_skipped")
        except Exception as exc:  # pragma: no cover - depends on the execution mode
            self.metrics = None
            logger.info("no Flink metric group for dead letters (%s); counting in logs", exc)

    def _accepts(self, event: Event) -> bool:
        return isinstance(event, self.event_types)

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        result = decode_record(
            value,
            agent_type=self.agent_type,
            accepts=self._accepts,
            encode_event=self.codec.encode,
            source_topic=self.source_topic,
            max_bytes=self.max_bytes,
            subscriptions=self.subscriptions,
        )
        if isinstance(result, Inbound):
            self.delivered += 1
            yield result
            return
        if isinstance(result, Published):
            yield from self._published(result)
            return
        self._count(result)
        if self.dead_letters_tag is not None:
            topic = self.dead_letter_topic or ""
            yield self.dead_letters_tag, dead_letter_record(result, topic)

    def _published(self, result: Published) -> Iterator[Any]:
        """Keyed routes go on to the agent; broadcasts to the fan-out's side output."""
        for inbound in result.keyed:
            self.delivered += 1
            yield inbound
        for inbound in result.broadcast:
            if self.broadcasts_tag is not None:
                yield self.broadcasts_tag, inbound
        if result.skipped:
            self.skipped += result.skipped
            if self.skipped_counter is not None:
                self.skipped_counter.inc(result.skipped)
            logger.debug(
                "published envelope skipped by %d subscription(s) of %r (key None); %d so far",
                result.skipped,
                self.agent_type,
                self.skipped,
            )

    def _count(self, letter: DeadLetter) -> None:
        self.dead_letters += 1
        if self.counter is not None:
            self.counter.inc()
            reason = letter.reason.value
            if reason not in self.reason_counters and self.metrics is not None:
                self.reason_counters[reason] = self.metrics.counter(f"dead_letters_{reason}")
            if reason in self.reason_counters:
                self.reason_counters[reason].inc()
        logger.warning(
            "dead letter #%d from %r (%s): %s",
            self.dead_letters,
            self.source_topic,
            letter.reason.value,
            letter.message,
        )


def build_decode_function(**kwargs: Any) -> Any:
    """The `ProcessFunction` decoding one topic's envelopes (see `EnvelopeDecodeFunction`)."""
    from pyflink.datastream import ProcessFunction

    cls = type("EnvelopeDecodeFunction", (EnvelopeDecodeFunction, ProcessFunction), {})
    return cls(**kwargs)


_ROW_FIELDS = ["topic", "k", "v", "headers"]


def _to_row(record: OutRecord) -> Any:
    from pyflink.common import Row

    return Row(record.topic, record.key, record.value, record.headers)


def envelope_kafka_sink(
    records: Any,
    *,
    bootstrap_servers: str,
    exactly_once: bool = True,
    transactional_id_prefix: str | None = None,
    name: str = "envelopes",
) -> Any:
    """Write a stream of `OutRecord`s to Kafka: topic, key, value and headers per record,
    transactionally by default (visible to read_committed readers at checkpoints)."""
    from pyflink.common import Types
    from pyflink.table import StreamTableEnvironment

    from flink_bridge.kafka import TRANSACTION_TIMEOUT_MS, _check_loopback

    _check_loopback(bootstrap_servers)
    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    row_type = Types.ROW_NAMED(
        _ROW_FIELDS,
        [Types.STRING(), bytes_type, bytes_type, Types.MAP(Types.STRING(), bytes_type)],
    )
    rows = records.map(_to_row, output_type=row_type).name(f"{name}:rows")
    env = records.get_execution_environment()
    t_env = getattr(env, "_flink_actors_table_env", None)
    if t_env is None:
        t_env = StreamTableEnvironment.create(env)
        env._flink_actors_table_env = t_env
    table_name = f"fa_sink_{uuid.uuid4().hex[:12]}"
    prefix = transactional_id_prefix or f"flink-actors-{name}-{uuid.uuid4().hex[:8]}"
    guarantee = "exactly-once" if exactly_once else "at-least-once"
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE `{table_name}` (
            `topic` STRING METADATA,
            `k` BYTES,
            `v` BYTES,
            `headers` MAP<STRING, BYTES> METADATA
        ) WITH (
            'connector' = 'kafka',
            'topic-pattern' = '.+',
            'properties.bootstrap.servers' = '{bootstrap_servers}',
            'properties.transaction.timeout.ms' = '{TRANSACTION_TIMEOUT_MS}',
            'key.format' = 'raw',
            'key.fields' = 'k',
            'value.format' = 'raw',
            'value.fields-include' = 'EXCEPT_KEY',
            'sink.delivery-guarantee' = '{guarantee}',
            'sink.transactional-id-prefix' = '{prefix}'
        )"""
    )
    statements = t_env.create_statement_set()
    statements.add_insert(table_name, t_env.from_data_stream(rows))
    statements.attach_as_datastream()
    return table_name
