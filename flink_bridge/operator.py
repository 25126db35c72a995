"""The keyed agent operator: one actor per Flink key, effects on a bridge, results journaled.

Per key, in Flink keyed state:
- `agent_state`  the workflow's state (msgpack), committed only when a turn completes;
- `turn`         the turn in progress: its id and the event it handles;
- `journal`      call id -> result of every call the turn in progress has made;
- `mailbox`      events waiting for the turn in progress to finish (one turn at a time);
                 an event that came in an envelope is kept with its metadata (sender, ids);
- `seq`          turns started, for unique turn ids;
- `scheduled`    fire time -> events from `ctx.schedule`.

A turn runs as `engine.run_turn(state, event, journal)`. Calls it needs that are not journaled
go to the bridge; a processing-time timer on the key polls for their results every
`poll_interval_ms`, journals each one as it arrives, and runs the turn again. Outputs leave only
when the turn is done, together with the new state, so a checkpoint never holds half a turn's
effects: after a restore the turn re-runs against its journal, calls that completed are replayed,
and only the calls still missing are made (contract 2). Processing-time timers are in the
checkpoint, so a restored key with a turn in progress wakes up by itself.

Envelopes (`flink_bridge.envelopes`): an `Inbound` record carries the event and its envelope's
metadata; the turn runs with ``sender=`` the envelope's sender (``ctx.sender``), and the
messages of ``ctx.send``/``ctx.reply`` leave on the sends side output as envelopes caused by it,
only when the turn completes, like outputs. With ``OperatorOptions(envelopes=True)`` outputs
are `KeyedOutput`s (key, output, cause), so they can be wrapped as envelopes downstream.

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
from typing import Any

import msgpack

from actors.effects import EffectRequest, EffectResult
from flink_bridge.codec import EventCodec, decode_result, encode_result
from flink_bridge.envelopes import (
    Inbound,
    KeyedOutput,
    install_message_types,
    outbound_records,
)
from protocols.events import Event, InputEvent

__all__ = ["DRAIN_AT", "AgentProcessFunction", "OperatorOptions"]

logger = logging.getLogger("flink_actors.flink_bridge")

DRAIN_AT = 2**63 - 2  # Long.MAX_VALUE - 1: fires on the final watermark of a bounded input
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


def _make_address(agent_type: str, key: Any) -> Any:
    try:
        from protocols import AgentAddress  # type: ignore[attr-defined]

        return AgentAddress(agent_type=agent_type, key=str(key))
    except Exception:  # pragma: no cover - only before protocols exports AgentAddress
        return f"{agent_type}/{key}"


def _parse_sender(sender: str | None) -> Any:
    if sender is None:
        return None
    from protocols import parse_address

    return parse_address(sender)


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
) -> Any:
    """The `KeyedProcessFunction` running `engine`'s workflow; pyflink imported lazily."""
    base = _make_process_function_base()
    cls = type("AgentProcessFunction", (AgentProcessFunction, base), {})
    return cls(engine, options, to_event, errors_tag, sends_tag)


class AgentProcessFunction:
    """Mixed into pyflink's `KeyedProcessFunction` by `build_process_function`."""

    def __init__(
        self,
        engine: Any,
        options: OperatorOptions,
        to_event: Callable[[Any], Event] | None = None,
        errors_tag: Any = None,
        sends_tag: Any = None,
    ) -> None:
        self.engine = engine
        self.options = options
        self.to_event = to_event
        self.errors_tag = errors_tag
        self.sends_tag = sends_tag

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
        self.agent_state = ctx.get_state(ValueStateDescriptor("agent_state", blob))
        self.turn = ctx.get_state(ValueStateDescriptor("turn", blob))
        self.seq = ctx.get_state(ValueStateDescriptor("seq", Types.LONG()))
        self.journal = ctx.get_map_state(MapStateDescriptor("journal", Types.STRING(), blob))
        self.mailbox = ctx.get_list_state(ListStateDescriptor("mailbox", blob))
        self.scheduled = ctx.get_map_state(MapStateDescriptor("scheduled", Types.LONG(), blob))
        self.codec = EventCodec([t for s in self.engine.compiled.steps for t in s.events])
        self.in_flight: dict[Any, set[str]] = defaultdict(set)  # key -> call ids at the bridge
        self.arrived: dict[Any, list[EffectResult]] = defaultdict(list)  # key -> unjournaled
        self.route: dict[str, Any] = {}  # call id -> key
        self.poll_at: dict[Any, int] = {}  # key -> time of its registered poll timer
        self.bridge = self._open_bridge()
        self.turns_done = 0

    def _open_bridge(self) -> Any:
        factory = _EngineFactory(self.engine)
        if self.options.bridge == "in-process":
            from flink_bridge.local_bridge import InProcessBridge

            bridge: Any = InProcessBridge(factory, max_in_flight=self.options.max_in_flight)
        else:
            import os

            from flink_bridge.ray_pool import BridgeConfig, RayBridge

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
                ),
            )
        with _jvm_signal_handlers_kept():
            _start_in_thread(bridge, timeout_s=self.options.bridge_start_timeout_s)
        return bridge

    def close(self) -> None:
        bridge = getattr(self, "bridge", None)
        if bridge is not None and not _on_python_thread(
            bridge.close, timeout_s=self.options.bridge_start_timeout_s
        ):
            logger.warning("the effect bridge did not close within the timeout; leaving it")

    # -- input ----------------------------------------------------------------------------

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        if isinstance(value, Inbound):  # an envelope: the event and its metadata
            key = ctx.get_current_key()
            entry = msgpack.packb([value.event, value.meta])
            if self.turn.value() is not None:
                self.mailbox.add(entry)
                return
            yield from self._start_entry(key, entry, ctx)
            return
        event = self.to_event(value) if self.to_event else InputEvent(input=value)
        key = ctx.get_current_key()
        if self.turn.value() is not None:
            self.mailbox.add(self.codec.encode(event))
            return
        yield from self._start_turn(key, event, ctx)

    def _start_entry(self, key: Any, entry: bytes, ctx: Any) -> Iterator[Any]:
        self.turn.update(self._turn_record(key, entry))
        yield from self._advance(key, ctx)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        from pyflink.datastream import TimeDomain

        key = ctx.get_current_key()
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            if timestamp == DRAIN_AT:
                yield from self._drain(key, ctx)
            return
        if self.poll_at.get(key) == timestamp:
            del self.poll_at[key]
        due = self.scheduled.get(timestamp)
        if due is not None:
            self.scheduled.remove(timestamp)
            for raw in msgpack.unpackb(due, raw=False):
                self.mailbox.add(raw)
        self._collect()
        if self.turn.value() is None:
            yield from self._next_from_mailbox(key, ctx)
            return
        if self.arrived.get(key) or not self.in_flight.get(key):
            # New results, or nothing at the bridge (first wake-up after a restore): run again.
            yield from self._advance(key, ctx)
        else:
            self._schedule_poll(key, ctx)

    # -- turns ----------------------------------------------------------------------------

    def _start_turn(self, key: Any, event: Event, ctx: Any) -> Iterator[Any]:
        seq = (self.seq.value() or 0) + 1
        self.seq.update(seq)
        self.turn.update(msgpack.packb([f"{key}@{seq}", self.codec.encode(event)]))
        yield from self._advance(key, ctx)

    def _load_turn(self) -> tuple[str, Event]:
        turn_id, event, _ = self._load_turn_meta()
        return turn_id, event

    def _load_turn_meta(self) -> tuple[str, Event, dict[str, Any] | None]:
        """The turn in progress: its id, its event, and its envelope's metadata if any."""
        record = msgpack.unpackb(self.turn.value(), raw=False)
        meta = record[2] if len(record) > 2 else None
        return record[0], self.codec.decode(record[1]), meta

    def _turn_record(self, key: Any, entry: bytes) -> bytes:
        """A new turn's state from a mailbox entry: codec bytes, or [codec bytes, metadata]."""
        seq = (self.seq.value() or 0) + 1
        self.seq.update(seq)
        turn_id = f"{key}@{seq}"
        unpacked = msgpack.unpackb(entry, raw=False)
        if isinstance(unpacked[0], bytes):  # an envelope's event with its metadata
            return msgpack.packb([turn_id, unpacked[0], unpacked[1]])
        return msgpack.packb([turn_id, bytes(entry)])

    def _agent_state(self) -> Any:
        raw = self.agent_state.value()
        return self.engine.new_state() if raw is None else self.engine.load_state(raw)

    def _advance(self, key: Any, ctx: Any) -> Iterator[Any]:
        """Journal arrived results, run the turn, and either finish it or dispatch its calls.
        Loops while turns complete without waiting, so a mailbox drains in one go."""
        while True:
            for result in self.arrived.pop(key, []):
                self.journal.put(result.call_id, encode_result(result))
            turn_id, event, meta = self._load_turn_meta()
            journal = {k: decode_result(v) for k, v in self.journal.items()}
            sender = meta.get("sender") if meta else None
            outcome = self.engine.run_turn(
                self._agent_state(),
                event,
                journal,
                address=_make_address(self.options.agent_type, key),
                turn_id=turn_id,
                sender=_parse_sender(sender),
            )
            if not outcome.done:
                self._dispatch(key, outcome.pending, ctx)
                return
            yield from self._commit(key, outcome, ctx, meta)
            if not self._pop_mailbox(key):
                return

    def _dispatch(self, key: Any, pending: list[EffectRequest], ctx: Any) -> None:
        flying = self.in_flight[key]
        for request in pending:
            if request.call_id in flying:
                continue
            while self.bridge.in_flight >= self.options.max_in_flight:
                self._stash(self.bridge.wait(0.05))  # full: wait here (Flink backpressure)
            flying.add(request.call_id)
            self.route[request.call_id] = key
            self.bridge.submit(request)
        self._schedule_poll(key, ctx)
        ctx.timer_service().register_event_time_timer(DRAIN_AT)

    def _commit(
        self, key: Any, outcome: Any, ctx: Any, meta: dict[str, Any] | None = None
    ) -> Iterator[Any]:
        self.agent_state.update(self.engine.dump_state(outcome.state))
        self.journal.clear()
        self.turn.clear()
        self.turns_done += 1
        for delay_s, event in outcome.timers:
            self._schedule_event(ctx, delay_s, event)
        for output in outcome.outputs:
            yield KeyedOutput(str(key), output, meta) if self.options.envelopes else output
        for error in outcome.errors:
            yield from self._error(key, error.error_type, error.model_dump(mode="json"))
        if outcome.sends and self.sends_tag is not None:
            sender = _make_address(self.options.agent_type, key)
            for record in outbound_records(outcome.sends, sender=sender, cause=meta):
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

    def _pop_mailbox(self, key: Any) -> bool:
        """Start the next waiting event's turn; False when the mailbox is empty."""
        waiting = list(self.mailbox.get() or [])
        if not waiting:
            return False
        first, rest = waiting[0], waiting[1:]
        if rest:
            self.mailbox.update(rest)
        else:
            self.mailbox.clear()
        self.turn.update(self._turn_record(key, bytes(first)))
        return True

    def _next_from_mailbox(self, key: Any, ctx: Any) -> Iterator[Any]:
        if self._pop_mailbox(key):
            yield from self._advance(key, ctx)

    # -- results --------------------------------------------------------------------------

    def _stash(self, results: list[EffectResult]) -> None:
        for result in results:
            key = self.route.pop(result.call_id, None)
            if key is None:
                continue  # a result of a call made before a restore: superseded
            self.in_flight[key].discard(result.call_id)
            if not self.in_flight[key]:
                del self.in_flight[key]
            self.arrived[key].append(result)

    def _collect(self) -> None:
        self._stash(self.bridge.poll())

    def _schedule_poll(self, key: Any, ctx: Any) -> None:
        if key in self.poll_at:
            return
        at = ctx.timer_service().current_processing_time() + self.options.poll_interval_ms
        self.poll_at[key] = at
        ctx.timer_service().register_processing_time_timer(at)

    def _schedule_event(self, ctx: Any, delay_s: float, event: Event) -> None:
        at = ctx.timer_service().current_processing_time() + max(1, int(delay_s * 1000))
        existing = self.scheduled.get(at)
        events = msgpack.unpackb(existing, raw=False) if existing is not None else []
        events.append(self.codec.encode(event))
        self.scheduled.put(at, msgpack.packb(events))
        ctx.timer_service().register_processing_time_timer(at)

    def _drain(self, key: Any, ctx: Any) -> Iterator[Any]:
        """End of a bounded input: finish this key's turns before the job ends."""
        deadline = time.monotonic() + self.options.drain_timeout_s
        while self.turn.value() is not None:
            if time.monotonic() > deadline:
                logger.error("agent %r: drain timed out with a turn in progress", key)
                return
            if self.arrived.get(key) or not self.in_flight.get(key):
                yield from self._advance(key, ctx)
                continue
            self._stash(self.bridge.wait(0.05))
