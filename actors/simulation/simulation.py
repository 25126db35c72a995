"""`Simulation`: run a population of agents in simulated time, in-process and deterministically.

Each agent turn goes through the same `AgentEngine` as in the local runner and in Flink, and
its calls through the workflow's own executor (optionally behind a `ModelCassette`). What
differs is time and scheduling: one `SimClock` orders every delivery (messages, timers,
ask timeouts) by simulated time, and turns run one at a time in that order, so a run is a
function of the population, its seeds and the model answers. Messages take ``latency_s`` of
simulated time (plus a seeded ``jitter_s``; order per (sender, recipient) is kept either way);
model and tool calls take none.

Idle agents are cheap: an agent is its key, its state as msgpack bytes (shared among all agents
of a group that never ran a turn) and a few 8-byte counters; engines and executors are shared
per agent type.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from pydantic import BaseModel

from actors.effects import EffectExecutor, EffectKind, EffectRequest, EffectResult
from actors.engine import AgentEngine, TurnOutcome
from actors.messaging import (
    BROADCAST,
    Outbound,
    Subscription,
    ask_reply_event,
    inbound_event,
    message_type_name,
    subscriptions_of,
    topic_routes,
)
from actors.simulation.cassette import ModelCassette
from actors.simulation.clock import SimClock
from actors.simulation.metrics import AgentCounters, ResultTable
from actors.simulation.population import AgentGroup, Population, agent_rng
from protocols.addresses import AgentAddress, TopicAddress, parse_address
from protocols.errors import UserError
from protocols.events import AskReply, AskTimeout, ErrorEvent, Event, InputEvent

__all__ = ["Simulation", "SimulationResult"]

logger = logging.getLogger("flink_actors.actors")

_DELIVER = 0
_ASK_DEADLINE = 1
_ASK_REPLY = 2


@dataclass
class SimulationResult:
    """What a run produced. Two runs with the same population, seeds and model answers give
    equal results (``wall_s`` is not compared).

    Attributes:
        agents: one row per agent: ``agent_type``, ``key``, the counters of
            `actors.simulation.metrics.AGENT_COUNTERS`, then the group's ``report`` columns.
        messages: one row per (``kind``, ``message_type``) with its ``count`` of messages sent.
        summary: run totals (simulated time, events, turns, messages, asks, tokens, ...).
        outputs: ``(sim_time_s, address, output)`` of every output, when kept.
        errors: ``(sim_time_s, address, ErrorEvent)`` of every unhandled error.
        wall_s: how long the run took, in seconds of wall-clock time.
    """

    agents: ResultTable
    messages: ResultTable
    summary: dict[str, Any]
    outputs: list[tuple[float, str, Any]] = field(default_factory=list)
    errors: list[tuple[float, str, ErrorEvent]] = field(default_factory=list)
    wall_s: float = field(default=0.0, compare=False)


class _AgentType:
    """One agent type of the simulation: shared engine and executor, per-agent columns."""

    __slots__ = (
        "name",
        "engine",
        "executor",
        "subscriptions",
        "keys",
        "index",
        "states",
        "counters",
        "default_state",
        "report",
        "state_type",
        "fields",
    )

    def __init__(self, name: str, engine: AgentEngine, executor: EffectExecutor) -> None:
        self.name = name
        self.engine = engine
        self.executor = executor
        self.subscriptions: tuple[Subscription, ...] = subscriptions_of(engine)
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.states: list[bytes] = []
        self.counters = AgentCounters()
        self.default_state = engine.dump_state(engine.new_state())
        self.report: Any = None
        self.state_type = engine.compiled.state_type
        allow = self.state_type.model_config.get("extra") == "allow"
        self.fields = None if allow else frozenset(self.state_type.model_fields)

    def load(self, idx: int) -> BaseModel:
        """Agent ``idx``'s state: `AgentEngine.load_state`, with the field set computed once
        (the per-turn cost that matters with many small agents)."""
        try:
            raw = msgpack.unpackb(self.states[idx], raw=False)
        except Exception:
            return self.engine.load_state(self.states[idx])  # raises the typed error
        fields = self.fields
        if not isinstance(raw, dict) or (fields is not None and not fields.issuperset(raw)):
            return self.engine.load_state(self.states[idx])
        try:
            return self.state_type.model_validate(raw)
        except Exception:
            return self.engine.load_state(self.states[idx])

    def add(self, key: str, state: bytes | None = None) -> int:
        """Create the instance at ``key`` (its index), or return the existing one's index."""
        found = self.index.get(key)
        if found is not None:
            return found
        idx = len(self.keys)
        self.keys.append(key)
        self.index[key] = idx
        self.states.append(self.default_state if state is None else state)
        if idx >= len(self.counters.columns["turns"]):
            self.counters.grow(max(64, 2 * idx))
        return idx


@dataclass(slots=True)
class _OpenAsk:
    asker: _AgentType
    asker_index: int
    recipient: str
    timeout_s: float


class Simulation:
    """A deterministic discrete-event simulation of a `Population`.

    Args:
        population: the agents (groups of N instances per workflow) and the setup seed.
        latency_s: simulated time a message takes from sender to recipient.
        jitter_s: extra latency, uniform in ``[0, jitter_s]``, drawn from a generator seeded
            with the population seed; order per (sender, recipient) is still kept.
        cassette: answers model calls from recorded answers (or records them).
        executors: an executor per agent type instead of the workflow's own.
        keep_outputs: keep every output in the result (turn off for large runs).
    """

    def __init__(
        self,
        population: Population,
        *,
        latency_s: float = 0.001,
        jitter_s: float = 0.0,
        cassette: ModelCassette | None = None,
        executors: Mapping[str, EffectExecutor] | None = None,
        keep_outputs: bool = True,
    ) -> None:
        if latency_s < 0 or jitter_s < 0:
            raise UserError(
                f"latency_s and jitter_s must be >= 0, got {latency_s!r} and {jitter_s!r}"
            )
        self.population = population
        self.latency_s = float(latency_s)
        self.jitter_s = float(jitter_s)
        self.cassette = cassette
        self.keep_outputs = keep_outputs
        self.clock = SimClock()
        self._rng = random.Random(f"{population.seed}/latency")
        self._last_arrival: dict[tuple[str, str], float] = {}
        self._types: dict[str, _AgentType] = {}
        self._asks: dict[str, _OpenAsk] = {}
        self._type_names: dict[type, str] = {}
        self.outputs: list[tuple[float, str, Any]] = []
        self.errors: list[tuple[float, str, ErrorEvent]] = []
        self.message_counts: Counter[tuple[str, str]] = Counter()
        self.stats: Counter[str] = Counter()
        self._wall_s = 0.0
        executors = dict(executors or {})
        for group in population.groups:
            self._add_group(group, executors)
        self._subscriptions = {
            name: t.subscriptions for name, t in self._types.items() if t.subscriptions
        }

    # -- setup --------------------------------------------------------------------------------

    def _add_group(self, group: AgentGroup, executors: dict[str, EffectExecutor]) -> None:
        engine = group.engine()
        name = group.agent_type or engine.name
        kind = self._types.get(name)
        if kind is None:
            executor = executors.get(name) or engine.executor()
            if self.cassette is not None:
                executor = self.cassette.wrap(executor)
            kind = self._types[name] = _AgentType(name, engine, executor)
        elif kind.engine.workflow is not engine.workflow:
            raise UserError(
                f"two AgentGroups of agent type {name!r} run different workflows; give one "
                "of them another agent_type"
            )
        kind.report = group.report
        seed = self.population.seed
        needs_rng = group.init is not None or group.start is not None
        for i in range(group.count):
            key = group.key(i)
            rng = agent_rng(seed, name, i) if needs_rng else None
            state = None
            if group.init is not None:
                initial = group.init(key, rng)  # type: ignore[arg-type]
                if initial is not None:
                    state = engine.dump_state(initial)
            idx = kind.add(key, state)
            if group.start is not None:
                value = group.start(key, rng)  # type: ignore[arg-type]
                if value is not None:
                    at = rng.uniform(0, group.start_jitter_s) if group.start_jitter_s else 0.0  # type: ignore[union-attr]
                    event = value if isinstance(value, Event) else InputEvent(input=value)
                    self.clock.push(at, (_DELIVER, kind, idx, event, None, None))

    def inject(self, address: AgentAddress | str, value: Any, *, at_s: float | None = None) -> None:
        """Deliver ``value`` (an input, or an `Event`) to the agent at ``address`` at simulated
        time ``at_s`` (default: now), as an input from outside the agents."""
        target = parse_address(address) if isinstance(address, str) else address
        if not isinstance(target, AgentAddress):
            raise UserError(f"inject needs an agent address, got {str(target)!r}")
        kind = self._type(target.agent_type)
        event = value if isinstance(value, Event) else InputEvent(input=value)
        at = self.clock.now if at_s is None else at_s
        self.clock.push(at, (_DELIVER, kind, kind.add(target.key), event, None, None))

    def _type(self, agent_type: str) -> _AgentType:
        kind = self._types.get(agent_type)
        if kind is None:
            raise UserError(
                f"the simulation has no agent type {agent_type!r}; its types are "
                f"{list(self._types)!r}"
            )
        return kind

    # -- reading ------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The simulated time (seconds): the watermark, the time of the last event processed."""
        return self.clock.now

    @property
    def agents(self) -> int:
        """How many agent instances exist."""
        return sum(len(t.keys) for t in self._types.values())

    def state(self, agent_type: str, key: Hashable) -> Any:
        """The committed state of one agent."""
        kind = self._type(agent_type)
        idx = kind.index.get(str(key))
        data = kind.default_state if idx is None else kind.states[idx]
        return kind.engine.load_state(data)

    def keys(self, agent_type: str) -> list[str]:
        """The keys of an agent type's instances, in creation order."""
        return list(self._type(agent_type).keys)

    # -- running ------------------------------------------------------------------------------

    async def run(
        self,
        *,
        until_s: float | None = None,
        for_s: float | None = None,
        max_events: int | None = None,
    ) -> SimulationResult:
        """Process events in simulated-time order until ``until_s`` (absolute) or ``for_s``
        from now, or until nothing is pending, or after ``max_events`` events. May be called
        again to continue. Returns the result so far."""
        await self.advance(until_s=until_s, for_s=for_s, max_events=max_events)
        return self.result()

    async def advance(
        self,
        *,
        until_s: float | None = None,
        for_s: float | None = None,
        max_events: int | None = None,
    ) -> int:
        """`run` without building the result; returns how many events were processed."""
        if until_s is not None and for_s is not None:
            raise UserError("pass until_s or for_s, not both")
        horizon = until_s if for_s is None else self.clock.now + for_s
        started = time.perf_counter()
        clock = self.clock
        processed = 0
        try:
            while len(clock):
                next_at = clock.peek_time()
                if horizon is not None and next_at is not None and next_at > horizon:
                    break
                if max_events is not None and processed >= max_events:
                    self.stats["stopped_at_max_events"] += 1
                    break
                item = clock.pop()
                processed += 1
                if item[0] == _DELIVER:
                    _, kind, idx, event, sender, correlation_id = item
                    await self._turn(kind, idx, event, sender, correlation_id)
                elif item[0] == _ASK_REPLY:
                    await self._ask_reply(item[1], item[2])
                else:
                    self._ask_deadline(item[1])
            if horizon is not None:
                clock.advance_to(horizon)
        finally:
            self.stats["events"] += processed
            self._wall_s += time.perf_counter() - started
        return processed

    def run_sync(
        self,
        *,
        until_s: float | None = None,
        for_s: float | None = None,
        max_events: int | None = None,
    ) -> SimulationResult:
        """Blocking `run` (on a fresh event loop)."""
        return asyncio.run(self._run_and_close(until_s, for_s, max_events))

    async def _run_and_close(
        self, until_s: float | None, for_s: float | None, max_events: int | None
    ) -> SimulationResult:
        try:
            return await self.run(until_s=until_s, for_s=for_s, max_events=max_events)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the executors' model and MCP connections."""
        for kind in self._types.values():
            aclose = getattr(kind.executor, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- one turn -----------------------------------------------------------------------------

    async def _turn(
        self,
        kind: _AgentType,
        idx: int,
        event: Event,
        sender: Any,
        correlation_id: str | None,
    ) -> None:
        stats = self.stats
        stats["turns"] += 1
        turn_id = str(stats["turns"])
        address = AgentAddress.model_construct(agent_type=kind.name, key=kind.keys[idx])
        engine = kind.engine
        journal: dict[str, Any] = {}
        counters = kind.counters.columns
        if sender is not None:
            counters["received"][idx] += 1
        outcome = await engine.complete_turn(
            lambda: kind.load(idx),
            event,
            journal,
            lambda pending: self._execute(kind, idx, pending),
            address=address,
            turn_id=turn_id,
            sender=sender,
            correlation_id=correlation_id,
        )
        kind.states[idx] = engine.dump_state(outcome.state)
        counters["turns"][idx] += 1
        self._commit(kind, idx, address, outcome)

    async def _execute(
        self, kind: _AgentType, idx: int, pending: list[EffectRequest]
    ) -> list[EffectResult]:
        results: list[EffectResult] = await asyncio.gather(
            *(kind.executor.execute(r) for r in pending)
        )
        model_calls = sum(1 for r in pending if r.kind is EffectKind.MODEL)
        kind.counters.columns["model_calls"][idx] += model_calls
        return results

    def _commit(
        self, kind: _AgentType, idx: int, address: AgentAddress, outcome: TurnOutcome
    ) -> None:
        now = self.clock.now
        counters = kind.counters.columns
        if outcome.outputs:
            counters["outputs"][idx] += len(outcome.outputs)
            if self.keep_outputs:
                text = str(address)
                self.outputs.extend((now, text, o) for o in outcome.outputs)
        if outcome.errors:
            counters["errors"][idx] += len(outcome.errors)
            text = str(address)
            self.errors.extend((now, text, e) for e in outcome.errors)
        usage = outcome.usage
        if usage.input_tokens or usage.output_tokens:
            counters["input_tokens"][idx] += usage.input_tokens
            counters["output_tokens"][idx] += usage.output_tokens
        for delay_s, timer_event in outcome.timers:
            self.clock.push(now + delay_s, (_DELIVER, kind, idx, timer_event, None, None))
        for ask in outcome.asks:
            self._asks[ask.correlation_id] = _OpenAsk(kind, idx, str(ask.recipient), ask.timeout_s)
            self.clock.push(now + ask.timeout_s, (_ASK_DEADLINE, ask.correlation_id))
            self.stats["asks_opened"] += 1
        if outcome.sends:
            counters["sent"][idx] += len(outcome.sends)
            for out in outcome.sends:
                self._route(address, out)

    # -- messaging ----------------------------------------------------------------------------

    def _type_name(self, message: Any) -> str:
        cls = type(message)
        name = self._type_names.get(cls)
        if name is None:
            name = self._type_names[cls] = message_type_name(message)
        return name

    def _arrival(self, sender: AgentAddress, recipient: str) -> float:
        at = self.clock.now + self.latency_s
        if self.jitter_s:
            at += self._rng.uniform(0.0, self.jitter_s)
            pair = (str(sender), recipient)
            at = max(at, self._last_arrival.get(pair, at))
            self._last_arrival[pair] = at
        return at

    def _route(self, sender: AgentAddress, out: Outbound) -> None:
        self.message_counts[(out.kind, self._type_name(out.message))] += 1
        recipient = out.recipient
        if isinstance(recipient, TopicAddress):
            event = inbound_event(out.message)
            for agent_type, route in topic_routes(
                self._subscriptions, recipient.topic, out.message
            ):
                kind = self._types[agent_type]
                if route is BROADCAST:
                    targets: Any = range(len(kind.keys))
                else:
                    targets = (kind.add(route),)  # type: ignore[arg-type]
                for idx in targets:
                    at = self._arrival(sender, f"{agent_type}/{kind.keys[idx]}")
                    self.clock.push(at, (_DELIVER, kind, idx, event, sender, None))
            return
        if out.kind == "reply" and out.correlation_id is not None:
            pending = self._asks.get(out.correlation_id)
            if pending is None:
                self._drop_reply(out.correlation_id, sender)
                return
            # Matched against the open ask when it arrives, not when it leaves: a reply still
            # in flight at the ask's deadline is late.
            reply = ask_reply_event(out.correlation_id, sender, out.message)
            asker = f"{pending.asker.name}/{pending.asker.keys[pending.asker_index]}"
            self.clock.push(self._arrival(sender, asker), (_ASK_REPLY, reply, sender))
            return
        target = self._types.get(getattr(recipient, "agent_type", ""))
        if target is None:
            self.stats["undeliverable"] += 1
            return
        idx = target.add(recipient.key)
        correlation_id = out.correlation_id if out.kind == "ask" else None
        event = inbound_event(out.message)
        at = self._arrival(sender, str(recipient))
        self.clock.push(at, (_DELIVER, target, idx, event, sender, correlation_id))

    async def _ask_reply(self, reply: AskReply, sender: AgentAddress) -> None:
        pending = self._asks.pop(reply.correlation_id, None)
        if pending is None:
            self._drop_reply(reply.correlation_id, sender)
            return
        self.stats["ask_replies"] += 1
        await self._turn(pending.asker, pending.asker_index, reply, sender, None)

    def _drop_reply(self, correlation_id: str, sender: AgentAddress) -> None:
        self.stats["dropped_replies"] += 1
        logger.debug("late reply %r from %s dropped", correlation_id, sender)

    def _ask_deadline(self, correlation_id: str) -> None:
        pending = self._asks.pop(correlation_id, None)
        if pending is None:
            self.stats["dropped_timeouts"] += 1  # the reply came first
            return
        self.stats["ask_timeouts"] += 1
        timeout = AskTimeout(
            correlation_id=correlation_id, recipient=pending.recipient, timeout_s=pending.timeout_s
        )
        self.clock.push(
            self.clock.now, (_DELIVER, pending.asker, pending.asker_index, timeout, None, None)
        )

    # -- results ------------------------------------------------------------------------------

    def result(self) -> SimulationResult:
        """The result so far: agent and message tables, totals, outputs and errors."""
        rows: list[dict[str, Any]] = []
        totals: Counter[str] = Counter()
        for name, kind in self._types.items():
            columns = kind.counters.columns
            for idx, key in enumerate(kind.keys):
                row: dict[str, Any] = {"agent_type": name, "key": key}
                for column, values in columns.items():
                    row[column] = values[idx]
                    totals[column] += values[idx]
                if kind.report is not None:
                    row.update(_plain(kind.report(kind.engine.load_state(kind.states[idx]))))
                rows.append(row)
        messages = [
            {"kind": k, "message_type": t, "count": n}
            for (k, t), n in sorted(self.message_counts.items())
        ]
        summary: dict[str, Any] = {
            "sim_time_s": self.clock.now,
            "agents": self.agents,
            "events": self.stats["events"],
            "turns": self.stats["turns"],
            "messages_sent": totals["sent"],
            "messages_delivered": totals["received"],
            "outputs": totals["outputs"],
            "errors": totals["errors"],
            "model_calls": totals["model_calls"],
            "input_tokens": totals["input_tokens"],
            "output_tokens": totals["output_tokens"],
            "asks_opened": self.stats["asks_opened"],
            "ask_replies": self.stats["ask_replies"],
            "ask_timeouts": self.stats["ask_timeouts"],
            "dropped_replies": self.stats["dropped_replies"],
            "dropped_timeouts": self.stats["dropped_timeouts"],
            "undeliverable": self.stats["undeliverable"],
            "pending_events": len(self.clock),
        }
        return SimulationResult(
            agents=ResultTable(rows),
            messages=ResultTable(messages),
            summary=summary,
            outputs=list(self.outputs),
            errors=list(self.errors),
            wall_s=self._wall_s,
        )


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in values.items()
    }
