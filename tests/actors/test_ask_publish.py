"""Messaging API: ctx.ask (reply, timeout, late reply), ctx.publish with subscriptions, order
per (sender, recipient), the Outbound records of a turn and their envelopes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from actors import AgentEngine, InputEvent, LocalRunner, OutputEvent, State, Workflow, step, tool
from actors.messaging import BROADCAST, Outbound, Subscription, ask_correlation_id
from protocols import AgentAddress, TopicAddress, decode_envelope, message
from protocols.errors import UserError
from protocols.events import AskReply, AskTimeout


@message("test.ask.Quote")
class Quote(BaseModel):
    sku: str
    price: float


@message("test.ask.Price")
class Price(BaseModel):
    symbol: str
    price: float


@message("test.ask.Fill")
class Fill(BaseModel):
    trader: str
    qty: int


class Asker(Workflow):
    @step
    def start(event: InputEvent, state: State, ctx: Any) -> None:
        target, timeout_s = event.input
        state["asked"] = ctx.ask(target, {"sku": "A-1"}, timeout_s=timeout_s)

    @step
    def answered(event: AskReply, state: State, ctx: Any) -> None:
        quote = event.parse(Quote)
        ctx.send_event(OutputEvent(("reply", event.correlation_id == state["asked"], quote.price)))
        state["from"] = event.sender

    @step
    def timed_out(event: AskTimeout, state: State, ctx: Any) -> None:
        ctx.send_event(OutputEvent(("timeout", event.correlation_id == state["asked"])))


class Pricer(Workflow):
    @tool
    @staticmethod
    async def slow_lookup(sku: str) -> float:
        """Look a price up slowly.

        Args:
            sku: the product.
        """
        await asyncio.sleep(0.3)
        return 1.0

    @step
    def quote(event: InputEvent, state: State, ctx: Any) -> None:
        sku = event.input["sku"]
        state["correlation"] = ctx.correlation_id
        if ctx.address.key == "silent":
            return
        price = ctx.call_tool("slow_lookup", sku=sku) if ctx.address.key == "slow" else 9.5
        ctx.reply(Quote(sku=sku, price=price))


async def test_ask_gets_the_reply_with_its_correlation_id() -> None:
    runner = LocalRunner(Asker(), agents=[Pricer()])
    await runner.send("a", ("Pricer/fast", 5.0))
    await runner.drain(timeout_s=5)
    assert runner.outputs == [(AgentAddress("Asker", "a"), ("reply", True, 9.5))]
    assert runner.state("a")["from"] == "Pricer/fast"
    assert runner.state("fast", agent_type="Pricer")["correlation"] == runner.state("a")["asked"]
    assert runner.open_asks == 0 and runner.errors == []


async def test_ask_without_reply_times_out() -> None:
    runner = LocalRunner(Asker(), agents=[Pricer()])
    await runner.send("a", ("Pricer/silent", 0.05))
    await runner.drain(timeout_s=5)
    assert [o for _, o in runner.outputs] == [("timeout", True)]
    assert runner.open_asks == 0


async def test_reply_after_the_timeout_is_dropped_and_counted() -> None:
    runner = LocalRunner(Asker(), agents=[Pricer()])
    await runner.send("a", ("Pricer/slow", 0.05))
    await runner.drain(timeout_s=5)
    assert [o for _, o in runner.outputs] == [("timeout", True)]
    assert runner.dropped_replies == 1
    assert runner.state("slow", agent_type="Pricer")["correlation"] == runner.state("a")["asked"]


def test_ask_ids_are_deterministic_and_reported_on_the_outcome() -> None:
    engine = AgentEngine(Asker())
    address = AgentAddress("Asker", "a")
    runs = [
        engine.run_turn(
            engine.new_state(), InputEvent(("Pricer/x", 2.0)), {}, address=address, turn_id="7"
        )
        for _ in range(2)
    ]
    first, second = runs
    assert first.done and first.asks == second.asks and first.sends == second.sends
    [ask] = first.asks
    assert ask.correlation_id == ask_correlation_id(address, "7/start#0")
    assert ask.recipient == AgentAddress("Pricer", "x") and ask.timeout_s == 2.0
    [out] = first.sends
    assert out == Outbound(AgentAddress("Pricer", "x"), {"sku": "A-1"}, ask.correlation_id, "ask")
    assert out.reply_expected
    recipient, sent = out  # still unpacks like the older (address, message) tuples
    assert recipient == ask.recipient and sent == {"sku": "A-1"}
    other_turn = engine.run_turn(
        engine.new_state(), InputEvent(("Pricer/x", 2.0)), {}, address=address, turn_id="8"
    )
    assert other_turn.asks[0].correlation_id != ask.correlation_id


def test_reply_carries_the_handled_asks_correlation_id() -> None:
    engine = AgentEngine(Pricer())
    kwargs: dict[str, Any] = {"address": AgentAddress("Pricer", "p"), "turn_id": "1"}
    sender = AgentAddress("Asker", "a")
    event = InputEvent({"sku": "B"})
    asked = engine.run_turn(
        engine.new_state(), event, {}, sender=sender, correlation_id="c-1", **kwargs
    )
    plain = engine.run_turn(engine.new_state(), event, {}, sender=sender, **kwargs)
    assert asked.sends == [Outbound(sender, Quote(sku="B", price=9.5), "c-1", "reply")]
    assert plain.sends == [Outbound(sender, Quote(sku="B", price=9.5), None, "reply")]


def test_ask_misuse_is_a_user_error() -> None:
    class Bad(Workflow):
        @step
        def go(event: InputEvent, state: State, ctx: Any) -> None:
            ctx.ask(event.input, {"x": 1}, timeout_s=1.0)

    engine = AgentEngine(Bad())
    kwargs: dict[str, Any] = {"address": AgentAddress("Bad", "b"), "turn_id": "1"}
    out = engine.run_turn(engine.new_state(), InputEvent("topic:prices"), {}, **kwargs)
    assert out.errors and "ctx.ask needs an agent address" in out.errors[0].message


# -- publish / subscribe ---------------------------------------------------------------------


class Feed(Workflow):
    @step
    def tick(event: InputEvent, state: State, ctx: Any) -> None:
        ctx.publish("prices", Price(symbol="ACME", price=event.input))
        ctx.publish("topic:fills", Fill(trader="t1", qty=3))
        ctx.send(TopicAddress("fills"), Fill(trader="t2", qty=4))  # a send to a topic publishes
        ctx.publish("fills", Fill(trader="nobody-here", qty=5))


class Trader(Workflow):
    subscriptions = [Subscription("prices"), Subscription("fills", key="trader")]

    @step
    def on_message(event: InputEvent, state: State, ctx: Any) -> None:
        state.setdefault("seen", []).append(event.input)


async def test_publish_reaches_broadcast_and_keyed_subscribers() -> None:
    runner = LocalRunner(Feed(), agents=[Trader()])
    for key in ("t1", "t2", "t3"):  # three live traders
        await runner.send(key, {"hello": key}, agent_type="Trader")
    await runner.send("feed", 101.5)
    await runner.drain(timeout_s=5)
    seen = {k: runner.state(k, agent_type="Trader")["seen"][1:] for k in ("t1", "t2", "t3")}
    price = {"symbol": "ACME", "price": 101.5}
    assert seen == {
        "t1": [price, {"trader": "t1", "qty": 3}],
        "t2": [price, {"trader": "t2", "qty": 4}],
        "t3": [price],
    }
    # "nobody-here" had no state yet: a keyed subscription creates the instance.
    assert runner.state("nobody-here", agent_type="Trader")["seen"] == [
        {"trader": "nobody-here", "qty": 5}
    ]
    assert [str(to) for _, to, _ in runner.sent] == ["topic:prices"] + ["topic:fills"] * 3
    assert await runner.publish("prices", Price(symbol="X", price=1.0)) == 4


def test_subscription_routes_and_validation() -> None:
    sub = Subscription("fills", key=lambda m: m.trader if m.qty > 0 else None)
    assert sub.route(Fill(trader="t", qty=1)) == "t" and sub.route(Fill(trader="t", qty=0)) is None
    assert Subscription("prices").route(Price(symbol="a", price=1)) is BROADCAST
    assert Subscription("fills", key="trader").route({"trader": 7}) == "7"
    with pytest.raises(UserError, match="not valid"):
        Subscription("bad topic")
    with pytest.raises(UserError, match="field name or a function"):
        Subscription("ok", key=3)  # type: ignore[arg-type]


# -- order per (sender, recipient) ---------------------------------------------------------


class Burst(Workflow):
    @step
    def go(event: InputEvent, state: State, ctx: Any) -> None:
        for i in range(20):
            ctx.send("Sink/s", {"seq": i, "from": ctx.address.key})


class Sink(Workflow):
    @tool
    @staticmethod
    async def pause(seq: int) -> int:
        """Take a little time, so deliveries interleave.

        Args:
            seq: the message number.
        """
        await asyncio.sleep(0.001 * (seq % 3))
        return seq

    @step
    def got(event: InputEvent, state: State, ctx: Any) -> None:
        ctx.call_tool("pause", seq=event.input["seq"])
        state.setdefault(event.input["from"], []).append(event.input["seq"])


async def test_order_is_kept_per_sender_and_recipient() -> None:
    runner = LocalRunner(Burst(), agents={"Sink": Sink()})
    await asyncio.gather(runner.send("b1", None), runner.send("b2", None))
    await runner.drain(timeout_s=10)
    state = runner.state("s", agent_type="Sink")
    assert state["b1"] == list(range(20)) and state["b2"] == list(range(20))


# -- envelopes for the Flink path ----------------------------------------------------------


def test_outbound_records_carry_kind_and_correlation() -> None:
    from flink_bridge.envelopes import outbound_records

    sender = AgentAddress("Asker", "a")
    cid = ask_correlation_id(sender, "1/start#0")
    sends = [
        Outbound(AgentAddress("Pricer", "p"), Quote(sku="A", price=1), cid, "ask"),
        Outbound(AgentAddress("Pricer", "p"), Quote(sku="A", price=2), cid, "reply"),
        Outbound(TopicAddress("prices"), Price(symbol="A", price=3), None, "publish"),
        (AgentAddress("Pricer", "p"), Quote(sku="A", price=4)),
    ]
    ask, reply, publish, plain = list(outbound_records(sends, sender=sender, cause=None))
    assert not isinstance(ask, str) and not isinstance(reply, str)
    assert not isinstance(publish, str) and not isinstance(plain, str)
    assert ask.topic == "agents.Pricer.inbox" and ask.key == b"Pricer/p"
    assert ask.headers["fa.kind"] == b"ask" and ask.headers["fa.reply_expected"] == b"1"
    assert reply.headers["fa.kind"] == b"reply" and "fa.reply_expected" not in reply.headers
    for record in (ask, reply):
        env = decode_envelope(record.value)
        assert str(env.correlation_id) == cid  # type: ignore[union-attr]
        assert env.headers["fa.correlation_id"] == cid  # type: ignore[union-attr]
    assert publish.topic == "prices" and publish.headers["fa.kind"] == b"publish"
    assert "fa.kind" not in plain.headers
