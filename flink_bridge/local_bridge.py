"""An in-process effect bridge with the same API as the Ray bridge.

The Flink operator talks to a bridge through four calls: `submit` (blocks while the bound is
reached), `poll`, `wait` and `close`. The Ray bridge (`flink_bridge.ray_pool`) is the default;
this one runs the workflow's executor on a private asyncio loop inside the Flink worker. It is
there for `AgentRuntime(..., effects="in-process")`: jobs whose effects are cheap local tools,
and tests of the operator's own logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from actors.effects import EffectError, EffectRequest, EffectResult
from flink_bridge.thread_names import name_this_thread

__all__ = ["InProcessBridge"]


class InProcessBridge:
    """Executes `EffectRequest`s with an executor on a background event loop."""

    def __init__(self, executor_factory: Callable[[], Any], *, max_in_flight: int = 200) -> None:
        self._factory = executor_factory
        self._max = max_in_flight
        self._slots = threading.Semaphore(max_in_flight)
        self._done: list[EffectResult] = []
        self._cond = threading.Condition()
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor: Any = None

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._executor = self._factory()
        self._thread = threading.Thread(
            target=self._serve, args=(self._loop,), name="flink-actors-effects", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        name_this_thread("fa-effects")
        loop.run_forever()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def pending_results(self) -> int:
        """Completed results not yet taken by `poll`/`wait`."""
        return len(self._done)

    def submit(self, request: EffectRequest) -> None:
        assert self._loop is not None, "start() the bridge first"
        self._slots.acquire()
        with self._cond:
            self._in_flight += 1
        asyncio.run_coroutine_threadsafe(self._run(request), self._loop)

    async def _run(self, request: EffectRequest) -> None:
        started = time.perf_counter()
        try:
            result = await self._executor.execute(request)
        except Exception as exc:  # an executor must not raise; keep the call anyway
            result = EffectResult(
                call_id=request.call_id,
                error=EffectError(error_type=type(exc).__name__, message=str(exc)),
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        with self._cond:
            self._done.append(result)
            self._in_flight -= 1
            self._cond.notify_all()
        self._slots.release()

    @staticmethod
    async def _cancel_calls() -> None:
        me = asyncio.current_task()
        calls = [t for t in asyncio.all_tasks() if t is not me]
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    def poll(self) -> list[EffectResult]:
        with self._cond:
            done, self._done = self._done, []
        return done

    def wait(self, timeout_s: float) -> list[EffectResult]:
        with self._cond:
            if not self._done:
                self._cond.wait(timeout_s)
            done, self._done = self._done, []
        return done

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            # Calls still in flight are abandoned: cancel them (after the ones queued behind
            # this have become tasks) rather than leave coroutines that never ran. Both are
            # queued even when the loop has not started running yet (a bridge closed right
            # after `start`): it runs them first thing, so the thread always ends.
            done = asyncio.run_coroutine_threadsafe(self._cancel_calls(), loop)
            with contextlib.suppress(Exception):
                done.result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        self._loop = None
