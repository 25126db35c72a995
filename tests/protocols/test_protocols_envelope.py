"""Envelope: construction, lineage (reply/cause), retries, ids, lazy payload, JSON shape."""

from __future__ import annotations

import time
from uuid import UUID

import pytest

from protocols import (
    AgentAddress,
    Envelope,
    EnvelopeHeader,
    SerializationError,
    TopicAddress,
    UserError,
    decode_envelope,
    encode_envelope,
    new_message_id,
)
from protocols.events import ChatMessage, ChatModelResponseEvent, InputEvent
from protocols.ids import uuid7_time

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_wrap_fills_type_ids_and_clock() -> None:
    before = time.time()
    env = Envelope.wrap(InputEvent({"q": 1}), recipient="agent/k1")
    assert env.type_name == "flink_actors.InputEvent" and env.type_version == 1
    assert env.recipient == AgentAddress("agent", "k1")
    assert env.sender is None and env.attempt == 1 and env.headers == {}
    assert env.message_id.version == 7
    assert before - 0.01 <= env.created_at <= time.time() + 0.01
    assert abs(uuid7_time(env.message_id) - env.created_at) < 1.0
    assert env.payload == InputEvent({"q": 1})


def test_wrap_accepts_address_objects_and_topics() -> None:
    env = Envelope.wrap(
        InputEvent(1), recipient=TopicAddress("news"), sender=AgentAddress("a", "b")
    )
    assert str(env.recipient) == "topic:news" and str(env.sender) == "a/b"


def test_wrap_reports_bad_arguments_as_user_errors() -> None:
    with pytest.raises(UserError, match="malformed agent address 'nokey'"):
        Envelope.wrap(InputEvent(1), recipient="nokey")
    with pytest.raises(UserError, match="traceparent"):
        Envelope.wrap(InputEvent(1), recipient="a/b", traceparent="nope")
    with pytest.raises(UserError, match="registered pydantic message"):
        Envelope.wrap({"x": 1}, recipient="a/b")  # type: ignore[arg-type]


def test_reply_and_cause_carry_lineage_and_trace() -> None:
    request = Envelope.wrap(
        InputEvent("hi"),
        recipient="assistant/u1",
        sender="frontend/s9",
        traceparent=TRACE,
        tracestate="k=v",
        deadline=time.time() + 60,
    )
    answer = ChatModelResponseEvent(model="m", response=ChatMessage.assistant("hello"))
    reply = request.reply(answer)
    assert reply.recipient == request.sender and reply.sender == request.recipient
    assert reply.causation_id == request.message_id
    assert reply.correlation_id == request.message_id  # the first message starts the chain
    assert (reply.traceparent, reply.tracestate, reply.deadline) == (
        TRACE,
        "k=v",
        request.deadline,
    )
    follow = Envelope.wrap(InputEvent("x"), recipient="tools/t1", cause=reply)
    assert follow.correlation_id == request.message_id  # the conversation keeps its id
    assert follow.causation_id == reply.message_id
    orphan = Envelope.wrap(InputEvent("x"), recipient="a/b")
    with pytest.raises(UserError, match="no sender to reply to"):
        orphan.reply(InputEvent("y"))


def test_next_attempt_keeps_identity_and_payload_bytes() -> None:
    env = Envelope.wrap(InputEvent([1, 2]), recipient="a/b")
    received = decode_envelope(encode_envelope(env), validate=False)
    assert isinstance(received, Envelope)
    retry = received.next_attempt()
    assert retry.attempt == 2 and retry.message_id == env.message_id
    assert retry.payload_bytes == received.payload_bytes
    again = decode_envelope(encode_envelope(retry))
    assert isinstance(again, Envelope) and again.attempt == 2 and again.payload == env.payload


def test_message_ids_are_time_ordered_and_unique() -> None:
    ids = [new_message_id() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids[:50])
    assert abs(uuid7_time(ids[-1]) - time.time()) < 5


def test_equality_compares_payloads_read_or_not() -> None:
    env = Envelope.wrap(InputEvent("x"), recipient="a/b")
    data = encode_envelope(env)
    lazy_a, lazy_b = decode_envelope(data, validate=False), decode_envelope(data, validate=False)
    assert lazy_a == lazy_b == env
    other = Envelope.wrap(InputEvent("y"), recipient="a/b").model_copy(
        update={"message_id": env.message_id, "created_at": env.created_at}
    )
    assert other != env
    assert "not read yet" in repr(lazy_a)


def test_an_envelope_built_without_a_payload_says_how_to_build_one() -> None:
    bare = Envelope(type_name="x", recipient="a/b")  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match=r"Envelope\.wrap"):
        _ = bare.payload
    with pytest.raises(SerializationError):
        encode_envelope(bare)


def test_header_json_uses_canonical_address_strings() -> None:
    env = Envelope.wrap(
        InputEvent(1), recipient="a/b", sender="topic:t", correlation_id=UUID(int=1)
    )
    dumped = env.model_dump(mode="json")
    assert dumped["recipient"] == "a/b" and dumped["sender"] == "topic:t"
    header = EnvelopeHeader.model_validate_json(env.model_dump_json())
    assert header.recipient == env.recipient and header.correlation_id == UUID(int=1)


def test_unserializable_payload_raises_serialization_error() -> None:
    env = Envelope.wrap(InputEvent(object()), recipient="a/b")
    with pytest.raises(SerializationError, match="InputEvent"):
        encode_envelope(env)


def test_a_failed_encode_leaves_the_shared_packer_clean() -> None:
    with pytest.raises(SerializationError, match="out of range"):
        encode_envelope(Envelope.wrap(InputEvent({"big": 2**70}), recipient="a/b"))
    env = Envelope.wrap(InputEvent(1), recipient="a/b")
    decoded = decode_envelope(encode_envelope(env))
    assert isinstance(decoded, Envelope) and decoded == env


def test_a_header_field_of_the_wrong_type_raises_serialization_error() -> None:
    env = Envelope.wrap(InputEvent(1), recipient="a/b")
    bad = env.model_copy(update={"message_id": "not a uuid"})  # model_copy does not validate
    with pytest.raises(SerializationError, match="cannot serialize envelope"):
        encode_envelope(bad)
