"""`ctx.ask` through the agent operator: request, reply routed back as `AskReply`, timeout as
`AskTimeout`, late replies dropped. Two operators on in-memory keyed harnesses exchange real
envelopes (`send_record` -> bytes -> `decode_record`), as the Kafka inbox topics carry them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from actors import InputEvent, OutputEvent, Workflow, step
from actors.engine import AgentEngine
from flink_bridge.codec import EventCodec
from flink_bridge.envelopes import Inbound, KeyedOutput, decode_record
from protocols import AgentAddress, message
from protocols.events import AskReply, AskTimeout
from tests.flink.keyed_harness import KeyedHarness


@message("asktest.Question")
class Question(BaseModel):
    text: str


@message("asktest.Answer")
class Answer(BaseModel):
    text: str


class AskState(BaseModel):
    asked: list[str] = []


class Asker(Workflow):
    state_type = AskState

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805
        cid = ctx.ask(
            AgentAddress("Answerer", "oracle"), Question(text=event.input["q"]), timeout_s=0.15
        )
        state.asked.append(cid)

    @step(AskReply)
    def on_reply(event, state, ctx):  # noqa: N805
        assert event.correlation_id in state.asked
        ctx.send_event(OutputEvent({"reply": event.parse(Answer).text, "from": event.sender}))

    @step(AskTimeout)
    def on_timeout(event, state, ctx):  # noqa: N805
        assert event.correlation_id in state.asked
        ctx.send_event(OutputEvent({"timeout": event.recipient}))


class Answerer(Workflow):
    @step(InputEvent)
    def on_question(event, state, ctx):  # noqa: N805
        ctx.reply(Answer(text=f"re: {event.input['text']}"))


def _deliver(records: list[Any], to: KeyedHarness, agent_type: str, engine: AgentEngine) -> None:
    codec = EventCodec([t for s in engine.compiled.steps for t in s.events])
    for record in records:
        inbound = decode_record(
            record.value,
            agent_type=agent_type,
            accepts=lambda e: True,
            encode_event=codec.encode,
        )
        assert isinstance(inbound, Inbound), inbound
        to.process(inbound.key, inbound)


def _outputs(harness: KeyedHarness) -> list[Any]:
    return [o.output if isinstance(o, KeyedOutput) else o for o in harness.outputs]


def test_an_ask_is_answered_and_the_reply_routed_back_once() -> None:
    asker_engine, answerer_engine = AgentEngine(Asker()), AgentEngine(Answerer())
    asker = KeyedHarness(asker_engine, agent_type="Asker", envelopes=True)
    answerer = KeyedHarness(answerer_engine, agent_type="Answerer", envelopes=True)
    try:
        asker.process("alice", {"q": "why"})
        assert len(asker.sends) == 1 and asker.sends[0].headers["fa.kind"] == b"ask"
        assert asker.state["asks"]["alice"], "the ask is open in keyed state"
        _deliver(asker.sends, answerer, "Answerer", answerer_engine)
        assert len(answerer.sends) == 1 and answerer.sends[0].headers["fa.kind"] == b"reply"
        _deliver(answerer.sends, asker, "Asker", asker_engine)
        assert _outputs(asker) == [{"reply": "re: why", "from": "Answerer/oracle"}]
        assert not asker.state["asks"]["alice"], "the reply closed the ask"
        asker.run_until(lambda: not asker.timers, timeout_s=2)  # the deadline passes quietly
        assert _outputs(asker) == [{"reply": "re: why", "from": "Answerer/oracle"}]
        _deliver(answerer.sends, asker, "Asker", asker_engine)  # the same reply again
        assert asker.function.dropped_replies == 1 and len(asker.outputs) == 1
    finally:
        asker.close()
        answerer.close()


def test_an_unanswered_ask_times_out_once_and_a_late_reply_is_dropped() -> None:
    asker_engine, answerer_engine = AgentEngine(Asker()), AgentEngine(Answerer())
    asker = KeyedHarness(asker_engine, agent_type="Asker", envelopes=True)
    answerer = KeyedHarness(answerer_engine, agent_type="Answerer", envelopes=True)
    try:
        asker.process("bob", {"q": "when"})
        question = list(asker.sends)
        asker.run_until(lambda: len(asker.outputs) == 1, timeout_s=5)
        assert _outputs(asker) == [{"timeout": "Answerer/oracle"}]
        _deliver(question, answerer, "Answerer", answerer_engine)  # answered too late
        _deliver(answerer.sends, asker, "Asker", asker_engine)
        assert asker.function.dropped_replies == 1
        assert _outputs(asker) == [{"timeout": "Answerer/oracle"}]
    finally:
        asker.close()
        answerer.close()


def test_an_open_ask_times_out_after_a_restore() -> None:
    asker = KeyedHarness(AgentEngine(Asker()), agent_type="Asker", envelopes=True)
    asker.process("carol", {"q": "who"})
    snapshot = asker.snapshot()
    asker.close()
    restored = KeyedHarness(
        AgentEngine(Asker()), agent_type="Asker", envelopes=True, snapshot=snapshot
    )
    try:
        restored.run_until(lambda: len(restored.outputs) == 1, timeout_s=5)
    finally:
        restored.close()
    assert _outputs(restored) == [{"timeout": "Answerer/oracle"}]
