"""Simulation harness: simulated time (timers, latency, ask timeouts), routing, metrics,
determinism, and the market example at a small size."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from actors import Event, InputEvent, OutputEvent, RunnerContext, State, Workflow, model, step
from actors.messaging import Subscription
from actors.simulation import AgentGroup, Population, ResultTable, SimClock, Simulation
from actors.testing import FunctionModel
from protocols.errors import UserError
from protocols.events import AskReply, AskTimeout

ROOT = Path(__file__).resolve().parents[2]


def _market() -> Any:
    # The importable module: its @message classes register once per process, whichever test
    # (here or tests/examples) imports it first.
    return importlib.import_module("examples.market_sim")


class Beat(Event):
    n: int


class Clocked(Workflow):
    @step
    def start(event: InputEvent, state: State, ctx: RunnerContext) -> None:
        ctx.schedule(0.5, Beat(n=1))

    @step
    def beat(event: Beat, state: State, ctx: RunnerContext) -> None:
        ctx.send_event(OutputEvent(event.n))
        ctx.schedule(0.5, Beat(n=event.n + 1))


def test_timers_fire_in_simulated_time_and_the_clock_stops_at_the_horizon() -> None:
    sim = Simulation(Population([AgentGroup(workflow=Clocked(), count=2, start=lambda k, r: 1)]))
    result = sim.run_sync(until_s=2.0)
    assert sim.now == 2.0
    assert [(t, a, o) for t, a, o in result.outputs if a == "Clocked/0"] == [
        (0.5, "Clocked/0", 1),
        (1.0, "Clocked/0", 2),
        (1.5, "Clocked/0", 3),
        (2.0, "Clocked/0", 4),
    ]
    assert result.summary["pending_events"] == 2  # the next beats, at 2.5
    assert result.wall_s < 5  # simulated seconds cost no wall time


class Asker(Workflow):
    @step
    def start(event: InputEvent, state: State, ctx: RunnerContext) -> None:
        state["cid"] = ctx.ask(event.input, {"q": 1}, timeout_s=1.0)

    @step
    def got(event: AskReply, state: State, ctx: RunnerContext) -> None:
        ctx.send_event(OutputEvent(("reply", event.message, event.correlation_id == state["cid"])))

    @step
    def timeout(event: AskTimeout, state: State, ctx: RunnerContext) -> None:
        ctx.send_event(OutputEvent(("timeout", event.recipient, event.timeout_s)))


class Answerer(Workflow):
    @step
    def answer(event: InputEvent, state: State, ctx: RunnerContext) -> None:
        if ctx.address.key != "mute":
            ctx.reply({"a": event.input["q"] + 1})


def _ask_sim(target: str, latency_s: float) -> Simulation:
    groups = [
        AgentGroup(workflow=Asker(), count=1, start=lambda k, r: target),
        AgentGroup(workflow=Answerer(), count=0),
    ]
    return Simulation(Population(groups), latency_s=latency_s)


def test_ask_reply_timeout_and_late_reply_in_simulated_time() -> None:
    fast = _ask_sim("Answerer/x", 0.1).run_sync()
    assert fast.outputs == [(0.2, "Asker/0", ("reply", {"a": 2}, True))]
    assert fast.summary["ask_replies"] == 1 and fast.summary["dropped_timeouts"] == 1

    mute = _ask_sim("Answerer/mute", 0.1).run_sync()
    assert mute.outputs == [(1.0, "Asker/0", ("timeout", "Answerer/mute", 1.0))]
    assert mute.summary["ask_timeouts"] == 1

    slow = _ask_sim("Answerer/x", 0.6).run_sync()  # the reply would arrive at 1.2 > 1.0
    assert slow.outputs == [(1.0, "Asker/0", ("timeout", "Answerer/x", 1.0))]
    assert slow.summary["dropped_replies"] == 1


class Price(BaseModel):
    symbol: str
    owner: str


class Publisher(Workflow):
    @step
    def go(event: InputEvent, state: State, ctx: RunnerContext) -> None:
        ctx.publish("ticks", Price(symbol="A", owner="l2"))


class Listener(Workflow):
    subscriptions = [Subscription("ticks"), Subscription("ticks", key="owner")]

    @step
    def got(event: InputEvent, state: State, ctx: RunnerContext) -> None:
        state["n"] = state.get("n", 0) + 1


def test_publish_broadcast_and_keyed_subscriptions_and_metrics() -> None:
    groups = [
        AgentGroup(workflow=Publisher(), count=1, start=lambda k, r: "go"),
        AgentGroup(workflow=Listener(), count=4, key_format="l{i}"),
    ]
    sim = Simulation(Population(groups))
    result = sim.run_sync()
    counts = {r["key"]: sim.state("Listener", r["key"])["n"] for r in result.agents[1:]}
    assert counts == {"l0": 1, "l1": 1, "l2": 2, "l3": 1}
    assert result.messages.to_pylist() == [{"kind": "publish", "message_type": "Price", "count": 1}]
    assert result.summary["messages_delivered"] == 5
    table = result.agents.to_arrow()
    assert table.num_rows == 5 and table.column("received").to_pylist() == [0, 1, 1, 2, 1]


class Thinker(Workflow):
    @model
    @staticmethod
    def llm() -> FunctionModel:
        return FunctionModel(lambda messages, tools: "two words")

    @step
    def think(event: InputEvent, state: State, ctx: RunnerContext) -> None:
        ctx.send_event(OutputEvent(ctx.chat("llm", [f"about {event.input}"]).content))


def test_model_tokens_reach_the_agent_rows() -> None:
    group = AgentGroup(workflow=Thinker(), count=3, start=lambda k, r: k)
    result = Simulation(Population([group])).run_sync()
    assert [r["model_calls"] for r in result.agents] == [1, 1, 1]
    assert [r["output_tokens"] for r in result.agents] == [2, 2, 2]
    assert result.summary["input_tokens"] == 6 and result.summary["model_calls"] == 3


def test_same_seed_same_tables_other_seed_other_tables() -> None:
    market = _market()
    first = market.run_market(60, 1.5, seed=3)
    second = market.run_market(60, 1.5, seed=3)
    other = market.run_market(60, 1.5, seed=4)
    assert first == second
    assert first.agents.to_arrow().equals(second.agents.to_arrow())
    assert first.agents != other.agents
    assert first.summary["asks_opened"] > 0 and first.summary["model_calls"] > 0
    kinds = {r["kind"] for r in first.messages}
    assert kinds == {"ask", "publish", "reply"}


def test_market_example_runs_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    market = _market()
    assert market.main(["--agents", "120", "--sim-seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "market.Order" in out and '"agents": 120' in out


def test_clock_orders_by_time_then_push_order() -> None:
    clock = SimClock()
    for at, item in [(2.0, "c"), (1.0, "a"), (1.0, "b"), (0.5, "z")]:
        clock.push(at, item)
    assert [clock.pop() for _ in range(4)] == ["z", "a", "b", "c"] and clock.now == 2.0
    clock.push(1.0, "late")  # never before now
    assert clock.peek_time() == 2.0


def test_setup_mistakes_are_user_errors() -> None:
    with pytest.raises(UserError, match="key_format"):
        AgentGroup(workflow=Clocked(), count=1, key_format="{j}")
    with pytest.raises(UserError, match="at least one"):
        Population([])
    sim = Simulation(Population([AgentGroup(workflow=Clocked(), count=1)]))
    with pytest.raises(UserError, match="no agent type 'Nope'"):
        sim.inject("Nope/1", 1)
    assert ResultTable([]).columns == []
