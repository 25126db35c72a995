"""`EffectWorker`: the Ray actor that executes batches of effects.

It is a plain class here; `WorkerPool` turns it into an async Ray actor with
`ray.remote(...).options(...)`, so it can also be unit-tested without Ray.

Admission control runs here, in the worker, and not in the bridge: the pool is shared by every
Flink subtask of a job, so the worker is the one place that sees all traffic to a provider
(each of a pool's N actors enforces 1/N of a rate limit, so the sum never exceeds it), and
retries with backoff happen next to the provider without a round trip through Flink. A retry
keeps its call's in-flight slot in the bridge, so a rate-limited provider shows up as
backpressure.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable

from actors.admission import AdmissionConfig, AdmissionController
from actors.effects import EffectError, EffectExecutor, EffectRequest, EffectResult
from flink_bridge.ray_pool._channel import ChannelServer

__all__ = ["EffectWorker", "ExecutorFactory"]

logger = logging.getLogger("flink_actors.flink_bridge.ray_pool")

ExecutorFactory = Callable[[], EffectExecutor]


class EffectWorker:
    """Executes batches of `EffectRequest` concurrently; each call's failure stays its own."""

    def __init__(
        self,
        executor_factory: ExecutorFactory,
        admission: AdmissionConfig | None = None,
        *,
        rate_share: float = 1.0,
    ) -> None:
        self._factory = executor_factory
        self._executor: EffectExecutor | None = None
        self._factory_error: EffectError | None = None
        self._admission = AdmissionController((admission or AdmissionConfig()).scaled(rate_share))
        self._calls = 0
        self._batches = 0
        self._channel: ChannelServer | None = None

    def _get_executor(self) -> EffectExecutor | None:
        # Built lazily, in the worker process, so clients and connections never travel.
        if self._executor is None and self._factory_error is None:
            try:
                self._executor = self._factory()
            except Exception as exc:
                logger.exception("executor factory failed")
                self._factory_error = EffectError(
                    error_type=type(exc).__name__,
                    message=f"the executor factory {self._factory!r} failed: {exc}; "
                    "fix the workflow definition",
                    retryable=False,
                )
        return self._executor

    async def execute_batch(self, requests: list[EffectRequest]) -> list[EffectResult]:
        """Run every request concurrently; results in request order, one per request."""
        self._calls += len(requests)
        self._batches += 1
        executor = self._get_executor()
        if executor is None:
            assert self._factory_error is not None
            return [
                EffectResult(call_id=r.call_id, error=self._factory_error, attempts=0)
                for r in requests
            ]
        if len(requests) == 1:
            return [await self._one(requests[0], executor)]
        return list(await asyncio.gather(*(self._one(r, executor) for r in requests)))

    async def execute_stream(
        self, requests: list[EffectRequest], linger_s: float = 0.005
    ) -> AsyncIterator[list[tuple[int, EffectResult]]]:
        """Like `execute_batch`, but yields ``(position, result)`` chunks as calls finish.

        Called with ``num_returns="streaming"``: a slow call no longer holds back the results
        of its batch-mates (nor their in-flight slots in the bridge). Calls finishing within
        `linger_s` of each other share a chunk, so a batch of equally fast calls still comes
        back in one message.
        """
        self._calls += len(requests)
        self._batches += 1
        executor = self._get_executor()
        if executor is None:
            assert self._factory_error is not None
            error = self._factory_error
            yield [
                (i, EffectResult(call_id=r.call_id, error=error, attempts=0))
                for i, r in enumerate(requests)
            ]
            return
        tasks = [asyncio.ensure_future(self._one(r, executor)) for r in requests]
        position: dict[asyncio.Future[EffectResult], int] = {t: i for i, t in enumerate(tasks)}
        pending: set[asyncio.Future[EffectResult]] = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if pending and linger_s > 0:
                    # Wait a little for batch-mates (returns at once when all are done).
                    late, pending = await asyncio.wait(pending, timeout=linger_s)
                    done |= late
                yield [(position[t], t.result()) for t in done]
        finally:
            for task in pending:
                task.cancel()

    async def open_channel(self) -> tuple[str, bytes]:
        """Start (once per actor process) the call channel; its address and secret.

        Bridges send calls over it instead of as Ray calls (see `_channel`); the secret travels
        only through this Ray call, so only holders of the actor handle can connect.
        """
        if self._channel is None:
            executor = self._get_executor()
            if executor is None:
                assert self._factory_error is not None
                error = self._factory_error

                async def run(request: EffectRequest) -> EffectResult:
                    return EffectResult(call_id=request.call_id, error=error, attempts=0)

            else:
                admission = self._admission

                # A plain closure, not a method: Ray wraps every actor method (tracing hooks),
                # which would cost every call a few microseconds more.
                async def run(request: EffectRequest) -> EffectResult:
                    try:
                        return await admission.run(request, executor)
                    except Exception as exc:  # admission never raises; last line of isolation
                        error = EffectError(
                            error_type=type(exc).__name__, message=str(exc), retryable=False
                        )
                        return EffectResult(call_id=request.call_id, error=error)

            channel = ChannelServer(run)
            await channel.start()
            self._channel = channel
        return self._channel.address, self._channel.secret

    async def _one(self, request: EffectRequest, executor: EffectExecutor) -> EffectResult:
        try:
            return await self._admission.run(request, executor)
        except Exception as exc:  # admission never raises; this is the last line of isolation
            error = EffectError(error_type=type(exc).__name__, message=str(exc), retryable=False)
            return EffectResult(call_id=request.call_id, error=error)

    def ping(self) -> int:
        """The worker's pid (tests and health checks)."""
        return os.getpid()

    def stats(self) -> dict[str, object]:
        """Calls and batches (Ray calls plus channel frames) seen, breaker states."""
        channel = self._channel
        return {
            "pid": os.getpid(),
            "calls": self._calls + (channel.calls if channel else 0),
            "batches": self._batches + (channel.frames if channel else 0),
            "breakers": self._admission.snapshot(),
        }
