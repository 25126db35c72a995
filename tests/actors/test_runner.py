"""LocalRunner: serial per key, concurrent across keys, timers, sends, sync twins."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from actors import Event, InputEvent, LocalRunner, OutputEvent, Workflow, step, tool
from protocols.errors import UserError

ACTIVE: dict[str, int] = {}
PEAK: dict[str, int] = {}
EVENTS: list[tuple[str, str]] = []


class Slow(Workflow):
    @tool
    @staticmethod
    async def work(key: str, item: int) -> int:
        """Sleep a little, tracking how many calls run at once per key and overall.

        Args:
            key: the agent key.
            item: the item number.
        """
        ACTIVE[key] = ACTIVE.get(key, 0) + 1
        ACTIVE["*"] = ACTIVE.get("*", 0) + 1
        PEAK[key] = max(PEAK.get(key, 0), ACTIVE[key])
        PEAK["*"] = max(PEAK.get("*", 0), ACTIVE["*"])
        EVENTS.append((key, f"start {item}"))
        await asyncio.sleep(0.02)
        EVENTS.append((key, f"end {item}"))
        ACTIVE[key] -= 1
        ACTIVE["*"] -= 1
        return item * 10

    @step(InputEvent)
    def go(event: InputEvent, state: Any, ctx: Any) -> None:
        key, item = event.input
        state.setdefault("done", []).append(ctx.call_tool("work", key=key, item=item))
        ctx.send_event(OutputEvent(item))


async def test_serial_per_key_and_concurrent_across_keys() -> None:
    ACTIVE.clear(), PEAK.clear(), EVENTS.clear()
    runner = LocalRunner(Slow())
    inputs = [(k, (k, i)) for i in range(4) for k in ("a", "b", "c")]
    outputs = await runner.run(inputs)
    assert outputs == {"a": [0, 1, 2, 3], "b": [0, 1, 2, 3], "c": [0, 1, 2, 3]}
    assert PEAK["a"] == PEAK["b"] == PEAK["c"] == 1
    assert PEAK["*"] > 1
    for key in "abc":
        mine = [e for k, e in EVENTS if k == key]
        assert mine == [f"{s} {i}" for i in range(4) for s in ("start", "end")]
        assert runner.state(key)["done"] == [0, 10, 20, 30]
    assert runner.calls_executed == 12


async def test_concurrent_sends_to_one_key_are_serialised() -> None:
    ACTIVE.clear(), PEAK.clear(), EVENTS.clear()
    runner = LocalRunner(Slow())
    results = await asyncio.gather(*(runner.send("k", ("k", i)) for i in range(5)))
    assert sorted(r[0] for r in results) == [0, 1, 2, 3, 4]
    assert PEAK["k"] == 1
    assert len(runner.state("k")["done"]) == 5


class Timer(Workflow):
    @step(InputEvent)
    def start(event: InputEvent, state: Any, ctx: Any) -> None:
        ctx.schedule(0.05, Tick(n=int(event.input)))

    @step
    def tick(event: Tick, state: Any, ctx: Any) -> None:
        state.setdefault("ticks", []).append(event.n)
        ctx.send(f"peer/{event.n}", {"tick": event.n})
        if event.n > 0:
            ctx.schedule(0.0, Tick(n=event.n - 1))


class Tick(Event):
    n: int


async def test_timers_are_delivered_as_turns_and_drain_waits_for_them() -> None:
    runner = LocalRunner(Timer(), agent_type="timer")
    started = time.monotonic()
    assert await runner.send("k", 2) == []
    assert "ticks" not in runner.state("k")
    await runner.drain()
    assert time.monotonic() - started >= 0.05
    assert runner.state("k")["ticks"] == [2, 1, 0]
    assert [(str(to), msg) for _, to, msg in runner.sent] == [
        ("peer/2", {"tick": 2}),
        ("peer/1", {"tick": 1}),
        ("peer/0", {"tick": 0}),
    ]
    assert str(runner.sent[0][0]) == str(runner.address("k")) == "timer/k"


def test_sync_twins() -> None:
    runner = LocalRunner(Timer())
    assert runner.send_sync("k", 0) == []
    runner.drain_sync()
    assert runner.state("k")["ticks"] == [0]
    runner.close_sync()


async def test_sync_twins_refuse_to_run_inside_a_loop() -> None:
    runner = LocalRunner(Timer())
    with pytest.raises(UserError, match="inside an event loop"):
        runner.send_sync("k", 0)


async def test_unknown_keys_have_a_fresh_state() -> None:
    runner = LocalRunner(Timer())
    assert runner.state("never").messages == []


async def test_drain_times_out_on_a_workflow_that_reschedules_forever() -> None:
    class Forever(Workflow):
        @step(InputEvent)
        def start(event: InputEvent, state: Any, ctx: Any) -> None:
            ctx.schedule(0.001, Tick(n=1))

        @step
        def tick(event: Tick, state: Any, ctx: Any) -> None:
            ctx.schedule(0.001, Tick(n=event.n + 1))

    runner = LocalRunner(Forever())
    await runner.send("k", 0)
    with pytest.raises(TimeoutError):
        await runner.drain(timeout_s=0.1)
    await runner.aclose()
    assert runner.state("k") is not None
