"""Subscriptions on Flink without a JVM: routing of published envelopes in the decode step,
the key registry side output of the agent operator (once per new key, also across a restore),
and the broadcast fan-out over registered keys. Real envelopes (`send_record` -> bytes ->
`decode_record`) and the real operator on the in-memory keyed harness."""

from __future__ import annotations

import asyncio
from typing import Any

import cloudpickle
from pydantic import BaseModel

from actors import InputEvent, OutputEvent, Workflow, step, tool
from actors.engine import AgentEngine
from actors.messaging import Subscription, subscriptions_of
from flink_bridge.codec import EventCodec
from flink_bridge.envelopes import (
    EnvelopeDecodeFunction,
    Inbound,
    KeyedOutput,
    Published,
    decode_record,
    send_record,
)
from flink_bridge.subscriptions import (
    BroadcastFanOutFunction,
    KeyRegistry,
    broadcast_topics,
    fan_out,
    registry_record,
    registry_topic,
    subscribed_topics,
)
from protocols import AgentAddress, DeadLetter, DeadLetterReason, message
from protocols.events import Event
from tests.flink.keyed_harness import KeyedHarness


@message("subtest.Price")
class Price(Event):
    symbol: str
    value: float


@message("subtest.Fill")
class Fill(BaseModel):
    trader: str | None
    qty: int


@message("subtest.Headline")
class Headline(Event):
    desk: str
    urgent: bool


class Trader(Workflow):
    subscriptions = [
        Subscription("prices"),
        Subscription("fills", key="trader"),
        Subscription("news", key=lambda m: m.desk if m.urgent else None),
    ]

    @step(Price)
    def on_price(event, state, ctx):  # noqa: N805
        ctx.send_event(OutputEvent({"price": event.value, "from": str(ctx.sender)}))

    @step(Headline)
    def on_news(event, state, ctx):  # noqa: N805
        ctx.send_event(OutputEvent({"desk": event.desk}))

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805
        ctx.send_event(OutputEvent({"input": event.input, "from": str(ctx.sender)}))


PUBLISHER = AgentAddress("Exchange", "x1")
SUBS = subscriptions_of(Trader())
CODEC = EventCodec([t for s in AgentEngine(Trader()).compiled.steps for t in s.events])


def published(topic: str, msg: BaseModel, *, kind: str = "publish") -> bytes:
    return send_record(f"topic:{topic}", msg, sender=PUBLISHER, cause=None, kind=kind).value


def decode(data: bytes, subscriptions: Any = SUBS, accepts: Any = None) -> Any:
    return decode_record(
        data,
        agent_type="Trader",
        accepts=accepts or (lambda e: True),
        encode_event=CODEC.encode,
        source_topic="src",
        subscriptions=subscriptions,
    )


# -- routing in the decode step ---------------------------------------------------------------


def test_a_keyed_subscription_routes_to_the_key_named_by_a_field() -> None:
    result = decode(published("fills", Fill(trader="t7", qty=3)))
    assert isinstance(result, Published)
    assert result.broadcast == () and result.skipped == 0
    (inbound,) = result.keyed
    assert inbound.key == "t7"
    assert CODEC.decode(inbound.event) == InputEvent(input={"trader": "t7", "qty": 3})
    assert inbound.meta["sender"] == "Exchange/x1" and inbound.meta["kind"] == "publish"
    assert inbound.meta["recipient"] == "topic:fills" and inbound.meta["ask_id"] is None
    assert inbound.meta["message_id"]


def test_a_ctx_send_to_a_topic_is_marked_publish_too() -> None:
    (inbound,) = decode(published("fills", Fill(trader="t1", qty=1), kind="send")).keyed
    assert inbound.meta["kind"] == "publish"


def test_a_key_function_picks_the_key_or_skips_with_none() -> None:
    urgent = decode(published("news", Headline(desk="fx", urgent=True)))
    assert [i.key for i in urgent.keyed] == ["fx"]
    assert CODEC.decode(urgent.keyed[0].event) == Headline(desk="fx", urgent=True)
    calm = decode(published("news", Headline(desk="fx", urgent=False)))
    assert calm == Published((), (), 1)
    nobody = decode(published("fills", Fill(trader=None, qty=1)))
    assert nobody == Published((), (), 1)


def test_a_broadcast_subscription_yields_one_unkeyed_inbound() -> None:
    result = decode(published("prices", Price(symbol="ACME", value=1.5)))
    assert result.keyed == () and result.skipped == 0
    (inbound,) = result.broadcast
    assert inbound.key == "" and inbound.meta["kind"] == "publish"


def test_a_type_subscribed_twice_gets_the_message_once_per_matching_subscription() -> None:
    subs = (Subscription("fills", key="trader"), Subscription("fills"))
    result = decode(published("fills", Fill(trader="t2", qty=1)), subscriptions=subs)
    assert [i.key for i in result.keyed] == ["t2"] and len(result.broadcast) == 1


def test_a_topic_the_type_does_not_subscribe_to_stays_a_dead_letter() -> None:
    letter = decode(published("other", Fill(trader="t1", qty=1)))
    assert isinstance(letter, DeadLetter)
    assert letter.reason == DeadLetterReason.PROCESSING_FAILED
    assert "does not subscribe" in letter.message and letter.recipient == "topic:other"
    assert isinstance(
        decode(published("fills", Fill(trader="t1", qty=1)), subscriptions=()), DeadLetter
    )


def test_a_key_selector_that_raises_or_no_accepting_step_makes_a_dead_letter() -> None:
    subs = (Subscription("fills", key=lambda m: 1 / 0),)
    letter = decode(published("fills", Fill(trader="t1", qty=1)), subscriptions=subs)
    assert isinstance(letter, DeadLetter) and "ZeroDivisionError" in letter.message
    refused = decode(published("prices", Price(symbol="A", value=1)), accepts=lambda e: False)
    assert isinstance(refused, DeadLetter) and "add a @step" in refused.message


def test_agent_addressed_envelopes_decode_as_before() -> None:
    record = send_record(
        AgentAddress("Trader", "t3"), Fill(trader="t9", qty=2), sender=PUBLISHER, cause=None
    )
    inbound = decode(record.value)
    assert isinstance(inbound, Inbound) and inbound.key == "t3" and inbound.meta["kind"] == "send"


class _NoMetrics:
    def get_metrics_group(self) -> Any:
        raise RuntimeError("no metrics here")


def _decode_function(subscriptions: Any) -> Any:
    """The decode function, shipped the way PyFlink ships it (cloudpickle), then opened."""
    function = EnvelopeDecodeFunction(
        agent_type="Trader",
        event_types=tuple(t for s in AgentEngine(Trader()).compiled.steps for t in s.events),
        message_types=(),
        source_topic="fills",
        dead_letter_topic="dlq",
        dead_letters_tag="dead",
        max_bytes=1 << 20,
        subscriptions=subscriptions,
        broadcasts_tag="broadcasts",
    )
    function = cloudpickle.loads(cloudpickle.dumps(function))
    function.open(_NoMetrics())
    return function


def test_the_decode_function_routes_skips_and_sends_broadcasts_aside_after_pickling() -> None:
    function = _decode_function(SUBS)  # holds the lambda of the "news" subscription
    out = list(function.process_element(published("news", Headline(desk="eq", urgent=True)), None))
    assert [(type(o).__name__, o.key) for o in out] == [("Inbound", "eq")]
    assert (
        list(function.process_element(published("news", Headline(desk="eq", urgent=False)), None))
        == []
    )
    (tagged,) = list(
        function.process_element(published("prices", Price(symbol="A", value=2)), None)
    )
    assert tagged[0] == "broadcasts" and isinstance(tagged[1], Inbound)
    (dead,) = list(function.process_element(published("nope", Price(symbol="A", value=2)), None))
    assert dead[0] == "dead" and dead[1].topic == "dlq"
    assert (function.delivered, function.skipped, function.dead_letters) == (1, 1, 1)


def test_topic_helpers() -> None:
    assert subscribed_topics(SUBS) == ["prices", "fills", "news"]
    assert broadcast_topics(SUBS) == ["prices"]
    assert registry_topic("Trader") == "agents.Trader.keys"
    record = registry_record("Trader", "t1")
    assert (record.topic, record.key, record.value) == ("agents.Trader.keys", b"Trader/t1", b"t1")


# -- the key registry side output of the operator ------------------------------------------------


class _KeysHarness(KeyedHarness):
    """The harness with the operator's keys side output collected in `keys`."""

    def __init__(self, engine: Any, **kwargs: Any) -> None:
        super().__init__(engine, **kwargs)
        self.function.keys_tag = "keys"
        self.keys: list[str] = []

    def _collect(self, emitted: Any) -> None:
        rest = []
        for item in emitted:
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "keys":
                self.keys.append(item[1])
            else:
                rest.append(item)
        super()._collect(iter(rest))


def test_each_new_key_is_registered_once_when_its_first_turn_completes() -> None:
    harness = _KeysHarness(AgentEngine(Trader()), agent_type="Trader")
    try:
        for key, n in [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2)]:
            harness.process(key, {"n": n})
        assert harness.keys == ["a", "b"]
        assert len(harness.outputs) == 5
    finally:
        harness.close()
    restored = _KeysHarness(AgentEngine(Trader()), agent_type="Trader", snapshot=harness.snapshot())
    try:
        restored.process("a", {"n": 4})  # an existing key after a restore: not new
        restored.process("c", {"n": 1})
        assert restored.keys == ["c"]
    finally:
        restored.close()


class Slow(Workflow):
    """The first turn waits for a tool call, so a checkpoint can fall in the middle of it."""

    @tool
    @staticmethod
    def wait(ms: int) -> str:
        """Sleep a little.

        Args:
            ms: how long.
        """
        asyncio.run(asyncio.sleep(ms / 1000))
        return "ok"

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805
        ctx.send_event(OutputEvent({"waited": ctx.call_tool("wait", ms=20)}))


def test_a_key_is_registered_when_its_first_turn_completes_also_after_a_restore() -> None:
    harness = _KeysHarness(AgentEngine(Slow()), agent_type="Slow")
    harness.process("k", {"n": 1})
    assert harness.keys == [] and not harness.outputs  # waiting for the call: not registered
    snapshot = harness.snapshot()  # a checkpoint in the middle of the key's first turn
    harness.close()
    restored = _KeysHarness(AgentEngine(Slow()), agent_type="Slow", snapshot=snapshot)
    try:
        restored.run_until(lambda: len(restored.outputs) == 1, timeout_s=10)
        assert restored.keys == ["k"]
        restored.process("k", {"n": 2})
        restored.run_until(lambda: len(restored.outputs) == 2, timeout_s=10)
        assert restored.keys == ["k"]
    finally:
        restored.close()


def test_without_a_keys_tag_nothing_is_registered() -> None:
    harness = KeyedHarness(AgentEngine(Trader()), agent_type="Trader")
    try:
        harness.process("a", {"n": 1})
        assert len(harness.outputs) == 1 and not harness.side
    finally:
        harness.close()


# -- the broadcast fan-out ----------------------------------------------------------------------


class _MapState(dict):
    """Broadcast state as thread mode offers it: ``put`` and ``items``; its ``keys()`` fails
    there (PyFlink calls a Java method the state does not have)."""

    def put(self, key: str, value: Any) -> None:
        self[key] = value

    def keys(self) -> Any:  # type: ignore[override]
        raise AttributeError("'pemja.PyJObject' object has no attribute 'keys'")


class _BroadcastCtx:
    def __init__(self, state: _MapState) -> None:
        self.state = state

    def get_broadcast_state(self, descriptor: Any) -> _MapState:
        return self.state


def test_fan_out_copies_an_inbound_per_key_with_its_own_meta() -> None:
    template = Inbound("", b"event", {"kind": "publish"})
    copies = list(fan_out(template, ["a", "b"]))
    assert [c.key for c in copies] == ["a", "b"] and {c.event for c in copies} == {b"event"}
    copies[0].meta["x"] = 1
    assert "x" not in copies[1].meta and "x" not in template.meta


def test_the_registry_ignores_duplicates_and_reloads_from_state() -> None:
    state = _MapState()
    registry = KeyRegistry()
    assert registry.add("a", state) and registry.add("b", state) and not registry.add("a", state)
    assert registry.keys() == ["a", "b"] and dict(state.items()) == {"a": True, "b": True}
    reloaded = KeyRegistry()
    reloaded.load(state)
    assert reloaded.keys() == ["a", "b"] and len(reloaded) == 2


def _fan_out_function() -> Any:
    function = cloudpickle.loads(cloudpickle.dumps(BroadcastFanOutFunction("Trader", "desc")))
    function.open(_NoMetrics())
    return function


def test_the_fan_out_function_emits_one_inbound_per_registered_key() -> None:
    state = _MapState()
    ctx = _BroadcastCtx(state)
    function = _fan_out_function()
    broadcast = decode(published("prices", Price(symbol="ACME", value=3.0))).broadcast[0]
    assert list(function.process_element(broadcast, ctx)) == []  # nobody registered yet
    for key in ["t1", "t2", b"t3", "t1"]:  # registry records (a key twice: compaction lag)
        function.process_broadcast_element(key, ctx)
    out = list(function.process_element(broadcast, ctx))
    assert [i.key for i in out] == ["t1", "t2", "t3"]
    assert all(CODEC.decode(i.event) == Price(symbol="ACME", value=3.0) for i in out)
    assert function.delivered == 3
    restored = _fan_out_function()  # after a restore: memory empty, broadcast state kept
    assert [i.key for i in restored.process_element(broadcast, ctx)] == ["t1", "t2", "t3"]


def test_published_messages_reach_subscribers_through_the_operator() -> None:
    """Publisher turn -> send records -> decode -> fan-out / keyed route -> Trader operator."""

    class Exchange(Workflow):
        @step(InputEvent)
        def on_input(event, state, ctx):  # noqa: N805
            ctx.publish("prices", Price(symbol="ACME", value=event.input["v"]))
            ctx.publish("fills", Fill(trader=event.input["to"], qty=1))
            ctx.publish("fills", Fill(trader=None, qty=0))

    exchange = KeyedHarness(AgentEngine(Exchange()), agent_type="Exchange", envelopes=True)
    trader = _KeysHarness(AgentEngine(Trader()), agent_type="Trader", envelopes=True)
    fan, state = _fan_out_function(), _MapState()
    try:
        for key in ["t1", "t2"]:  # two live traders, registered
            trader.process(key, Inbound(key, CODEC.encode(InputEvent(input={"hi": 1})), {}))
        for key in trader.keys:
            fan.process_broadcast_element(key, _BroadcastCtx(state))
        exchange.process("x1", {"v": 9.5, "to": "t2"})
        assert [r.headers["fa.kind"] for r in exchange.sends] == [b"publish"] * 3
        skipped = 0
        for record in exchange.sends:
            result = decode(record.value)
            assert isinstance(result, Published)
            skipped += result.skipped
            routed = list(result.keyed)
            for b in result.broadcast:
                routed += list(fan.process_element(b, _BroadcastCtx(state)))
            for inbound in routed:
                trader.process(inbound.key, inbound)
        outs = [(o.key, o.output) for o in trader.outputs if isinstance(o, KeyedOutput)][2:]
        assert skipped == 1
        assert sorted(outs, key=str) == sorted(
            [
                ("t1", {"price": 9.5, "from": "Exchange/x1"}),
                ("t2", {"price": 9.5, "from": "Exchange/x1"}),
                ("t2", {"input": {"trader": "t2", "qty": 1}, "from": "Exchange/x1"}),
            ],
            key=str,
        )
    finally:
        exchange.close()
        trader.close()
