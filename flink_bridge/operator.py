"""The keyed agent operator: one actor per Flink key, effects on a bridge, results journaled.

Per key, in Flink keyed state:
- `agent`      [turns started, the workflow's state (msgpack), mailbox entries taken], written
               when a turn completes;
- `turn`       the turn in progress (id, seq, event, envelope metadata), written only once the
               turn has to wait for a call;
- `journal`    call id -> result of the calls the waiting turn has made;
- `mailbox`    events waiting for the turn in progress to finish (one turn at a time),
               appended to; the first *taken* of them have already been started (see
               `_pop_mail`), so taking one costs no write of its own;
- `scheduled`  fire time -> events from `ctx.schedule`;
- `asks`       correlation id -> [recipient, deadline, timeout] of each open `ctx.ask`.

A turn runs as `engine.run_turn(state, event, journal)`. Calls it needs that are not journaled
go to the bridge, and the operator's *tick* (one processing-time timer for all keys) is set for
when results are expected (the observed latency of each call target); each tick runs every key
whose results are in, under its own key (`flink_bridge.key_switch`), which journals them and
runs the turn again, and ticks again in short steps while calls are out. Outputs leave only when
the turn is done, together with the new state, so a checkpoint never holds half a turn's
effects: after a restore the turn re-runs against its journal, calls that completed are
replayed, and only the calls still missing are made (contract 2). A restored operator lists the
keys with a turn in state and runs them at its first tick. Where keys cannot be switched, each
waiting key has a timer of its own instead (in the checkpoint, so it wakes up by itself).

The hot path keeps the turn in progress decoded in memory (`_LiveTurn`) and writes state only
where a checkpoint needs it: a turn that completes within one callback (no call, or its results
already in) never writes `turn` or `journal`, because nothing can be checkpointed in the middle
of a callback. After a restore, memory is empty and each key reloads its turn from state the
first time it is touched. Each state access is a call from Python into the JVM; the numbers
behind this layout are in docs/architecture.md.

Envelopes (`flink_bridge.envelopes`): an `Inbound` record carries the event and its envelope's
metadata; the turn runs with ``sender=`` the envelope's sender (``ctx.sender``), and the
messages of ``ctx.send``/``ctx.reply`` leave on the sends side output as envelopes caused by it,
only when the turn completes, like outputs. With ``OperatorOptions(envelopes=True)`` outputs
are `KeyedOutput`s (key, output, cause), so they can be wrapped as envelopes downstream.

Asks (`ctx.ask`): a completed turn's `outcome.asks` are kept open in `asks` with a
processing-time timer at their deadline. A reply (an envelope marked ``fa.kind=reply``, decoded
as `AskReply`) closes its ask and runs as a turn; the deadline timer of an ask still open
closes it and runs an `AskTimeout` turn. Whichever comes second is dropped (and counted). A
turn handling an ask runs with its correlation id, so ``ctx.reply`` answers the asker.

A bounded input ends with a final watermark; an event-time timer at `DRAIN_AT`, set on every key
with work in flight, fires then and finishes the key's work synchronously, because pending
processing-time timers never fire after the input ends.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from actors.effects import EffectKind, EffectRequest, EffectResult
from flink_bridge.codec import EventCodec, decode_result, encode_result
from flink_bridge.envelopes import (
    Inbound,
    KeyedOutput,
    install_message_types,
    outbound_records,
)
from flink_bridge.key_switch import key_switch_of
from flink_bridge.thread_names import name_this_thread
from protocols import AgentAddress, parse_address
from protocols.events import AskTimeout, Event, InputEvent

__all__ = ["DRAIN_AT", "AgentProcessFunction", "OperatorOptions"]

logger = logging.getLogger("flink_actors.flink_bridge")

DRAIN_AT = 2**63 - 2  # Long.MAX_VALUE - 1: fires on the final watermark of a bounded input
DRAIN_REPORT_AFTER_S = 10.0  # a drain waiting longer logs where its calls are
MAILBOX_COMPACT_AT = 64  # taken mailbox entries kept in state before the rest is rewritten
ERRORS_TAG_NAME = "agent-errors"


class OperatorOptions:
    """Plain, picklable settings of the operator."""

    def __init__(
        self,
        *,
        agent_type: str,
        poll_interval_ms: int = 5,
        max_in_flight: int = 200,
        bridge: str = "ray",
        ray_env: dict[str, str] | None = None,
        drain_timeout_s: float = 300.0,
        bridge_start_timeout_s: float = 180.0,
        envelopes: bool = False,
        message_types: tuple[Any, ...] = (),
        drain_timer: bool = True,
    ) -> None:
        self.agent_type = agent_type
        self.poll_interval_ms = poll_interval_ms
        self.max_in_flight = max_in_flight
        self.bridge = bridge
        self.ray_env = dict(ray_env or {})
        self.drain_timeout_s = drain_timeout_s
        self.bridge_start_timeout_s = bridge_start_timeout_s
        self.envelopes = envelopes
        self.message_types = tuple(message_types)
        # The end-of-input drain timer; off for inputs that never end (an unbounded source):
        # one timer registration less per turn.
        self.drain_timer = drain_timer


def _make_address(agent_type: str, key: Any) -> Any:
    """The agent's address; its plain string form for a key no address accepts (empty)."""
    try:
        return AgentAddress(agent_type=agent_type, key=str(key))
    except ValueError:  # pydantic's ValidationError
        return f"{agent_type}/{key}"


def _parse_sender(sender: str | None) -> Any:
    return None if sender is None else parse_address(sender)


def _is_reply(meta: dict[str, Any] | None) -> bool:
    return meta is not None and meta.get("kind") == "reply" and bool(meta.get("ask_id"))


def _take(times: dict[Any, set[int]], key: Any, timestamp: int) -> bool:
    """Remove `timestamp` from the key's set of timer times; True if it was there."""
    at = times.get(key)
    if not at or timestamp not in at:
        return False
    at.discard(timestamp)
    if not at:
        del times[key]
    return True


def _make_process_function_base() -> type:
    from pyflink.datastream import KeyedProcessFunction

    return KeyedProcessFunction


@contextlib.contextmanager
def _jvm_signal_handlers_kept() -> Iterator[None]:
    """Keep `ray.init` from taking over SIGSEGV inside the JVM (thread mode).

    The JVM raises SIGSEGV on purpose (safepoint polls, implicit null checks) and handles it.
    `ray.init` enables Python's faulthandler unless it is already on; faulthandler then catches
    the JVM's SIGSEGV, re-raises it with kill(), and the TaskManager dies. Ray only checks
    `faulthandler.is_enabled()`, so it is made to answer True while Ray starts.
    """
    original = faulthandler.is_enabled
    faulthandler.is_enabled = lambda: True  # type: ignore[assignment]
    try:
        yield
    finally:
        faulthandler.is_enabled = original  # type: ignore[assignment]


def _on_python_thread(fn: Callable[[], None], *, timeout_s: float) -> bool:
    """Run `fn` on a plain Python thread and wait up to `timeout_s`; True if it finished.

    Ray must not be called from the task thread itself: that thread belongs to the JVM (Pemja
    gives it its own Python thread state), and Ray's Cython code re-takes the GIL with
    `PyGILState_Ensure`, which does not know that thread state, so the thread waits for the GIL
    it already holds (seen with gdb: `CoreWorker.kill_actor -> check_status ->
    PyGILState_Ensure -> take_gil`, hung forever in `close()`). A thread made by `threading`
    has a matching thread state. Exceptions from `fn` are raised here.
    """
    import threading

    failure: list[BaseException] = []

    def run() -> None:
        name_this_thread("fa-ray-call")  # and the threads Ray starts from it
        try:
            fn()
        except BaseException as exc:  # handed to the task thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="flink-actors-ray-call", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return False
    if failure:
        raise failure[0]
    return True


def _start_in_thread(bridge: Any, *, timeout_s: float) -> None:
    """Start the bridge on a plain Python thread (see `_on_python_thread`), and fail the task
    (Flink restarts it) with a clear message if it does not start in time, rather than hang in
    `open()`."""
    if not _on_python_thread(bridge.start, timeout_s=timeout_s):
        raise TimeoutError(
            f"the effect bridge did not connect to Ray within {timeout_s:.0f} s; check that the "
            "Ray head in RAY_ADDRESS answers (`flink-actors status`)"
        )


def pool_kinds(compiled: Any) -> list[EffectKind]:
    """The kinds of call a workflow can make, hence the worker pools its job starts.

    A Ray worker is a process of its own (~1% of a core idle, and its memory); a pool for a
    kind the workflow declares nothing of (no @mcp_server, no context source...) would only
    answer "unknown" to every call. A workflow that declares no model, tool, MCP server or
    context source still gets the model pool: a bridge needs one. ``inline`` tools run in the
    turn itself, so tools that are all inline need no tool pool.
    """
    declared = {
        EffectKind.MODEL: compiled.models,
        EffectKind.TOOL: [t for t in compiled.tools.values() if not t.inline],
        EffectKind.MCP: compiled.mcp_servers,
        EffectKind.CONTEXT: compiled.context_sources,
    }
    return [kind for kind, targets in declared.items() if targets] or [EffectKind.MODEL]


class _EngineFactory:
    """Picklable zero-argument callable: the executor of the engine's workflow."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self) -> Any:
        return self.engine.executor()


def build_process_function(
    engine: Any,
    options: OperatorOptions,
    to_event: Callable[[Any], Event] | None = None,
    *,
    errors_tag: Any = None,
    sends_tag: Any = None,
    keys_tag: Any = None,
) -> Any:
    """The `KeyedProcessFunction` running `engine`'s workflow; pyflink imported lazily.

    With `keys_tag`, each key's first completed turn emits the key on that side output (the
    registry of live keys that broadcast subscriptions fan out to, `flink_bridge.subscriptions`).
    """
    base = _make_process_function_base()
    cls = type("AgentProcessFunction", (AgentProcessFunction, base), {})
    return cls(engine, options, to_event, errors_tag, sends_tag, keys_tag)


@dataclass(slots=True)
class _LiveTurn:
    """The turn in progress on one key, decoded, kept between callbacks."""

    turn_id: str
    seq: int
    event: Event
    meta: dict[str, Any] | None
    state_raw: bytes | None
    """The agent's state before the turn (msgpack); None for a key's first turn."""
    entry: bytes | None = None
    """The event as codec bytes, once known (encoded lazily: most turns never need it)."""
    journal: dict[str, EffectResult] = field(default_factory=dict)
    persisted_ids: set[str] = field(default_factory=set)
    """Call ids whose result is in the `journal` MapState."""
    persisted: bool = False
    """Whether the `turn` ValueState holds this turn."""
    mail: list[bytes] | None = None
    """The mailbox as it is in state; None: not read since a restore."""
    mail_taken: int = 0
    """How many entries at the head of `mail` have been taken (turns started from them)."""
    in_flight: set[str] = field(default_factory=set)
    drain_armed: bool = False


class AgentProcessFunction:
    """Mixed into pyflink's `KeyedProcessFunction` by `build_process_function`."""

    def __init__(
        self,
        engine: Any,
        options: OperatorOptions,
        to_event: Callable[[Any], Event] | None = None,
        errors_tag: Any = None,
        sends_tag: Any = None,
        keys_tag: Any = None,
    ) -> None:
        self.engine = engine
        self.options = options
        self.to_event = to_event
        self.errors_tag = errors_tag
        self.sends_tag = sends_tag
        self.keys_tag = keys_tag

    # -- lifecycle ------------------------------------------------------------------------

    def open(self, runtime_context: Any) -> None:
        from pyflink.common import Types
        from pyflink.datastream.state import (
            ListStateDescriptor,
            MapStateDescriptor,
            ValueStateDescriptor,
        )

        # Values are msgpack bytes. PRIMITIVE_ARRAY(BYTE) would convert them to tuples of ints
        # (and fails on an empty ValueState in thread mode); a pickled `bytes` is bytes + 20.
        blob = Types.PICKLED_BYTE_ARRAY()
        if getattr(self.options, "message_types", ()):
            install_message_types(self.options.message_types)  # for encoding ctx.send messages
        ctx = runtime_context
        self.agent = ctx.get_state(ValueStateDescriptor("agent", blob))
        self.turn = ctx.get_state(ValueStateDescriptor("turn", blob))
        self.journal = ctx.get_map_state(MapStateDescriptor("journal", Types.STRING(), blob))
        self.mailbox = ctx.get_list_state(ListStateDescriptor("mailbox", blob))
        self.scheduled = ctx.get_map_state(MapStateDescriptor("scheduled", Types.LONG(), blob))
        self.asks = ctx.get_map_state(MapStateDescriptor("asks", Types.STRING(), blob))
        self.codec = EventCodec([t for s in self.engine.compiled.steps for t in s.events])
        self.live: dict[Any, _LiveTurn] = {}  # key -> its turn in progress
        self.addresses: dict[Any, Any] = {}  # key -> its address (`_address_of`)
        self.arrived: dict[Any, list[EffectResult]] = defaultdict(list)  # key -> unjournaled
        self.route: dict[str, tuple[Any, str, float]] = {}  # call id -> key, target, sent at
        self.latency_ms: dict[str, float] = {}  # call target -> observed latency (EWMA)
        self.polled_at = time.monotonic()  # the bridge's results were last taken (`_stash`)
        self.poll_at: dict[Any, int] = {}  # key -> its poll timer (no key switch only)
        # With a key switch, one operator-wide timer (the tick) runs every key whose results
        # are in, instead of a timer per waiting key (see `_tick`).
        self.switch = key_switch_of(runtime_context)
        self.tick_at: int | None = None  # the earliest tick registered
        self.tick_times: set[int] = set()  # every tick registered and not fired yet
        self.wake: set[Any] = set()  # keys to run at the next tick (turns restored from state)
        self.restore_checked = self.switch is None
        self.ticks = 0
        self.schedule_at: dict[Any, set[int]] = defaultdict(set)  # key -> ctx.schedule times
        self.ask_at: dict[Any, set[int]] = defaultdict(set)  # key -> ask deadlines
        self.dropped_replies = 0
        self.bridge = self._open_bridge()
        self._submit_many = getattr(self.bridge, "submit_many", None)
        self.turns_done = 0

    def _open_bridge(self) -> Any:
        factory = _EngineFactory(self.engine)
        if self.options.bridge == "in-process":
            from flink_bridge.local_bridge import InProcessBridge

            bridge: Any = InProcessBridge(factory, max_in_flight=self.options.max_in_flight)
        else:
            import os

            from flink_bridge.ray_pool import BridgeConfig, PoolConfig, RayBridge

            # The head's address, token path and loopback switch (see stack.ray_head).
            os.environ.update(self.options.ray_env)
            # Ray's core worker installs absl's failure signal handler over the JVM's SIGSEGV
            # handler; the JVM raises SIGSEGV on purpose (safepoints, null checks), so with the
            # handler in place the TaskManager dies at its first one.
            os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"
            bridge = RayBridge(
                factory,
                config=BridgeConfig(
                    max_in_flight=self.options.max_in_flight,
                    ray_address=self.options.ray_env.get("RAY_ADDRESS"),
                    pools={kind: PoolConfig() for kind in pool_kinds(self.engine.compiled)},
                ),
            )
        with _jvm_signal_handlers_kept():
            _start_in_thread(bridge, timeout_s=self.options.bridge_start_timeout_s)
        return bridge

    def close(self) -> None:
        if hasattr(self, "turns_done"):
            # How the operator woke up, for tuning (TaskManager log): ticks per turn near 1
            # or above means the tick ran about one key at a time.
            logger.info(
                "agent operator %s closing: %d turns completed, %d ticks, wake-ups by %s",
                self.options.agent_type,
                self.turns_done,
                self.ticks,
                "one tick for all keys" if self.switch is not None else "a timer per key",
            )
        bridge = getattr(self, "bridge", None)
        if bridge is not None and not _on_python_thread(
            bridge.close, timeout_s=self.options.bridge_start_timeout_s
        ):
            logger.warning("the effect bridge did not close within the timeout; leaving it")

    # -- input ----------------------------------------------------------------------------

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        if not self.restore_checked:
            self._wake_restored_turns(ctx)
        key = ctx.get_current_key()
        if isinstance(value, Inbound):  # an envelope: the event and its metadata
            event: Event | None = None
            entry: bytes | None = value.event
            meta: dict[str, Any] | None = value.meta
        else:
            event = self.to_event(value) if self.to_event else InputEvent(input=value)
            entry, meta = None, None
        if _is_reply(meta) and not self._close_ask(meta["ask_id"]):  # type: ignore[index]
            self.dropped_replies += 1
            logger.info(
                "agent %r: reply to ask %s dropped: the ask timed out or was answered",
                key,
                meta["ask_id"],  # type: ignore[index]
            )
            return
        live = self._live_turn(key)
        if live is not None:  # one turn at a time: wait in the mailbox
            if entry is None:
                assert event is not None
                entry = self.codec.encode(event)
            self._mail(live, entry, meta)
            if not live.in_flight and not self.arrived.get(key):
                yield from self._advance(key, live, ctx)  # a restored turn: get it going
            return
        live = self._begin(key, self._read_agent(), event, entry, meta, mail=[])
        yield from self._advance(key, live, ctx)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        if not self.restore_checked:
            self._wake_restored_turns(ctx)
        key = ctx.get_current_key()
        if timestamp == DRAIN_AT:  # the only event-time timer
            yield from self._drain(key, ctx)
            return
        if timestamp in self.tick_times:
            self.tick_times.discard(timestamp)
            yield from self._tick(key, timestamp, ctx)
            scheduled = timestamp in self.schedule_at.get(key, ())
            if not scheduled and timestamp not in self.ask_at.get(key, ()):
                return  # only a tick (a ctx.schedule time or an ask deadline may share it)
        is_poll = self.poll_at.get(key) == timestamp
        if is_poll:
            del self.poll_at[key]
        due: list[bytes] = []
        # A ctx.schedule timer or an ask's deadline (after a restore, any timer may be one:
        # memory is empty then, so state is read).
        if _take(self.schedule_at, key, timestamp) or not is_poll:
            raw = self.scheduled.get(timestamp)
            if raw is not None:
                self.scheduled.remove(timestamp)
                due = msgpack.unpackb(raw, raw=False)
        if _take(self.ask_at, key, timestamp) or not is_poll:
            due.extend(self._expired_asks(timestamp))
        self._collect()
        live = self._live_turn(key)
        if due:
            if live is None:
                first, *rest = due
                for waiting in rest:
                    self.mailbox.add(waiting)
                event_bytes, meta = msgpack.unpackb(first, raw=False)
                live = self._begin(key, self._read_agent(), None, event_bytes, meta, mail=rest)
                yield from self._advance(key, live, ctx)
                return
            for waiting in due:
                self.mailbox.add(waiting)
                if live.mail is not None:
                    live.mail.append(waiting)
        if live is None:
            return
        if self.arrived.get(key) or not live.in_flight:
            # New results, or nothing at the bridge (first wake-up after a restore): run again.
            yield from self._advance(key, live, ctx)
        else:
            self._wake_later(key, self._recheck_ms(live), ctx)

    def _tick(self, key: Any, timestamp: int, ctx: Any) -> Iterator[Any]:
        """The operator-wide wake-up: run every key whose results are in, each under its own
        key (`KeySwitch`), then the callback's key is made current again. One callback for
        many turns, instead of one timer per waiting key (about 2.2 per turn)."""
        assert self.switch is not None
        self.ticks += 1
        if self.tick_at == timestamp:
            self.tick_at = None
        self._collect()
        ready = [k for k, results in self.arrived.items() if results]
        if self.wake:
            ready.extend(k for k in self.wake if not self.arrived.get(k))
            self.wake.clear()
        current = key
        try:
            for k in ready:
                if k != current:
                    self.switch.set(k)
                    current = k
                live = self._live_turn(k)
                if live is None:
                    self.arrived.pop(k, None)  # results of a turn no longer running
                elif self.arrived.get(k) or not live.in_flight:
                    yield from self._advance(k, live, ctx)
        finally:
            if current != key:
                self.switch.set(key)
        if self.bridge.in_flight or self.bridge.pending_results or any(self.arrived.values()):
            self._ensure_tick(self._tick_recheck_ms(), ctx)

    def _wake_restored_turns(self, ctx: Any) -> None:
        """First callback since `open`: a restored operator has no timer per waiting key, so
        every key with a turn in state is run at the first tick (it re-requests what is
        missing from its journal)."""
        self.restore_checked = True
        assert self.switch is not None
        restored = self.switch.keys_with("turn")
        if restored:
            logger.info("%d turns restored from state; resuming them", len(restored))
            self.wake.update(restored)
            self._ensure_tick(1.0, ctx)

    # -- turns ----------------------------------------------------------------------------

    def _read_agent(self) -> tuple[int, bytes | None, int]:
        """Turns started so far on this key, its state bytes (None before its first), and how
        many mailbox entries have been taken (0 in state written before that was kept)."""
        raw = self.agent.value()
        if raw is None:
            return 0, None, 0
        seq, state_raw, *taken = msgpack.unpackb(raw, raw=False)
        return seq, state_raw, taken[0] if taken else 0

    def _begin(
        self,
        key: Any,
        agent: tuple[int, bytes | None, int],
        event: Event | None,
        entry: bytes | None,
        meta: dict[str, Any] | None,
        *,
        mail: list[bytes] | None,
    ) -> _LiveTurn:
        """Start the key's next turn (`agent`: as `_read_agent` returns it) with `mail` the
        mailbox as in state, of which the agent's count of taken entries are taken."""
        seq = agent[0] + 1
        if event is None:
            assert entry is not None
            event = self.codec.decode(entry)
        live = _LiveTurn(
            turn_id=f"{key}@{seq}",
            seq=seq,
            event=event,
            meta=meta,
            state_raw=agent[1],
            entry=entry,
            mail=mail,
            mail_taken=agent[2],
        )
        self.live[key] = live
        return live

    def _live_turn(self, key: Any) -> _LiveTurn | None:
        """The key's turn in progress: from memory, or from state after a restore."""
        live = self.live.get(key)
        if live is not None:
            return live
        raw = self.turn.value()
        if raw is None:
            return None
        turn_id, seq, entry, meta = msgpack.unpackb(raw, raw=False)
        journal = {call_id: decode_result(v) for call_id, v in self.journal.items()}
        _, state_raw, taken = self._read_agent()
        live = _LiveTurn(
            turn_id=turn_id,
            seq=seq,
            event=self.codec.decode(entry),
            meta=meta,
            state_raw=state_raw,
            entry=entry,
            journal=journal,
            persisted_ids=set(journal),
            persisted=True,
            mail=None,
            mail_taken=taken,
        )
        self.live[key] = live
        return live

    def _address_of(self, key: Any) -> Any:
        """The key's address, built once: validating an `AgentAddress` on every pass of a turn
        was 4% of the operator's CPU per turn (keyed harness profile)."""
        address = self.addresses.get(key)
        if address is None:
            if len(self.addresses) >= 100_000:  # keys come and go: keep the cache bounded
                self.addresses.clear()
            address = self.addresses[key] = _make_address(self.options.agent_type, key)
        return address

    def _mail(self, live: _LiveTurn, entry: bytes, meta: dict[str, Any] | None) -> None:
        packed = msgpack.packb([entry, meta])
        self.mailbox.add(packed)
        if live.mail is not None:
            live.mail.append(packed)

    def _advance(self, key: Any, live: _LiveTurn, ctx: Any) -> Iterator[Any]:
        """Run the turn with the results that arrived, and either finish it or dispatch its
        calls. Loops while turns complete without waiting, so a mailbox drains in one go."""
        address = self._address_of(key)
        while True:
            for result in self.arrived.pop(key, ()):
                live.journal[result.call_id] = result
            sender = live.meta.get("sender") if live.meta else None
            state = (
                self.engine.new_state()
                if live.state_raw is None
                else self.engine.load_state(live.state_raw)
            )
            outcome = self.engine.run_turn(
                state,
                live.event,
                live.journal,
                address=address,
                turn_id=live.turn_id,
                sender=_parse_sender(sender),
                owned=True,
                correlation_id=live.meta.get("ask_id") if live.meta else None,
            )
            if not outcome.done:
                live.journal.update(outcome.executed)  # inline tools' results: replayed from now
                self._persist(live)
                self._dispatch(key, live, outcome.pending, ctx)
                return
            state_raw = self.engine.dump_state(outcome.state)
            # The next entry is taken before the state is written: the count of taken entries
            # is committed with it, so a checkpoint never holds a taken entry as waiting.
            nxt = self._pop_mail(live)
            self.agent.update(msgpack.packb([live.seq, state_raw, live.mail_taken]))
            if live.state_raw is None and self.keys_tag is not None:
                yield self.keys_tag, str(key)  # a new key: its first state (subscriptions)
            if live.persisted_ids:
                self.journal.clear()
            if live.persisted:
                self.turn.clear()
            self.turns_done += 1
            yield from self._emit(key, address, outcome, ctx, live.meta)
            if nxt is None:
                del self.live[key]
                return
            event_bytes, meta = msgpack.unpackb(nxt, raw=False)
            drain_armed = live.drain_armed
            live = self._begin(
                key,
                (live.seq, state_raw, live.mail_taken),
                None,
                event_bytes,
                meta,
                mail=live.mail,
            )
            live.drain_armed = drain_armed

    def _persist(self, live: _LiveTurn) -> None:
        """Write what a checkpoint needs to resume the waiting turn: the turn itself once,
        and each result not written yet (contract 2: journaled before the turn goes on)."""
        if not live.persisted:
            if live.entry is None:
                live.entry = self.codec.encode(live.event)
            self.turn.update(msgpack.packb([live.turn_id, live.seq, live.entry, live.meta]))
            live.persisted = True
        for call_id, result in live.journal.items():
            if call_id not in live.persisted_ids:
                self.journal.put(call_id, encode_result(result))
                live.persisted_ids.add(call_id)

    def _pop_mail(self, live: _LiveTurn) -> bytes | None:
        """Take the next waiting entry off the mailbox; None when it is empty.

        Taking an entry only counts it (`mail_taken`, committed with the agent state): the
        list is cleared once every entry is taken, and rewritten without the taken ones only
        when they are at least half of it and 64 or more. Rewriting the rest on every take, as
        before, made a key with n waiting entries write n(n-1)/2 of them.
        """
        if live.mail is None:
            live.mail = [bytes(e) for e in (self.mailbox.get() or [])]
        if live.mail_taken >= len(live.mail):
            if live.mail:
                self.mailbox.clear()
                live.mail, live.mail_taken = [], 0
            return None
        first = live.mail[live.mail_taken]
        live.mail_taken += 1
        if live.mail_taken >= MAILBOX_COMPACT_AT and 2 * live.mail_taken >= len(live.mail):
            live.mail = live.mail[live.mail_taken :]
            live.mail_taken = 0
            if live.mail:
                self.mailbox.update(live.mail)
            else:
                self.mailbox.clear()
        return first

    def _dispatch(self, key: Any, live: _LiveTurn, pending: list[EffectRequest], ctx: Any) -> None:
        now = time.monotonic()
        new = [r for r in pending if r.call_id not in live.in_flight]
        for request in new:
            live.in_flight.add(request.call_id)
            self.route[request.call_id] = (key, request.target, now)
        if self._submit_many is not None and len(new) > 1:
            while self.bridge.in_flight + len(new) > self.options.max_in_flight:
                self._stash(self.bridge.wait(0.05))  # full: wait here (Flink backpressure)
            self._submit_many(new)
        else:
            for request in new:
                while self.bridge.in_flight >= self.options.max_in_flight:
                    self._stash(self.bridge.wait(0.05))  # full: wait (Flink backpressure)
                self.bridge.submit(request)
        expected = max((self.latency_ms.get(r.target, 1.0) for r in new), default=1.0)
        self._wake_later(key, expected, ctx)
        if not live.drain_armed and self.options.drain_timer:
            ctx.timer_service().register_event_time_timer(DRAIN_AT)
            live.drain_armed = True

    def _emit(
        self, key: Any, address: Any, outcome: Any, ctx: Any, meta: dict[str, Any] | None
    ) -> Iterator[Any]:
        for delay_s, event in outcome.timers:
            self._schedule_event(key, ctx, delay_s, event)
        for ask in getattr(outcome, "asks", ()):
            self._open_ask(key, ctx, ask)
        for output in outcome.outputs:
            yield KeyedOutput(str(key), output, meta) if self.options.envelopes else output
        for error in outcome.errors:
            yield from self._error(key, error.error_type, error.model_dump(mode="json"))
        if outcome.sends and self.sends_tag is not None:
            for record in outbound_records(outcome.sends, sender=address, cause=meta):
                if isinstance(record, str):
                    body = {"error_type": "SendFailed", "message": record}
                    yield from self._error(key, "SendFailed", body)
                else:
                    yield self.sends_tag, record

    def _error(self, key: Any, error_type: str, body: dict[str, Any]) -> Iterator[Any]:
        logger.warning("agent %r: unhandled %s: %s", key, error_type, body.get("message"))
        if self.errors_tag is not None:
            record = {"agent_type": self.options.agent_type, "key": str(key)}
            record.update(body)
            yield self.errors_tag, json.dumps(record)

    # -- results --------------------------------------------------------------------------

    def _report_slow_drain(self, key: Any, live: _LiveTurn, waited_s: float) -> None:
        """Say where a drain's missing results are: which calls the turn waits for, whether
        the operator still routes them, and the bridge's own account of its calls."""
        snapshot = getattr(self.bridge, "snapshot", None)
        message = (
            f"agent {key!r}: drain has waited {waited_s:.0f} s for calls "
            f"{sorted(live.in_flight)} (routed: "
            f"{sorted(c for c in live.in_flight if c in self.route)}, arrived: "
            f"{len(self.arrived.get(key, ()))}); bridge: "
            f"{snapshot() if snapshot is not None else 'n/a'}"
        )
        logger.warning("%s", message)

    def _stash(self, results: list[EffectResult]) -> None:
        """Route each result to its key and learn its target's latency.

        When a result reached the bridge is not known, only that it was after the previous
        poll (which took everything there) and by now. The latency learnt is the earliest
        that allows, and never less than the call's own duration: taking *now* would count a
        late callback (a stall of the task thread) as latency, the next wake-up would be set
        that late and measure it again, and every later call would wait the stall out."""
        now = time.monotonic()
        polled_before, self.polled_at = self.polled_at, now
        for result in results:
            routed = self.route.pop(result.call_id, None)
            if routed is None:
                continue  # a result of a call made before a restore: superseded
            key, target, sent_at = routed
            took = min(
                (now - sent_at) * 1000.0,
                max(result.latency_ms, (polled_before - sent_at) * 1000.0),
            )
            seen = self.latency_ms.get(target)
            self.latency_ms[target] = took if seen is None else 0.8 * seen + 0.2 * took
            live = self.live.get(key)
            if live is not None:
                live.in_flight.discard(result.call_id)
            self.arrived[key].append(result)

    def _collect(self) -> None:
        self._stash(self.bridge.poll())

    def _recheck_ms(self, live: _LiveTurn) -> float:
        """How long a key whose results are late waits before it looks again: a fifth of the
        expected latency, at least 1 ms and at most `poll_interval_ms`."""
        expected = max(
            (self.latency_ms.get(self.route[c][1], 1.0) for c in live.in_flight if c in self.route),
            default=1.0,
        )
        return self._recheck_of(expected)

    def _recheck_of(self, latency_ms: float) -> float:
        """A fifth of `latency_ms`, at least 1 ms and at most `poll_interval_ms`."""
        return min(float(self.options.poll_interval_ms), max(1.0, latency_ms / 5.0))

    def _wake_later(self, key: Any, delay_ms: float, ctx: Any) -> None:
        """Have `key` looked at again within `delay_ms`: by the tick, or by a timer of its own
        where keys cannot be switched."""
        if self.switch is None:
            self._schedule_poll(key, delay_ms, ctx)
        else:
            self._ensure_tick(delay_ms, ctx)

    def _schedule_poll(self, key: Any, delay_ms: float, ctx: Any) -> None:
        """Wake the key when its results are expected; an earlier wake-up already set stays."""
        at = int(time.time() * 1000) + max(1, int(delay_ms))
        registered = self.poll_at.get(key)
        if registered is not None and registered <= at:
            return
        timers = ctx.timer_service()
        if registered is not None:
            timers.delete_processing_time_timer(registered)
        self.poll_at[key] = at
        timers.register_processing_time_timer(at)

    def _ensure_tick(self, delay_ms: float, ctx: Any) -> None:
        """A tick within `delay_ms`: registered under the current key unless an earlier one
        is already registered."""
        at = int(time.time() * 1000) + max(1, int(delay_ms))
        if self.tick_at is not None and self.tick_at <= at:
            return
        ctx.timer_service().register_processing_time_timer(at)
        self.tick_at = at
        self.tick_times.add(at)

    def _tick_recheck_ms(self) -> float:
        """When to tick again while calls are out: when the earliest of them is expected back
        (its target's observed latency after it was sent), or, once calls are overdue, at a
        fifth of the fastest target's latency (at least 1 ms, at most `poll_interval_ms`).
        A few calls of a slow model then cost a tick per expected result, not one per ms."""
        latency = self.latency_ms
        due = min(
            (sent + latency.get(target, 1.0) / 1000.0 for _, target, sent in self.route.values()),
            default=None,
        )
        if due is not None:
            ahead_ms = (due - time.monotonic()) * 1000.0
            if ahead_ms > 1.0:
                return ahead_ms
        return self._recheck_of(min(latency.values(), default=1.0))

    def _schedule_event(self, key: Any, ctx: Any, delay_s: float, event: Event) -> None:
        at = int(time.time() * 1000) + max(1, int(delay_s * 1000))
        existing = self.scheduled.get(at)
        events = msgpack.unpackb(existing, raw=False) if existing is not None else []
        events.append(msgpack.packb([self.codec.encode(event), None]))
        self.scheduled.put(at, msgpack.packb(events))
        self.schedule_at[key].add(at)
        ctx.timer_service().register_processing_time_timer(at)

    # -- asks -----------------------------------------------------------------------------

    def _open_ask(self, key: Any, ctx: Any, ask: Any) -> None:
        deadline = int(time.time() * 1000) + max(1, int(ask.timeout_s * 1000))
        record = [str(ask.recipient), deadline, float(ask.timeout_s)]
        self.asks.put(ask.correlation_id, msgpack.packb(record))
        self.ask_at[key].add(deadline)
        ctx.timer_service().register_processing_time_timer(deadline)

    def _close_ask(self, correlation_id: str) -> bool:
        """Close an open ask of the current key; False if it is not open (any more)."""
        if self.asks.get(correlation_id) is None:
            return False
        self.asks.remove(correlation_id)
        return True

    def _expired_asks(self, now: int) -> list[bytes]:
        """Close the current key's asks whose deadline has passed; their `AskTimeout` entries."""
        expired = []
        for correlation_id, raw in list(self.asks.items()):
            recipient, deadline, timeout_s = msgpack.unpackb(raw, raw=False)
            if deadline <= now:
                expired.append((deadline, correlation_id, recipient, timeout_s))
        entries = []
        for _, correlation_id, recipient, timeout_s in sorted(expired):
            self.asks.remove(correlation_id)
            event = AskTimeout(
                correlation_id=correlation_id, recipient=recipient, timeout_s=timeout_s
            )
            entries.append(msgpack.packb([self.codec.encode(event), None]))
        return entries

    def _drain(self, key: Any, ctx: Any) -> Iterator[Any]:
        """End of a bounded input: finish this key's turns before the job ends."""
        started = time.monotonic()
        deadline = started + self.options.drain_timeout_s
        reported = False
        while True:
            self._collect()
            live = self._live_turn(key)
            if live is None:
                return
            now = time.monotonic()
            if now > deadline:
                logger.error("agent %r: drain timed out with a turn in progress", key)
                return
            if self.arrived.get(key) or not live.in_flight:
                yield from self._advance(key, live, ctx)
                continue
            if not reported and now - started > DRAIN_REPORT_AFTER_S:
                reported = True
                self._report_slow_drain(key, live, now - started)
            self._stash(self.bridge.wait(0.05))
