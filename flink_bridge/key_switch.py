"""`KeySwitch`: make another key current inside a keyed callback (PyFlink thread mode).

Why: a callback of a `KeyedProcessFunction` sees only the state and timers of its own key, so
a key whose call results have arrived waits for a timer of its own to run its turn on. Measured
in the runtime benchmark (session 5): with 1,000 keys busy, nearly every live turn already had
its results in memory and was waiting for its timer, and the task thread spent its time in
about 2.2 timer callbacks per turn. With a `KeySwitch` one timer callback (the operator's
*tick*) runs every key whose results are in.

In thread mode the Python function shares the JVM with its operator: the keyed state backend
the runtime context holds is the Java object itself, and `setCurrentKey` on it moves the
operator's key context, which state access, timer registration and the operator's own
`getCurrentKey` all read (checked on a real job: state written and event-time timers registered
under switched keys fired with those keys). The caller must switch back to the callback's own
key before returning.

This reaches into PyFlink internals (`StreamingRuntimeContext._keyed_state_backend`), so it is
built only when they are there; `key_switch_of` returns None otherwise and the operator keeps a
timer per key. Keys are the string keys the runtime keys by (``key_type=Types.STRING()``), which
the JVM holds as a one-field `Row`.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

__all__ = ["KeySwitch", "key_switch_of"]

logger = logging.getLogger("flink_actors.flink_bridge")


class KeySwitch(Protocol):
    """Makes a key current, and lists the keys that have a given state."""

    def set(self, key: str) -> None: ...

    def keys_with(self, state_name: str) -> list[str]: ...


class _FlinkKeySwitch:
    def __init__(self, backend: Any) -> None:
        from pemja import findClass  # type: ignore[import-not-found]

        self._backend = backend
        self._row = findClass("org.apache.flink.types.Row")
        self._namespace = findClass("org.apache.flink.runtime.state.VoidNamespace").INSTANCE
        self._rows: dict[str, Any] = {}

    def _java_key(self, key: str) -> Any:
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) > 100_000:  # keys come and go: keep the cache bounded
                self._rows.clear()
            row = self._row.withPositions(1)
            row.setField(0, key)
            self._rows[key] = row
        return row

    def set(self, key: str) -> None:
        self._backend.setCurrentKey(self._java_key(key))

    def keys_with(self, state_name: str) -> list[str]:
        stream = self._backend.getKeys(state_name, self._namespace)
        try:
            keys = stream.iterator()
            out = []
            while keys.hasNext():
                out.append(str(keys.next().getField(0)))
            return out
        finally:
            stream.close()


def key_switch_of(runtime_context: Any) -> KeySwitch | None:
    """The context's `KeySwitch`, or None where keys cannot be switched.

    A context may offer one itself (``runtime_context.key_switch``, as the tests' keyed harness
    does); otherwise it is built on PyFlink thread mode's Java keyed state backend.
    """
    offered = getattr(runtime_context, "key_switch", None)
    if offered is not None:
        return offered  # type: ignore[no-any-return]
    wrapper = getattr(runtime_context, "_keyed_state_backend", None)
    backend = getattr(wrapper, "_keyed_state_backend", None)
    if backend is None or not hasattr(backend, "setCurrentKey"):
        return None
    try:
        return _FlinkKeySwitch(backend)
    except Exception as exc:  # not thread mode, or a PyFlink without these internals
        logger.info("no key switch (%s): one timer per waiting key", exc)
        return None
