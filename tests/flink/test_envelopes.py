"""Envelopes in and out of an agent job: decoding, dead letters, envelope outputs.

The unit tests run `decode_record` / `send_record` / `output_record` directly (no Flink);
the integration test produces good and bad envelopes into one topic and runs a real job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from flink_bridge.codec import EventCodec
from flink_bridge.envelopes import (
    Inbound,
    OutRecord,
    decode_record,
    output_record,
    send_record,
)
from flink_bridge.topics import inbox_topic, topic_for
from protocols import (
    AgentAddress,
    DeadLetter,
    DeadLetterReason,
    Envelope,
    MessageRegistry,
    TopicAddress,
    decode_envelope,
    encode_envelope,
    message,
)
from protocols.errors import UserError
from protocols.events import Event, InputEvent, OutputEvent
from tests.flink.jobs_envelopes.messages import Greeting, Note, Ping

ROOT = Path(__file__).resolve().parents[2]

# A second registry writes envelopes the job's registry does not know, or knows differently.
_foreign = MessageRegistry()


@message("envtest.Unregistered", registry=_foreign)
class Unregistered(BaseModel):
    x: int


@message("envtest.Greeting", registry=_foreign)
class BadGreeting(BaseModel):
    text: int  # the real Greeting's text is a str: this payload does not validate
    n: int


def greeting(key: str, text: str, n: int, **kwargs: object) -> bytes:
    env = Envelope.wrap(Greeting(text=text, n=n), recipient=AgentAddress("Echo", key), **kwargs)
    return encode_envelope(env)


def bad_inputs() -> dict[DeadLetterReason, bytes]:
    """One undeliverable record per reason; the dict's order is the produce order."""
    to_echo = AgentAddress("Echo", "bad")
    good = greeting("bad", "x", -1)
    return {
        DeadLetterReason.MALFORMED: b"this is not an envelope at all",
        DeadLetterReason.UNKNOWN_TYPE: encode_envelope(
            Envelope.wrap(Unregistered(x=1), recipient=to_echo, registry=_foreign)
        ),
        DeadLetterReason.INVALID_PAYLOAD: encode_envelope(
            Envelope.wrap(BadGreeting(text=5, n=1), recipient=to_echo, registry=_foreign)
        ),
        DeadLetterReason.TRUNCATED: good[:-4],
        DeadLetterReason.EXPIRED: greeting("bad", "late", -2, deadline=time.time() - 60),
        DeadLetterReason.PROCESSING_FAILED: encode_envelope(
            Envelope.wrap(Greeting(text="lost", n=-3), recipient=AgentAddress("Other", "k"))
        ),
    }


def _decode(data: bytes, accepts: tuple[type[Event], ...] = (Greeting, InputEvent)) -> object:
    return decode_record(
        data,
        agent_type="Echo",
        accepts=lambda e: isinstance(e, accepts),
        encode_event=EventCodec(list(accepts)).encode,
        source_topic="in",
    )


# -- unit ------------------------------------------------------------------------------------


def test_topic_layout() -> None:
    assert inbox_topic("Pinger") == "agents.Pinger.inbox"
    assert topic_for(AgentAddress("support.triage", "u/1")) == "agents.support.triage.inbox"
    assert topic_for("topic:orders") == "orders"
    with pytest.raises(UserError):
        inbox_topic("bad type")


def test_good_envelope_becomes_inbound_with_metadata() -> None:
    sender = AgentAddress("Client", "c1")
    trace = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    data = greeting("k1", "hi", 1, sender=sender, traceparent=trace)
    inbound = _decode(data)
    assert isinstance(inbound, Inbound)
    assert inbound.key == "k1"
    assert EventCodec([Greeting]).decode(inbound.event) == Greeting(text="hi", n=1)
    env = decode_envelope(data)
    assert isinstance(env, Envelope)
    assert inbound.meta["sender"] == "Client/c1"
    assert inbound.meta["message_id"] == str(env.message_id)
    assert inbound.meta["traceparent"].startswith("00-aaaa")


def test_plain_model_payload_arrives_as_input_event_dict() -> None:
    env = Envelope.wrap(Note(body="b"), recipient=AgentAddress("Echo", "k"))
    inbound = _decode(encode_envelope(env))
    assert isinstance(inbound, Inbound)
    assert EventCodec().decode(inbound.event) == InputEvent(input={"body": "b"})


@pytest.mark.parametrize("reason", list(bad_inputs()))
def test_bad_input_becomes_dead_letter(reason: DeadLetterReason) -> None:
    data = bad_inputs()[reason]
    letter = _decode(data)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == reason, letter.message
    assert letter.original == data
    assert letter.source_topic == "in"
    again = DeadLetter.decode(letter.encode())
    assert again.reason == reason and again.original == data


def test_payload_no_step_accepts_is_dead_lettered() -> None:
    env = Envelope.wrap(Ping(seq=1), recipient=AgentAddress("Echo", "k"))
    letter = _decode(encode_envelope(env), accepts=(Greeting,))
    assert isinstance(letter, DeadLetter)
    assert letter.reason == DeadLetterReason.PROCESSING_FAILED
    assert "'Ping'" in letter.message


def test_java_byte_arrays_are_accepted() -> None:
    data = greeting("k", "hi", 1)
    signed = [b - 256 if b > 127 else b for b in data]
    assert isinstance(_decode(signed), Inbound)


def test_send_record_is_caused_by_the_handled_envelope() -> None:
    incoming = Envelope.wrap(Greeting(text="hi", n=1), recipient=AgentAddress("Echo", "k"))
    inbound = _decode(encode_envelope(incoming))
    assert isinstance(inbound, Inbound)
    record = send_record(
        "Ponger/p1", Ping(seq=3), sender=AgentAddress("Echo", "k"), cause=inbound.meta
    )
    assert (record.topic, record.key) == ("agents.Ponger.inbox", b"Ponger/p1")
    env = decode_envelope(record.value)
    assert isinstance(env, Envelope)
    assert env.payload == Ping(seq=3)
    assert str(env.sender) == "Echo/k"
    assert env.causation_id == incoming.message_id
    assert env.correlation_id == incoming.message_id
    assert record.headers["fa.type"] == b"envtest.Ping"
    with pytest.raises(UserError, match="registered pydantic model"):
        send_record("Ponger/p1", {"seq": 1}, sender=AgentAddress("Echo", "k"), cause=None)


def test_output_record_wraps_plain_outputs_in_output_event() -> None:
    record = output_record({"a": 1}, topic="out", sender=AgentAddress("Echo", "k"), cause=None)
    assert isinstance(record, OutRecord)
    assert (record.topic, record.key) == ("out", b"Echo/k")
    env = decode_envelope(record.value)
    assert isinstance(env, Envelope)
    assert env.recipient == TopicAddress("out")
    assert env.payload == OutputEvent(output={"a": 1})
    typed = output_record(Ping(seq=1), topic="out", sender=AgentAddress("Echo", "k"), cause=None)
    assert decode_envelope(typed.value).payload == Ping(seq=1)  # type: ignore[union-attr]


# -- integration -----------------------------------------------------------------------------


@pytest.mark.integration
def test_bad_envelopes_go_to_dead_letters_and_good_ones_are_answered(kafka) -> None:
    source, sink, dlq = "env-in", "env-out", "env-dlq"
    kafka.create_topics([source, sink, dlq], partitions=1)
    client = AgentAddress("Client", "c")
    good = [greeting(f"k{i % 3}", f"hello {i}", i, sender=client) for i in range(6)]
    bad = bad_inputs()
    note = encode_envelope(Envelope.wrap(Note(body="n"), recipient=AgentAddress("Echo", "k9")))
    records = [good[0], *list(bad.values())[:3], good[1], good[2], note]
    records += [*list(bad.values())[3:], good[3], good[4], good[5]]
    kafka.produce(source, records)

    cmd = [sys.executable, "-m", "tests.flink.jobs_envelopes.echo_job", kafka.bootstrap_servers]
    proc = subprocess.run(
        [*cmd, source, sink, dlq],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    outs = kafka.consume(sink, len(good) + 5, timeout=30, read_committed=True)
    decoded = [decode_envelope(r.value) for r in outs]
    assert all(isinstance(e, Envelope) for e in decoded), decoded
    payloads = [e.payload.output for e in decoded]  # type: ignore[union-attr]
    greetings = sorted((p for p in payloads if "text" in p), key=lambda p: p["n"])
    assert greetings == [
        {"key": f"k{i % 3}", "text": f"HELLO {i}", "n": i, "sender": "Client/c"} for i in range(6)
    ]
    assert [p for p in payloads if "note" in p] == [{"key": "k9", "note": {"body": "n"}}]
    for record, env in zip(outs, decoded, strict=True):
        assert record.key == str(env.sender).encode()  # type: ignore[union-attr]
        assert str(env.recipient) == f"topic:{sink}"  # type: ignore[union-attr]

    letters = [DeadLetter.decode(r.value) for r in kafka.consume(dlq, 10, timeout=30)]
    assert [letter.reason for letter in letters] == list(bad)
    for letter, original in zip(letters, bad.values(), strict=True):
        assert letter.original == original
        assert letter.source_topic == source
