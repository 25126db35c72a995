"""`@tool(inline=True)`: the engine runs the tool inside the turn, journals its result like a
worker's, and a later pass (or a replay) never runs it again."""

from __future__ import annotations

from collections import Counter
from typing import Any

import cloudpickle
import pytest

from actors import AgentEngine, InputEvent, LocalRunner, OutputEvent, Workflow, model, step, tool
from actors.effects import EffectKind, EffectRequest
from actors.executor import WorkflowExecutor
from actors.testing import ScriptedModel, tool_call
from actors.tools import Tool
from protocols import AgentAddress
from protocols.errors import ToolError, UserError

ran: Counter[str] = Counter()
ADDRESS = AgentAddress(agent_type="a", key="k")


def stamp(key: str, n: int) -> tuple[str, int]:
    """Stamp an input.

    Args:
        key: the agent key.
        n: the input number.
    """
    ran[f"{key}:{n}"] += 1
    return (key, n)  # a tuple: what a worker returns is its JSON form, a list


def fails(reason: str) -> str:
    """Always fails.

    Args:
        reason: why.
    """
    raise ValueError(f"no: {reason}")


class Stamper(Workflow):
    """Per input: an inline tool, then a model call, then one output."""

    stamp = tool(inline=True)(staticmethod(stamp))
    fails = tool(inline=True)(staticmethod(fails))

    @model
    @staticmethod
    def llm() -> Any:
        return ScriptedModel(["ok"] * 100)

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805 - the proposal's step form
        n = event.input
        stamped = ctx.call_tool("stamp", key=str(ctx.address.key), n=n)
        try:
            ctx.call_tool("fails", reason="x")
        except Exception as exc:
            failure = str(exc)
        answer = ctx.chat("llm", [f"{n}"])
        ctx.send_event(OutputEvent({"stamped": stamped, "answer": answer.content, "fail": failure}))


async def test_an_inline_tool_runs_in_the_pass_and_later_passes_replay_it() -> None:
    ran.clear()
    engine = AgentEngine(Stamper())
    first = engine.run_turn(engine.new_state(), InputEvent(7), {}, address=ADDRESS, turn_id="t")
    assert not first.done
    assert [(r.kind, r.target) for r in first.pending] == [(EffectKind.MODEL, "llm")]
    assert sorted(first.executed) == ["t/on_input#0", "t/on_input#1"]
    assert first.executed["t/on_input#0"].value == ["k", 7]
    assert ran == Counter({"k:7": 1})

    executor = engine.executor()
    journal = dict(first.executed)
    journal.update({r.call_id: await executor.execute(r) for r in first.pending})
    second = engine.run_turn(
        engine.new_state(), InputEvent(7), journal, address=ADDRESS, turn_id="t"
    )
    assert second.done and not second.executed
    assert sum(ran.values()) == 1  # replayed from the journal, not run again
    (output,) = second.outputs
    assert output["answer"] == "ok"
    assert output["fail"].startswith("tool call 'fails' failed: ToolError:")


async def test_an_inline_result_is_what_a_worker_would_have_returned() -> None:
    ran.clear()
    engine = AgentEngine(Stamper())
    outcome = engine.run_turn(engine.new_state(), InputEvent(3), {}, address=ADDRESS, turn_id="t")
    inline_ok = outcome.executed["t/on_input#0"]
    inline_failed = outcome.executed["t/on_input#1"]
    worker = WorkflowExecutor(engine.compiled)
    on_worker_ok = await worker.execute(
        EffectRequest(
            call_id="w0",
            kind=EffectKind.TOOL,
            target="stamp",
            payload={"arguments": {"key": "k", "n": 3}},
        )
    )
    on_worker_failed = await worker.execute(
        EffectRequest(
            call_id="w1",
            kind=EffectKind.TOOL,
            target="fails",
            payload={"arguments": {"reason": "x"}},
        )
    )
    assert inline_ok.value == on_worker_ok.value == ["k", 3]
    assert inline_ok.error is None
    assert inline_failed.error is not None and on_worker_failed.error is not None
    assert inline_failed.error.model_dump() == on_worker_failed.error.model_dump()


class Picker(Workflow):
    """A model that calls an inline tool: the tool runs in the turn, between two model calls."""

    stamp = tool(inline=True)(staticmethod(stamp))

    @model
    @staticmethod
    def llm() -> Any:
        return ScriptedModel([tool_call("stamp", key="p", n=1), "picked"], tools=["stamp"])

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805
        ctx.send_event(OutputEvent(ctx.chat("llm", [str(event.input)]).content))


async def test_a_model_tool_call_to_an_inline_tool_is_not_sent_to_a_worker() -> None:
    ran.clear()
    engine = AgentEngine(Picker())
    executor = engine.executor()
    journal: dict[str, Any] = {}
    sent: list[tuple[EffectKind, str]] = []
    for _ in range(5):
        outcome = engine.run_turn(
            engine.new_state(),
            InputEvent(0),
            journal,
            address=AgentAddress(agent_type="a", key="p"),
            turn_id="t",
        )
        if outcome.done:
            break
        journal.update(outcome.executed)
        sent.extend((r.kind, r.target) for r in outcome.pending)
        journal.update({r.call_id: await executor.execute(r) for r in outcome.pending})
    assert outcome.done and outcome.outputs == ["picked"]
    assert sent == [(EffectKind.MODEL, "llm"), (EffectKind.MODEL, "llm")]
    assert ran == Counter({"p:1": 1})


async def test_the_local_runner_runs_an_inline_tool_once_per_turn() -> None:
    ran.clear()
    runner = LocalRunner(Stamper())
    try:
        outputs = [await runner.send("k", n) for n in range(3)]
    finally:
        await runner.aclose()
    assert [o[0]["stamped"] for o in outputs] == [["k", 0], ["k", 1], ["k", 2]]
    assert ran == Counter({"k:0": 1, "k:1": 1, "k:2": 1})


def test_an_inline_tool_must_be_sync() -> None:
    async def lookup(key: str) -> str:
        """Look up.

        Args:
            key: the key.
        """
        return key

    class Bad(Workflow):
        look = tool(inline=True)(staticmethod(lookup))

        @step(InputEvent)
        def on_input(event, state, ctx):  # noqa: N805
            pass

    with pytest.raises(UserError, match="async and inline=True"):
        AgentEngine(Bad())


def test_inline_survives_pickling() -> None:
    built = Tool.from_function(stamp, inline=True)
    assert cloudpickle.loads(cloudpickle.dumps(built)).inline
    assert not cloudpickle.loads(cloudpickle.dumps(Tool.from_function(stamp))).inline


def test_an_inline_tool_returning_an_awaitable_fails_with_a_tool_error() -> None:
    async def later() -> str:
        return "too late"

    def sneaky(key: str) -> Any:
        """Returns a coroutine.

        Args:
            key: the key.
        """
        return later()

    built = Tool.from_function(sneaky, inline=True)
    with pytest.raises(ToolError, match="returned an awaitable; an inline tool must return"):
        built.call_inline({"key": "k"})
