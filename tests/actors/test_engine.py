"""AgentEngine: deterministic replay, path-based call ids, journaled effects, error paths."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import cloudpickle
import pytest
from pydantic import BaseModel

from actors import (
    AgentEngine,
    ChatMessage,
    ChatModelEvent,
    ChatModelResponseEvent,
    ErrorEvent,
    Event,
    InputEvent,
    OutputEvent,
    ToolCall,
    ToolCallEvent,
    ToolResultEvent,
    Workflow,
    context_source,
    model,
    step,
    tool,
)
from actors.effects import EffectError, EffectKind, EffectResult
from actors.testing import ScriptedModel, tool_call
from protocols.errors import ToolError

TOOL_CALLS: list[str] = []


class Forecast(Workflow):
    @tool
    @staticmethod
    def weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: the city.
        """
        TOOL_CALLS.append(city)
        return f"sunny in {city}"

    @tool
    @staticmethod
    def explode(reason: str) -> str:
        """Always fails.

        Args:
            reason: why.
        """
        raise RuntimeError(f"boom: {reason}")

    @model
    def llm(self):
        return ScriptedModel(
            [[tool_call("weather", city="Paris"), tool_call("weather", city="Oslo")], "done"],
            tools=["weather", "explode"],
        )

    @step(InputEvent, ChatModelResponseEvent)
    def on_event(event: Event, state: Any, ctx: Any) -> None:
        if isinstance(event, InputEvent):
            state.messages.append(event.input)
            ctx.send_event(ChatModelEvent(model="llm", messages=state.messages))
        else:
            state.messages.append(event.response)
            ctx.send_event(OutputEvent(event.response.content))


def _engine(wf: Workflow | None = None) -> AgentEngine:
    return AgentEngine(wf or Forecast())


async def _drive(engine: AgentEngine, event: Event, order: Any = None) -> tuple[Any, list[str]]:
    """Run a turn to completion; ``order`` permutes each batch of results before journaling."""
    state = engine.new_state()
    journal: dict[str, EffectResult] = {}
    executor = engine.executor()
    requested: list[str] = []
    while True:
        outcome = engine.run_turn(state, event, journal, address="a/k", turn_id="k:0")
        if outcome.done:
            return outcome, requested
        results = [await executor.execute(r) for r in outcome.pending]
        requested.extend(r.call_id for r in outcome.pending)
        for result in order(results) if order else results:
            journal[result.call_id] = result


async def test_call_ids_are_paths_and_parallel_tool_calls_are_requested_together() -> None:
    engine = _engine()
    state = engine.new_state()
    first = engine.run_turn(state, InputEvent("hi"), {}, address="a/k", turn_id="t")
    assert not first.done
    assert [(r.call_id, r.kind, r.target) for r in first.pending] == [
        ("t/on_event.0/model.0", EffectKind.MODEL, "llm")
    ]
    payload = first.pending[0].payload
    assert [m["content"] for m in payload["messages"]] == ["hi"]
    assert [t["name"] for t in payload["tools"]] == ["weather", "explode"]
    executor = engine.executor()
    journal = {r.call_id: await executor.execute(r) for r in first.pending}
    second = engine.run_turn(state, InputEvent("hi"), journal, address="a/k", turn_id="t")
    assert [r.call_id for r in second.pending] == [
        "t/on_event.0/tool.0.0",
        "t/on_event.0/tool.0.1",
    ]
    assert [r.payload["arguments"] for r in second.pending] == [{"city": "Paris"}, {"city": "Oslo"}]


@pytest.mark.parametrize("reverse", [False, True])
async def test_replay_gives_the_same_ids_and_outcome_whatever_the_result_order(
    reverse: bool,
) -> None:
    outcome, requested = await _drive(
        _engine(), InputEvent("hi"), (lambda rs: list(reversed(rs))) if reverse else None
    )
    assert requested == [
        "k:0/on_event.0/model.0",
        "k:0/on_event.0/tool.0.0",
        "k:0/on_event.0/tool.0.1",
        "k:0/on_event.0/model.1",
    ]
    assert outcome.done and outcome.outputs == ["done"]
    assert outcome.errors == []
    assert outcome.usage.input_tokens > 0


async def test_a_partial_journal_asks_only_for_the_missing_result() -> None:
    engine = _engine()
    executor = engine.executor()
    state = engine.new_state()
    journal: dict[str, EffectResult] = {}
    out = engine.run_turn(state, InputEvent("hi"), journal, address="a", turn_id="t")
    journal[out.pending[0].call_id] = await executor.execute(out.pending[0])
    out = engine.run_turn(state, InputEvent("hi"), journal, address="a", turn_id="t")
    oslo = out.pending[1]
    journal[oslo.call_id] = await executor.execute(oslo)  # the second result arrives first
    out = engine.run_turn(state, InputEvent("hi"), journal, address="a", turn_id="t")
    assert [r.call_id for r in out.pending] == ["t/on_event.0/tool.0.0"]


async def test_run_turn_is_pure() -> None:
    engine = _engine()
    state = engine.new_state()
    journal: dict[str, EffectResult] = {}
    executor = engine.executor()
    while True:
        a = engine.run_turn(state, InputEvent("hi"), journal, address="x", turn_id="t")
        b = engine.run_turn(state, InputEvent("hi"), journal, address="x", turn_id="t")
        assert a == b
        if a.done:
            break
        for r in a.pending:
            journal[r.call_id] = await executor.execute(r)
    assert len(a.state.messages) == 2 and state.messages == []


async def test_journaled_results_are_never_requested_again() -> None:
    TOOL_CALLS.clear()
    wf = Forecast()
    engine = _engine(wf)
    outcome, requested = await _drive(engine, InputEvent("hi"))
    assert len(requested) == len(set(requested)) == 4
    assert TOOL_CALLS == ["Paris", "Oslo"]
    assert wf.compiled().models["llm"].model.calls == 2


async def test_journal_entries_may_be_plain_dicts() -> None:
    engine = _engine()
    state = engine.new_state()
    out = engine.run_turn(state, InputEvent("x"), {}, address="a", turn_id="t")
    result = await engine.executor().execute(out.pending[0])
    journal = {result.call_id: json.loads(result.model_dump_json())}
    out2 = engine.run_turn(state, InputEvent("x"), journal, address="a", turn_id="t")
    assert [r.call_id for r in out2.pending][0] == "t/on_event.0/tool.0.0"


def test_engine_pickles_with_cloudpickle() -> None:
    engine = cloudpickle.loads(cloudpickle.dumps(_engine()))
    out = engine.run_turn(engine.new_state(), InputEvent("hi"), {}, address="a", turn_id="t")
    assert out.pending[0].target == "llm"


def _ok(call_id: str, value: Any) -> EffectResult:
    return EffectResult(call_id=call_id, value=value)


def _answer(content: str | None, calls: list[ToolCall] | None = None) -> dict[str, Any]:
    return {"message": ChatMessage.assistant(content, calls).model_dump(mode="json")}


def test_a_failed_model_call_becomes_an_error_event() -> None:
    engine = _engine()
    journal = {
        "t/on_event.0/model.0": EffectResult(
            call_id="t/on_event.0/model.0",
            error=EffectError(error_type="ModelRetryableError", message="429", retryable=True),
        )
    }
    out = engine.run_turn(engine.new_state(), InputEvent("x"), journal, address="a", turn_id="t")
    assert out.done and out.outputs == []
    [err] = out.errors
    assert err.error_type == "ModelRetryableError" and err.retryable
    assert "429" in err.message and err.source_event == "ChatModelEvent"
    assert err.cause == "model 'llm' call 't/on_event.0/model.0'"


def test_tool_failures_and_bad_tool_calls_are_fed_back_and_reported() -> None:
    engine = _engine()
    calls = [
        ToolCall(id="c0", name="explode", arguments='{"reason": "x"}'),
        ToolCall(id="c1", name="nope", arguments="{}"),
        ToolCall(id="c2", name="weather", arguments="{not json"),
        ToolCall(id="c3", name="weather", arguments="[1]"),
    ]
    journal = {
        "t/on_event.0/model.0": _ok("t/on_event.0/model.0", _answer(None, calls)),
        "t/on_event.0/tool.0.0": EffectResult(
            call_id="t/on_event.0/tool.0.0",
            error=EffectError(error_type="ToolError", message="boom: x"),
        ),
        "t/on_event.0/model.1": _ok("t/on_event.0/model.1", _answer("recovered")),
    }
    out = engine.run_turn(engine.new_state(), InputEvent("x"), journal, address="a", turn_id="t")
    assert out.done, out.pending
    assert out.outputs == ["recovered"]
    messages = [
        "tool 'explode' failed: ToolError: boom: x",
        "unknown tool 'nope'",
        "invalid JSON arguments for tool 'weather'",
        "arguments for tool 'weather' must be a JSON object",
    ]
    assert len(out.errors) == 4
    for err, expected in zip(out.errors, messages, strict=True):
        assert expected in err.message
        assert err.error_type == "ToolError"
    assert out.errors[0].cause == "tool 'explode' call 't/on_event.0/tool.0.0'"


def test_max_iterations_becomes_an_error_event() -> None:
    class Loop(Forecast):
        @step(InputEvent, ChatModelResponseEvent)
        def on_event(event: Event, state: Any, ctx: Any) -> None:
            ctx.send_event(ChatModelEvent(model="llm", messages=["x"], max_iterations=2))

    engine = _engine(Loop())
    call = [ToolCall(id="c", name="weather", arguments='{"city": "P"}')]
    journal = {}
    for i in range(2):
        journal[f"t/on_event.0/model.{i}"] = _ok(f"t/on_event.0/model.{i}", _answer(None, call))
        journal[f"t/on_event.0/tool.{i}.0"] = _ok(f"t/on_event.0/tool.{i}.0", "sun")
    out = engine.run_turn(engine.new_state(), InputEvent("x"), journal, address="a", turn_id="t")
    assert out.done
    [err] = out.errors
    assert err.error_type == "MaxIterationsExceeded"


class Guarded(Workflow):
    @tool
    @staticmethod
    def weather(city: str) -> str:
        """Weather.

        Args:
            city: the city.
        """
        return f"sunny in {city}"

    @step
    def start(event: InputEvent, state: Any, ctx: Any) -> None:
        if event.input == "raise":
            state["touched"] = True
            raise ValueError("bad input")
        if event.input == "unknown-model":
            ctx.send_event(ChatModelEvent(model="missing", messages=["x"]))
        if event.input == "call":
            try:
                ctx.call_tool("nope")
            except ToolError as exc:
                ctx.send_event(OutputEvent(f"caught {exc}"))
            ctx.send_event(OutputEvent(ctx.call_tool("weather", city="Rome")))
        if event.input == "direct":
            ctx.send_event(ToolCallEvent(tool_name="weather", arguments={"city": "Oslo"}))
            ctx.send_event(ToolCallEvent(tool_name="weather", arguments={"town": "Oslo"}))
        if event.input == "unhandled":
            ctx.send_event(Ping())

    @step
    def on_tool(event: ToolResultEvent, state: Any, ctx: Any) -> None:
        ctx.send_event(OutputEvent((event.is_error, event.result)))

    @step
    def on_error(event: ErrorEvent, state: Any, ctx: Any) -> None:
        state.setdefault("handled", []).append(event.error_type)
        if event.error_type == "ValueError":
            raise RuntimeError("the handler fails too")


class Ping(Event):
    pass


async def test_a_raising_step_becomes_an_error_event_for_the_error_step() -> None:
    engine = AgentEngine(Guarded())
    out, _ = await _drive(engine, InputEvent("raise"))
    assert out.state["handled"] == ["ValueError"]
    # the handler raised too: recorded, not re-delivered (no loop)
    [err] = out.errors
    assert err.error_type == "RuntimeError" and err.step == "on_error"
    assert err.source_event == "ErrorEvent"


async def test_unknown_model_and_unhandled_events_are_reported() -> None:
    engine = AgentEngine(Guarded())
    out, _ = await _drive(engine, InputEvent("unknown-model"))
    assert out.state["handled"] == ["UserError"]
    out, _ = await _drive(engine, InputEvent("unhandled"))
    assert out.state["handled"] == ["UnhandledEvent"]


async def test_ctx_call_tool_suspends_then_returns_and_raises_tool_errors() -> None:
    engine = AgentEngine(Guarded())
    state = engine.new_state()
    out = engine.run_turn(state, InputEvent("call"), {}, address="a", turn_id="t")
    assert [r.call_id for r in out.pending] == ["t/start#1"]  # #0 failed to resolve, no call
    out, requested = await _drive(engine, InputEvent("call"))
    assert out.outputs[0].startswith("caught unknown tool 'nope'")
    assert out.outputs[1] == "sunny in Rome"


async def test_tool_call_events_answer_with_results_and_invalid_args_with_errors() -> None:
    engine = AgentEngine(Guarded())
    out, requested = await _drive(engine, InputEvent("direct"))
    assert requested == ["k:0/start.0/tool", "k:0/start.1/tool"]
    assert out.outputs[0] == (False, "sunny in Oslo")
    is_error, text = out.outputs[1]
    assert is_error and "city" in text  # the missing required argument is named
    assert out.state["handled"] == ["ToolError"]


class Fanout(Workflow):
    @model
    @staticmethod
    def a():
        return ScriptedModel(["from a"])

    @model
    @staticmethod
    def b():
        return ScriptedModel(["from b"])

    @step(InputEvent)
    def ask(event: Event, state: Any, ctx: Any) -> None:
        ctx.send_event(ChatModelEvent(model="a", messages=["q"]))
        ctx.send_event(ChatModelEvent(model="b", messages=["q"]))

    @step(ChatModelResponseEvent)
    def collect(event: ChatModelResponseEvent, state: Any, ctx: Any) -> None:
        ctx.send_event(OutputEvent(event.response.content))

    @step(InputEvent)
    def after(event: Event, state: Any, ctx: Any) -> None:
        state["after"] = ctx.call("tool", "missing", {})


async def test_independent_branches_are_requested_in_one_pass() -> None:
    engine = AgentEngine(Fanout())
    out = engine.run_turn(engine.new_state(), InputEvent("x"), {}, address="a", turn_id="t")
    assert sorted(r.call_id for r in out.pending) == [
        "t/after#0",
        "t/ask.0/model.0",
        "t/ask.1/model.0",
    ]


async def test_a_suspended_step_blocks_later_steps_in_that_pass() -> None:
    class Ordered(Workflow):
        @step(InputEvent)
        def first(event: Event, state: Any, ctx: Any) -> None:
            state["first"] = ctx.call("context", "db", {"q": 1})

        @step(InputEvent)
        def second(event: Event, state: Any, ctx: Any) -> None:
            ctx.send_event(OutputEvent(state.get("first")))

    engine = AgentEngine(Ordered())
    out = engine.run_turn(engine.new_state(), InputEvent("x"), {}, address="a", turn_id="t")
    assert [r.call_id for r in out.pending] == ["t/first#0"]
    assert out.outputs == []  # `second` did not run on a state `first` had not written
    journal = {"t/first#0": _ok("t/first#0", "row")}
    out = engine.run_turn(engine.new_state(), InputEvent("x"), journal, address="a", turn_id="t")
    assert out.done and out.outputs == ["row"]


def test_sends_replies_and_timers_are_released_with_the_turn() -> None:
    class Chatty(Workflow):
        @step(InputEvent)
        def go(self, event: Event, state: Any, ctx: Any) -> None:
            ctx.send("other/1", {"hello": ctx.address})
            ctx.reply("pong")
            ctx.schedule(1.5, Ping())

        @step(Ping)
        def ping(self, event: Event, state: Any, ctx: Any) -> None:
            pass

    engine = AgentEngine(Chatty())
    out = engine.run_turn(
        engine.new_state(), InputEvent("x"), {}, address="me/1", turn_id="t", sender="you/2"
    )
    assert [(str(to), msg) for to, msg in out.sends] == [
        ("other/1", {"hello": "me/1"}),
        ("you/2", "pong"),
    ]
    assert out.timers == [(1.5, Ping())]
    out = engine.run_turn(engine.new_state(), InputEvent("x"), {}, address="me/1", turn_id="t")
    assert out.outputs == ["pong"]  # reply to an input is an output


def test_a_malformed_address_fails_in_the_sending_step() -> None:
    class Bad(Workflow):
        @step(InputEvent)
        def go(event: Event, state: Any, ctx: Any) -> None:
            ctx.send("no slash here", "x")

    engine = AgentEngine(Bad())
    out = engine.run_turn(engine.new_state(), InputEvent("x"), {}, address="me/1", turn_id="t")
    [err] = out.errors
    assert err.step == "go" and out.sends == []


def test_state_round_trips_and_tolerates_added_fields() -> None:
    class V1(BaseModel):
        count: int = 0

    class V2(BaseModel):
        count: int = 0
        label: str = "new"

    class W1(Workflow):
        state_type = V1

        @step(InputEvent)
        def go(event: Event, state: V1, ctx: Any) -> None:
            state.count += 1

    class W2(W1):
        state_type = V2

    e1, e2 = AgentEngine(W1()), AgentEngine(W2())
    out = e1.run_turn(e1.new_state(), InputEvent("x"), {}, address="a", turn_id="t")
    data = e1.dump_state(out.state)
    upgraded = e2.load_state(data)
    assert upgraded == V2(count=1, label="new")
    assert e1.load_state(e2.dump_state(V2(count=3, label="x"))) == V1(count=3)


async def test_executor_reports_failures_as_results() -> None:
    engine = _engine()
    from actors.effects import EffectRequest

    result = await engine.executor().execute(
        EffectRequest(call_id="c", kind="tool", target="explode", payload={"arguments": {}})
    )
    assert result.error is not None and result.error.error_type == "ToolError"
    result = await engine.executor().execute(
        EffectRequest(
            call_id="d", kind="tool", target="weather", payload={"arguments": {"city": "X"}}
        )
    )
    assert result.ok and result.value == "sunny in X"
    results = await asyncio.gather(
        *(
            engine.executor().execute(
                EffectRequest(call_id=str(i), kind="tool", target="nope", payload={})
            )
            for i in range(3)
        )
    )
    assert all(not r.ok for r in results)
    assert list(itertools.chain([r.call_id for r in results])) == ["0", "1", "2"]


class Inline(Workflow):
    @tool
    @staticmethod
    def weather(city: str) -> str:
        """Weather.

        Args:
            city: the city.
        """
        return f"sunny in {city}"

    @model
    @staticmethod
    def llm():
        return ScriptedModel(
            [tool_call("weather", city="Rome"), "Rome is sunny"], prompt="P", tools=["weather"]
        )

    @context_source
    @staticmethod
    def kb():
        return lambda payload: [f"doc about {payload['query']}"]

    @step(InputEvent)
    def ask(event: InputEvent, state: Any, ctx: Any) -> None:
        docs = ctx.search("kb", event.input, limit=1)
        answer = ctx.chat("llm", [f"{event.input} {docs}"])
        ctx.send_event(OutputEvent(answer.content))


async def test_ctx_chat_and_search_are_journaled_calls_with_path_ids() -> None:
    outcome, requested = await _drive(AgentEngine(Inline()), InputEvent("rome"))
    assert requested == [
        "k:0/ask#0",
        "k:0/ask#1/model.0",
        "k:0/ask#1/tool.0.0",
        "k:0/ask#1/model.1",
    ]
    assert outcome.outputs == ["Rome is sunny"]
    assert outcome.usage.output_tokens > 0


class E2(Event):
    pass


class E3(Event):
    pass


SEEN_BY_DB: list[Any] = []


class Interleaved(Workflow):
    """A model answer's step writes state that a later event's step reads: the later step must
    not run (and call with stale state) while the model answer is still missing."""

    @model
    @staticmethod
    def llm():
        return ScriptedModel(["from model"])

    @context_source
    @staticmethod
    def db():
        def query(payload: dict[str, Any]) -> str:
            SEEN_BY_DB.append(payload["query"])
            return "row"

        return query

    @step(InputEvent)
    def s0(event: Event, state: Any, ctx: Any) -> None:
        ctx.send_event(ChatModelEvent(model="llm", messages=["q"]))
        ctx.send_event(E2())

    @step(ChatModelResponseEvent)
    def s1(event: ChatModelResponseEvent, state: Any, ctx: Any) -> None:
        state["x"] = event.response.content

    @step(E2)
    def s2(event: Event, state: Any, ctx: Any) -> None:
        ctx.send_event(E3())

    @step(E3)
    def s3(event: Event, state: Any, ctx: Any) -> None:
        ctx.send_event(OutputEvent(ctx.search("db", state.get("x"))))


async def test_steps_after_a_waiting_model_answer_wait_for_it() -> None:
    SEEN_BY_DB.clear()
    engine = AgentEngine(Interleaved())
    first = engine.run_turn(engine.new_state(), InputEvent("x"), {}, address="a", turn_id="t")
    assert [r.call_id for r in first.pending] == ["t/s0.0/model.0"]  # s3 did not run yet
    outcome, requested = await _drive(engine, InputEvent("x"))
    assert SEEN_BY_DB == ["from model"]
    assert outcome.outputs == ["row"] and outcome.state["x"] == "from model"


@pytest.mark.parametrize("seed", range(6))
async def test_results_arriving_in_any_order_and_batches_give_the_same_turn(seed: int) -> None:
    """Journal a random subset of the pending calls at each pass: the calls requested and the
    final outcome are those of the all-at-once run."""
    import random

    def wf() -> Workflow:
        class Both(Forecast):
            @step(InputEvent)
            def also(event: Event, state: Any, ctx: Any) -> None:
                state["w"] = ctx.call_tool("weather", city="Lima")

        return Both()

    reference, ref_requested = await _drive(AgentEngine(wf()), InputEvent("hi"))
    rng = random.Random(seed)
    engine = AgentEngine(wf())
    executor = engine.executor()
    state = engine.new_state()
    journal: dict[str, EffectResult] = {}
    requested: set[str] = set()
    while True:
        out = engine.run_turn(state, InputEvent("hi"), journal, address="a/k", turn_id="k:0")
        if out.done:
            break
        requested.update(r.call_id for r in out.pending)
        batch = rng.sample(out.pending, rng.randint(1, len(out.pending)))
        for request in batch:
            journal[request.call_id] = await executor.execute(request)
    assert requested == set(ref_requested) == set(journal)
    assert (out.outputs, out.state, out.errors) == (
        reference.outputs,
        reference.state,
        reference.errors,
    )


def test_a_step_may_return_an_event_and_nothing_else() -> None:
    class Returns(Workflow):
        @step(InputEvent)
        def go(event: InputEvent, state: Any, ctx: Any) -> Any:
            return OutputEvent(event.input) if event.input != "bad" else 42

    engine = AgentEngine(Returns())
    out = engine.run_turn(engine.new_state(), InputEvent("ok"), {}, address="a", turn_id="t")
    assert out.outputs == ["ok"] and out.errors == []
    out = engine.run_turn(engine.new_state(), InputEvent("bad"), {}, address="a", turn_id="t")
    [err] = out.errors
    assert err.error_type == "UserError" and "returned 'int'" in err.message


class Chain(Workflow):
    """Makes `event.input` tool calls one after the other, each on the previous answer."""

    @tool
    @staticmethod
    def inc(n: int) -> int:
        """Add one.

        Args:
            n: the number.
        """
        return n + 1

    @step(InputEvent)
    def go(event, state, ctx):  # noqa: N805 - the proposal's step form
        n = 0
        for _ in range(event.input):
            n = ctx.call_tool("inc", n=n)
        ctx.send_event(OutputEvent(n))


async def test_complete_turn_runs_the_passes_and_fills_the_journal() -> None:
    engine = AgentEngine(Chain())
    executor = engine.executor()
    batches: list[list[str]] = []

    async def execute(pending: list[Any]) -> list[EffectResult]:
        batches.append([r.call_id for r in pending])
        return [await executor.execute(r) for r in pending]

    journal: dict[str, Any] = {}
    out = await engine.complete_turn(
        engine.new_state, InputEvent(3), journal, execute, address="a/k", turn_id="t"
    )
    assert out.done and out.outputs == [3]
    assert batches == [["t/go#0"], ["t/go#1"], ["t/go#2"]]  # one call per pass, in order
    assert sorted(journal) == ["t/go#0", "t/go#1", "t/go#2"]


async def test_complete_turn_gives_up_after_max_passes() -> None:
    from actors.engine import MAX_PASSES_PER_TURN
    from protocols.errors import AgentRunError

    engine = AgentEngine(Chain())

    async def execute(pending: list[Any]) -> list[EffectResult]:
        return [EffectResult(call_id=r.call_id, value=0) for r in pending]

    with pytest.raises(AgentRunError, match=f"after {MAX_PASSES_PER_TURN} passes"):
        await engine.complete_turn(
            engine.new_state,
            InputEvent(MAX_PASSES_PER_TURN + 1),
            {},
            execute,
            address="a/k",
            turn_id="t",
        )
