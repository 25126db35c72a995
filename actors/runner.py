"""`LocalRunner`: run a workflow in-process on asyncio, with the runtime's semantics.

No Flink, no Ray: this is what users unit-test their agents with. It keeps the contracts of the
Flink operator: one message at a time per key (a lock per key), keys concurrently, state per
key stored as msgpack bytes, every call executed outside the step and journaled before the turn
is re-run, outputs and messages released only by a completed turn, timers from
``ctx.schedule`` delivered as turns of their own.

Coroutines are the primary API; each has a blocking ``_sync`` twin that runs on a private event
loop kept for the runner's lifetime (MCP sessions are bound to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Hashable, Iterable, Mapping
from typing import Any, TypeVar

import msgpack

from actors.effects import EffectExecutor, EffectResult
from actors.engine import AgentEngine, TurnOutcome
from actors.workflow import Workflow
from protocols.errors import AgentRunError, UserError
from protocols.events import ErrorEvent, Event, InputEvent, Usage

__all__ = ["LocalRunner"]

T = TypeVar("T")
MAX_PASSES_PER_TURN = 1_000


class LocalRunner:
    """Runs one workflow locally, keyed like the Flink operator.

    Attributes:
        errors: every `ErrorEvent` no step handled, in order.
        sent: every ``(from_address, to_address, message)`` sent with ``ctx.send``/``reply``.
        calls_executed: how many effects were executed (each exactly once).
        usage: the token usage of all completed turns.
    """

    def __init__(
        self,
        workflow: Workflow,
        *,
        agent_type: str | None = None,
        executor: EffectExecutor | None = None,
    ) -> None:
        self.engine = workflow if isinstance(workflow, AgentEngine) else AgentEngine(workflow)
        self.agent_type = agent_type or self.engine.name
        self._executor = executor
        self._states: dict[Hashable, bytes] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._turns: dict[Hashable, itertools.count[int]] = {}
        self._timers: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.errors: list[ErrorEvent] = []
        self.sent: list[tuple[Any, Any, Any]] = []
        self.calls_executed = 0
        self.usage = Usage()

    @property
    def executor(self) -> EffectExecutor:
        if self._executor is None:
            self._executor = self.engine.executor()
        return self._executor

    # -- async API ----------------------------------------------------------------------------

    async def send(self, key: Hashable, value: Any, *, sender: Any = None) -> list[Any]:
        """Deliver one input to the agent at ``key``; return the outputs of its turn.

        A plain value arrives as ``InputEvent(value)``; an `Event` is delivered as is.
        """
        event = value if isinstance(value, Event) else InputEvent(input=value)
        return await self._turn(key, event, sender)

    async def run(self, inputs: Iterable[tuple[Hashable, Any]]) -> dict[Hashable, list[Any]]:
        """Deliver ``(key, input)`` pairs: in order per key, keys concurrently. Returns the
        outputs per key; waits for timers scheduled on the way."""
        per_key: dict[Hashable, list[Any]] = {}
        for key, value in inputs:
            per_key.setdefault(key, []).append(value)

        async def one_key(key: Hashable, values: list[Any]) -> list[Any]:
            outputs: list[Any] = []
            for value in values:
                outputs.extend(await self.send(key, value))
            return outputs

        results = await asyncio.gather(*(one_key(k, v) for k, v in per_key.items()))
        await self.drain()
        return dict(zip(per_key, results, strict=True))

    async def drain(self, *, timeout_s: float | None = None) -> None:
        """Wait until no timer is pending (timers may schedule more timers); raise
        `TimeoutError` after ``timeout_s`` (a workflow that reschedules forever never drains)."""

        async def wait() -> None:
            while self._timers:
                await asyncio.gather(*list(self._timers), return_exceptions=True)

        await asyncio.wait_for(wait(), timeout_s)

    def state(self, key: Hashable) -> Any:
        """The committed state of ``key`` (a fresh state when the key has not been seen)."""
        data = self._states.get(key)
        return self.engine.new_state() if data is None else self.engine.load_state(data)

    def address(self, key: Hashable) -> Any:
        """The address of the agent at ``key``."""
        return _address(self.agent_type, key)

    async def aclose(self) -> None:
        """Cancel pending timers and close the models' and MCP servers' connections."""
        for task in list(self._timers):
            task.cancel()
        await asyncio.gather(*list(self._timers), return_exceptions=True)
        aclose = getattr(self._executor, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> LocalRunner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- blocking twins -----------------------------------------------------------------------

    def send_sync(self, key: Hashable, value: Any, *, sender: Any = None) -> list[Any]:
        """Blocking `send`."""
        return self._block(self.send(key, value, sender=sender))

    def run_sync(self, inputs: Iterable[tuple[Hashable, Any]]) -> dict[Hashable, list[Any]]:
        """Blocking `run`."""
        return self._block(self.run(inputs))

    def drain_sync(self, *, timeout_s: float | None = None) -> None:
        """Blocking `drain`."""
        self._block(self.drain(timeout_s=timeout_s))

    def close_sync(self) -> None:
        """Blocking `aclose`; also closes the private event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.aclose())
            self._loop.close()

    def _block(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise UserError("the *_sync methods cannot run inside an event loop; await send()")
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    # -- one turn -----------------------------------------------------------------------------

    async def _turn(self, key: Hashable, event: Event, sender: Any) -> list[Any]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            seq = next(self._turns.setdefault(key, itertools.count()))
            turn_id = f"{key}:{seq}"
            address = self.address(key)
            state = self.state(key)
            journal: dict[str, Any] = {}
            outcome = await self._run_to_completion(state, event, journal, address, turn_id, sender)
            self._states[key] = self.engine.dump_state(outcome.state)
            self.errors.extend(outcome.errors)
            self.usage = self.usage + outcome.usage
            self.sent.extend((address, to, message) for to, message in outcome.sends)
            for delay_s, timer_event in outcome.timers:
                task = asyncio.ensure_future(self._fire(key, delay_s, timer_event))
                self._timers.add(task)
                task.add_done_callback(self._timers.discard)
            return outcome.outputs

    async def _run_to_completion(
        self,
        state: Any,
        event: Event,
        journal: dict[str, Any],
        address: Any,
        turn_id: str,
        sender: Any,
    ) -> TurnOutcome:
        for _ in range(MAX_PASSES_PER_TURN):
            outcome = self.engine.run_turn(
                state, event, journal, address=address, turn_id=turn_id, sender=sender
            )
            if outcome.done:
                return outcome
            results = await asyncio.gather(*(self.executor.execute(r) for r in outcome.pending))
            for request, result in zip(outcome.pending, results, strict=True):
                if request.call_id in journal:
                    raise AgentRunError(f"call {request.call_id!r} was requested twice")
                journal[request.call_id] = _journal_entry(result)
            self.calls_executed += len(results)
        raise AgentRunError(
            f"turn {turn_id!r} still had pending calls after {MAX_PASSES_PER_TURN} passes"
        )

    async def _fire(self, key: Hashable, delay_s: float, event: Event) -> None:
        await asyncio.sleep(delay_s)
        await self._turn(key, event, None)


def _journal_entry(result: EffectResult) -> Mapping[str, Any]:
    """Round-trip the result through msgpack, as the Flink operator's keyed state does, so a
    result that would not survive a checkpoint fails here too."""
    data = msgpack.packb(result.model_dump(mode="json"), use_bin_type=True)
    return msgpack.unpackb(data, raw=False)


def _address(agent_type: str, key: Hashable) -> Any:
    try:
        from protocols.addresses import AgentAddress
    except ImportError:  # pragma: no cover - protocols without addresses: the string form
        return f"{agent_type}/{key}"
    return AgentAddress(agent_type, str(key))
