"""An in-memory stand-in for the keyed context Flink gives a `KeyedProcessFunction`.

It drives the real agent operator (`flink_bridge.operator`) with the real engine and the real
in-process effect bridge, but keeps keyed state and timers in dicts, like Flink's own
`KeyedOneInputStreamOperatorTestHarness`. Tests of the operator's state machine (mailbox,
journal, timers, restore from a snapshot) run in milliseconds this way; the same behaviour is
checked end to end on a real Flink job by the tests next to this file.

Between two callbacks the harness can `snapshot()` every key's state and timers, which is what
a Flink checkpoint holds (a checkpoint is only ever taken between callbacks), and a new harness
can start from it: memory is lost, state and timers survive, as after a failover.
"""

from __future__ import annotations

import copy
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from flink_bridge.operator import DRAIN_AT, OperatorOptions, build_process_function

__all__ = ["KeyedHarness"]


class _Value:
    def __init__(self, harness: KeyedHarness, name: str) -> None:
        self._h, self._name = harness, name

    def _slot(self) -> dict[Any, Any]:
        return self._h.state[self._name]

    def value(self) -> Any:
        self._h.state_calls += 1
        return self._slot().get(self._h.key)

    def update(self, value: Any) -> None:
        self._h.state_calls += 1
        self._h.writes[self._name] += 1
        self._slot()[self._h.key] = value

    def clear(self) -> None:
        self._h.state_calls += 1
        self._slot().pop(self._h.key, None)


class _Map(_Value):
    def _map(self) -> dict[Any, Any]:
        return self._slot().setdefault(self._h.key, {})

    def get(self, k: Any) -> Any:
        self._h.state_calls += 1
        return self._map().get(k)

    def put(self, k: Any, v: Any) -> None:
        self._h.state_calls += 1
        self._h.writes[self._name] += 1
        self._map()[k] = v

    def remove(self, k: Any) -> None:
        self._h.state_calls += 1
        self._map().pop(k, None)

    def items(self) -> list[tuple[Any, Any]]:
        self._h.state_calls += 1
        return list(self._map().items())


class _List(_Value):
    def add(self, v: Any) -> None:
        self._h.state_calls += 1
        self._h.writes[self._name] += 1
        self._h.entries_written[self._name] += 1
        self._slot().setdefault(self._h.key, []).append(v)

    def get(self) -> list[Any]:
        self._h.state_calls += 1
        return list(self._slot().get(self._h.key, []))

    def update(self, values: list[Any]) -> None:
        self._h.state_calls += 1
        self._h.writes[self._name] += 1
        self._h.entries_written[self._name] += len(values)
        self._slot()[self._h.key] = list(values)


class _RuntimeContext:
    def __init__(self, harness: KeyedHarness) -> None:
        self._h = harness
        self.key_switch: _KeySwitch | None = None

    def get_state(self, descriptor: Any) -> _Value:
        return _Value(self._h, descriptor.get_name())

    def get_map_state(self, descriptor: Any) -> _Map:
        return _Map(self._h, descriptor.get_name())

    def get_list_state(self, descriptor: Any) -> _List:
        return _List(self._h, descriptor.get_name())


class _Timers:
    def __init__(self, harness: KeyedHarness) -> None:
        self._h = harness

    def current_processing_time(self) -> int:
        return int(time.time() * 1000)

    def register_processing_time_timer(self, at: int) -> None:
        self._h.timers.add((at, self._h.key))

    def delete_processing_time_timer(self, at: int) -> None:
        self._h.timers.discard((at, self._h.key))

    def register_event_time_timer(self, at: int) -> None:
        self._h.event_timers.add((at, self._h.key))


class _KeySwitch:
    """What `flink_bridge.key_switch` does on a real job: another key becomes current."""

    def __init__(self, harness: KeyedHarness) -> None:
        self._h = harness

    def set(self, key: str) -> None:
        self._h.key = key
        self._h.switches += 1

    def keys_with(self, state_name: str) -> list[str]:
        return [k for k, v in self._h.state[state_name].items() if v is not None]


class _Ctx:
    def __init__(self, harness: KeyedHarness) -> None:
        self._h = harness
        self._timers = _Timers(harness)

    def get_current_key(self) -> Any:
        return self._h.key

    def timer_service(self) -> _Timers:
        return self._timers


class KeyedHarness:
    """Feeds records and fires timers into one agent operator; collects what it emits."""

    def __init__(
        self,
        engine: Any,
        *,
        agent_type: str = "Agent",
        max_in_flight: int = 50,
        snapshot: dict[str, Any] | None = None,
        envelopes: bool = False,
        drain_timer: bool = True,
        key_switch: bool = True,
    ) -> None:
        self.state: dict[str, dict[Any, Any]] = defaultdict(dict)
        self.timers: set[tuple[int, Any]] = set()
        self.event_timers: set[tuple[int, Any]] = set()
        if snapshot is not None:
            for name, slots in copy.deepcopy(snapshot["state"]).items():
                self.state[name] = slots
            self.timers = set(snapshot["timers"])
            self.event_timers = set(snapshot["event_timers"])
        self.key: Any = None
        self.switches = 0
        self.state_calls = 0
        self.writes: Counter[str] = Counter()
        self.entries_written: Counter[str] = Counter()  # list state: entries, not calls
        self.outputs: list[Any] = []
        self.side: list[tuple[Any, Any]] = []
        self.sends: list[Any] = []
        options = OperatorOptions(
            agent_type=agent_type,
            bridge="in-process",
            max_in_flight=max_in_flight,
            envelopes=envelopes,
            drain_timer=drain_timer,
        )
        self.function = build_process_function(
            engine, options, errors_tag="errors", sends_tag="sends"
        )
        runtime_context = _RuntimeContext(self)
        runtime_context.key_switch = _KeySwitch(self) if key_switch else None
        self.function.open(runtime_context)
        self._ctx = _Ctx(self)

    def _collect(self, emitted: Iterator[Any]) -> None:
        for item in emitted:
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "errors":
                self.side.append(item)
            elif isinstance(item, tuple) and len(item) == 2 and item[0] == "sends":
                self.sends.append(item[1])
            else:
                self.outputs.append(item)

    def process(self, key: Any, value: Any) -> None:
        self.key = key
        self._collect(self.function.process_element(value, self._ctx))

    def fire_due(self) -> int:
        """Fire the processing-time timers that are due, earliest first; how many fired."""
        now = int(time.time() * 1000)
        due = sorted(t for t in self.timers if t[0] <= now)
        for at, key in due:
            if (at, key) not in self.timers:
                continue  # deleted by an earlier timer of this round
            self.timers.discard((at, key))
            self.key = key
            self._collect(self.function.on_timer(at, self._ctx))
        return len(due)

    def run_until(self, done: Any, timeout_s: float = 20.0) -> None:
        """Fire timers as they fall due until `done()` holds."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout_s} s; outputs: {len(self.outputs)}")
            if not self.fire_due():
                time.sleep(0.001)

    def end_of_input(self) -> None:
        """The final watermark of a bounded input: fire every DRAIN_AT timer."""
        for at, key in sorted(self.event_timers, key=lambda t: str(t[1])):
            assert at == DRAIN_AT
            self.key = key
            self._collect(self.function.on_timer(at, self._ctx))
        self.event_timers.clear()

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint taken now holds: keyed state and timers, not memory."""
        return {
            "state": copy.deepcopy(dict(self.state)),
            "timers": set(self.timers),
            "event_timers": set(self.event_timers),
        }

    def close(self) -> None:
        self.function.close()
