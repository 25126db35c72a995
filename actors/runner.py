"""`LocalRunner`: run a workflow in-process on asyncio, with the runtime's semantics.

No Flink, no Ray: this is what users unit-test their agents with. It keeps the contracts of the
Flink operator: one message at a time per key (a lock per key), keys concurrently, state per
key stored as msgpack bytes, every call executed outside the step and journaled before the turn
is re-run, outputs and messages released only by a completed turn, timers from
``ctx.schedule`` delivered as turns of their own.

Several agent types can run in one runner (``LocalRunner(main, agents=[Other(), ...])``):
messages from ``ctx.send``/``ctx.ask``/``ctx.reply``/``ctx.publish`` addressed to a type the
runner knows are delivered as turns of the recipient, in order per (sender, recipient); asks
open in the runner (not in the user's state) and end in an `AskReply` or an `AskTimeout`;
published messages reach the types whose ``subscriptions`` match. Messages to agent types the
runner does not run are only recorded in ``sent``.

Coroutines are the primary API; each has a blocking ``_sync`` twin that runs on a private event
loop kept for the runner's lifetime (MCP sessions are bound to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
from collections.abc import Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from actors.effects import EffectExecutor, EffectRequest, EffectResult
from actors.engine import AgentEngine, TurnOutcome
from actors.messaging import (
    BROADCAST,
    OpenAsk,
    Outbound,
    Subscription,
    ask_reply_event,
    inbound_event,
    subscriptions_of,
    topic_routes,
)
from actors.workflow import Workflow
from protocols.errors import UserError
from protocols.events import AskTimeout, ErrorEvent, Event, InputEvent, Usage

__all__ = ["LocalRunner"]

T = TypeVar("T")
logger = logging.getLogger("flink_actors.actors")


@dataclass
class _AgentType:
    """One agent type of a runner: its engine, its executor and its instances' state."""

    engine: AgentEngine
    executor: EffectExecutor | None
    subscriptions: tuple[Subscription, ...]
    states: dict[Hashable, bytes] = field(default_factory=dict)
    turns: dict[Hashable, itertools.count[int]] = field(default_factory=dict)


@dataclass
class _PendingAsk:
    asker_type: str
    asker_key: Hashable
    ask: OpenAsk
    timeout: asyncio.Task[Any] | None = None


class LocalRunner:
    """Runs one workflow locally, keyed like the Flink operator.

    ``agents`` adds more agent types (workflows, named by their ``name``, or a mapping of
    agent type to workflow) that exchange messages with the main one and with each other.

    Attributes:
        errors: every `ErrorEvent` no step handled, in order.
        sent: every ``(from_address, to_address, message)`` sent with ``ctx.send``, ``ask``,
            ``reply`` or ``publish``.
        outputs: every ``(address, output)`` of every turn (inputs, messages, timers).
        calls_executed: how many effects were executed (each exactly once).
        usage: the token usage of all completed turns.
        dropped_replies: replies that came after their ask timed out (dropped, logged).
    """

    def __init__(
        self,
        workflow: Workflow | AgentEngine,
        *,
        agent_type: str | None = None,
        executor: EffectExecutor | None = None,
        agents: Mapping[str, Workflow | AgentEngine] | Iterable[Workflow | AgentEngine] = (),
    ) -> None:
        self.engine = workflow if isinstance(workflow, AgentEngine) else AgentEngine(workflow)
        self.agent_type = agent_type or self.engine.name
        self._types: dict[str, _AgentType] = {
            self.agent_type: _AgentType(self.engine, executor, subscriptions_of(self.engine))
        }
        named = agents.items() if isinstance(agents, Mapping) else ((None, a) for a in agents)
        for name, other in named:
            engine = other if isinstance(other, AgentEngine) else AgentEngine(other)
            type_name = name or engine.name
            if type_name in self._types:
                raise UserError(
                    f"LocalRunner got two agent types named {type_name!r}; pass "
                    "agents={'<agent_type>': workflow, ...} to name them apart"
                )
            self._types[type_name] = _AgentType(engine, None, subscriptions_of(engine))
        self._subscriptions = {
            name: t.subscriptions for name, t in self._types.items() if t.subscriptions
        }
        self._states = self._types[self.agent_type].states
        self._locks: dict[tuple[str, Hashable], asyncio.Lock] = {}
        self._timers: set[asyncio.Task[Any]] = set()
        self._asks: dict[str, _PendingAsk] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.errors: list[ErrorEvent] = []
        self.sent: list[tuple[Any, Any, Any]] = []
        self.outputs: list[tuple[Any, Any]] = []
        self.calls_executed = 0
        self.dropped_replies = 0
        self.usage = Usage()

    @property
    def executor(self) -> EffectExecutor:
        """The main agent type's executor."""
        return self._executor_of(self.agent_type)

    def _executor_of(self, agent_type: str) -> EffectExecutor:
        kind = self._types[agent_type]
        if kind.executor is None:
            kind.executor = kind.engine.executor()
        return kind.executor

    @property
    def agent_types(self) -> list[str]:
        """The agent types this runner runs, the main one first."""
        return list(self._types)

    @property
    def open_asks(self) -> int:
        """Asks waiting for their reply or their timeout."""
        return len(self._asks)

    # -- async API ----------------------------------------------------------------------------

    async def send(
        self, key: Hashable, value: Any, *, sender: Any = None, agent_type: str | None = None
    ) -> list[Any]:
        """Deliver one input to the agent at ``key`` (of the main agent type unless
        ``agent_type`` names another); return the outputs of its turn.

        A plain value arrives as ``InputEvent(value)``; an `Event` is delivered as is.
        """
        event = value if isinstance(value, Event) else InputEvent(input=value)
        return await self._turn(self._type_name(agent_type), key, event, sender)

    async def publish(self, topic: str, message: Any, *, sender: Any = None) -> int:
        """Publish ``message`` to ``topic`` from outside the agents (like an input): deliver
        it to the subscribed agent types. Returns how many agent instances it was sent to."""
        from protocols.addresses import TopicAddress

        recipient = TopicAddress(topic.removeprefix("topic:"))
        return self._route_publish(sender, Outbound(recipient, message, kind="publish"))

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
        """Wait until no timer, message delivery or ask timeout is pending (each may cause
        more); raise `TimeoutError` after ``timeout_s`` (a workflow that reschedules forever
        never drains)."""

        async def wait() -> None:
            while self._timers:
                await asyncio.gather(*list(self._timers), return_exceptions=True)

        await asyncio.wait_for(wait(), timeout_s)

    def state(self, key: Hashable, *, agent_type: str | None = None) -> Any:
        """The committed state of ``key`` (a fresh state when the key has not been seen)."""
        kind = self._types[self._type_name(agent_type)]
        data = kind.states.get(key)
        return kind.engine.new_state() if data is None else kind.engine.load_state(data)

    def keys(self, agent_type: str | None = None) -> list[Hashable]:
        """The keys of the live instances of an agent type (those that completed a turn)."""
        return list(self._types[self._type_name(agent_type)].states)

    def address(self, key: Hashable, *, agent_type: str | None = None) -> Any:
        """The address of the agent at ``key``."""
        return _address(self._type_name(agent_type), key)

    def _type_name(self, agent_type: str | None) -> str:
        if agent_type is None:
            return self.agent_type
        if agent_type not in self._types:
            raise UserError(
                f"this LocalRunner runs no agent type {agent_type!r}; it runs "
                f"{list(self._types)!r} (add it with agents=[...])"
            )
        return agent_type

    async def aclose(self) -> None:
        """Cancel pending timers and close the models' and MCP servers' connections."""
        for task in list(self._timers):
            task.cancel()
        await asyncio.gather(*list(self._timers), return_exceptions=True)
        for kind in self._types.values():
            aclose = getattr(kind.executor, "aclose", None)
            if aclose is not None:
                await aclose()

    async def __aenter__(self) -> LocalRunner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- blocking twins -----------------------------------------------------------------------

    def send_sync(
        self, key: Hashable, value: Any, *, sender: Any = None, agent_type: str | None = None
    ) -> list[Any]:
        """Blocking `send`."""
        return self._block(self.send(key, value, sender=sender, agent_type=agent_type))

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

    async def _turn(
        self,
        agent_type: str,
        key: Hashable,
        event: Event,
        sender: Any,
        correlation_id: str | None = None,
    ) -> list[Any]:
        kind = self._types[agent_type]
        lock = self._locks.setdefault((agent_type, key), asyncio.Lock())
        async with lock:
            seq = next(kind.turns.setdefault(key, itertools.count()))
            turn_id = f"{key}:{seq}"
            address = _address(agent_type, key)
            data = kind.states.get(key)
            state = kind.engine.new_state() if data is None else kind.engine.load_state(data)
            journal: dict[str, Any] = {}
            outcome = await self._run_to_completion(
                agent_type, state, event, journal, address, turn_id, sender, correlation_id
            )
            kind.states[key] = kind.engine.dump_state(outcome.state)
            self.errors.extend(outcome.errors)
            self.usage = self.usage + outcome.usage
            self.outputs.extend((address, output) for output in outcome.outputs)
            for delay_s, timer_event in outcome.timers:
                self._spawn(self._fire(agent_type, key, delay_s, timer_event))
            for ask in outcome.asks:
                self._open_ask(agent_type, key, ask)
            for out in outcome.sends:
                self.sent.append((address, out.recipient, out.message))
                self._route(address, out)
            return outcome.outputs

    async def _run_to_completion(
        self,
        agent_type: str,
        state: Any,
        event: Event,
        journal: dict[str, Any],
        address: Any,
        turn_id: str,
        sender: Any,
        correlation_id: str | None,
    ) -> TurnOutcome:
        executor = self._executor_of(agent_type)

        async def execute(pending: list[EffectRequest]) -> list[Mapping[str, Any]]:
            results = await asyncio.gather(*(executor.execute(r) for r in pending))
            self.calls_executed += len(results)
            return [_journal_entry(r) for r in results]

        return await self._types[agent_type].engine.complete_turn(
            lambda: copy.deepcopy(state),
            event,
            journal,
            execute,
            address=address,
            turn_id=turn_id,
            sender=sender,
            correlation_id=correlation_id,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task that `drain` waits for. Tasks start in creation order and
        queue on the recipient's lock in that order, which keeps messages in order per
        (sender, recipient)."""
        task = asyncio.ensure_future(coro)
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)
        return task

    async def _fire(self, agent_type: str, key: Hashable, delay_s: float, event: Event) -> None:
        await asyncio.sleep(delay_s)
        await self._turn(agent_type, key, event, None)

    # -- messaging ----------------------------------------------------------------------------

    def _route(self, sender: Any, out: Outbound) -> None:
        if out.kind == "publish":
            self._route_publish(sender, out)
            return
        if out.kind == "reply" and out.correlation_id is not None:
            pending = self._asks.pop(out.correlation_id, None)
            if pending is None:
                self.dropped_replies += 1
                logger.info(
                    "reply %r from %s dropped: its ask already timed out or was answered",
                    out.correlation_id,
                    sender,
                )
                return
            if pending.timeout is not None:
                pending.timeout.cancel()
            event = ask_reply_event(out.correlation_id, sender, out.message)
            self._spawn(self._turn(pending.asker_type, pending.asker_key, event, sender))
            return
        agent_type = getattr(out.recipient, "agent_type", None)
        if agent_type not in self._types:
            return  # not run here: only recorded in `sent`
        correlation_id = out.correlation_id if out.kind == "ask" else None
        self._spawn(
            self._turn(
                agent_type, out.recipient.key, inbound_event(out.message), sender, correlation_id
            )
        )

    def _route_publish(self, sender: Any, out: Outbound) -> int:
        event = inbound_event(out.message)
        delivered = 0
        for agent_type, route in topic_routes(
            self._subscriptions, out.recipient.topic, out.message
        ):
            keys = self.keys(agent_type) if route is BROADCAST else [route]
            for key in keys:
                self._spawn(self._turn(agent_type, key, event, sender))
                delivered += 1
        return delivered

    def _open_ask(self, agent_type: str, key: Hashable, ask: OpenAsk) -> None:
        pending = _PendingAsk(agent_type, key, ask)
        self._asks[ask.correlation_id] = pending
        pending.timeout = self._spawn(self._ask_timeout(ask.correlation_id, ask.timeout_s))

    async def _ask_timeout(self, correlation_id: str, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        pending = self._asks.pop(correlation_id, None)
        if pending is None:
            return  # answered in the meantime
        event = AskTimeout(
            correlation_id=correlation_id,
            recipient=str(pending.ask.recipient),
            timeout_s=pending.ask.timeout_s,
        )
        await self._turn(pending.asker_type, pending.asker_key, event, None)


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
