"""`RayBridge`: the synchronous, thread-safe door from the Flink operator to the Ray pools.

The operator runs in PyFlink *thread* mode (Python inside the JVM: ~10x faster than process
mode, but no `AsyncFunction` there), so it submits calls from a synchronous `process_element`
and collects results by polling from timers. The bridge therefore offers a blocking API, and
does its Ray I/O on its own background thread running an asyncio loop:

```
operator thread                       bridge thread (asyncio)                  Ray actors
submit(req) -- slot? --> pending ---> batcher: <= batch_max per kind  -------> EffectWorker
submit_many(reqs)                     (adaptive, see batch_window_ms)  frames  (admission
  (blocks when max_in_flight                                           (chan-   inside)
   calls are not completed:          results, as calls finish  <-----  nel)
   Flink backpressure)
poll() / wait() <------------------------------------ completed
```

Why batching: one Ray call per record measured 14% of the concurrency bound (DESIGN.md);
per-call overhead dominates, so up to `batch_max` requests travel together.

Why a channel: even batched, a Ray actor call costs ~2.5 ms round trip on a loaded 2-core
host, and with W calls in flight that comes straight off the bound W / latency (measured 56-72%
of it at 50 ms). With `PoolConfig.transport="channel"` (the default) each actor also serves a
local socket (`_channel`): a batch is one frame, and results come back in frames of the calls
that finished in the same worker loop iteration, so one slow model call never holds back its
batch-mates or their in-flight slots. Ray still creates, places, names, restarts and
health-checks the actors; an actor the socket cannot reach falls back to Ray calls
(`transport="ray"`: one streaming-generator call per batch, `PoolConfig.stream_results`).

A slot is freed when its call completes, not when its result is polled: `submit` blocking in
`process_element` can therefore never wait on the same thread's next `poll` (no deadlock).

Memory is bounded by `max_in_flight` requests in the pipeline; completed results wait in a
queue until polled (the operator polls on every timer, so that queue stays small).

Faults: a worker actor that dies (its channel closes, or its Ray call fails) is restarted by
Ray (`max_restarts`) and its channel re-opened; the calls it held are
sent again to a live actor when the pool allows it (`resubmit_on_worker_loss`), otherwise they
come back as `DeliveryError` results. No call is ever dropped without a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from actors.effects import EffectError, EffectKind, EffectRequest, EffectResult
from flink_bridge.ray_pool._channel import ChannelClient
from flink_bridge.ray_pool._config import BridgeConfig
from flink_bridge.ray_pool._connect import connect_ray, release_ray
from flink_bridge.ray_pool._pool import WorkerPool
from flink_bridge.ray_pool._worker import ExecutorFactory
from flink_bridge.thread_names import name_this_thread
from protocols.errors import AgentRunError, ConfigError, DeliveryError, UserError

__all__ = ["BridgeState", "RayBridge"]

logger = logging.getLogger("flink_actors.flink_bridge.ray_pool")


# Ray's message for a call refused because its actor is restarting (the call never ran).
_UNDELIVERED = "The actor is restarting"
_MAX_UNDELIVERED = 10


class BridgeState(StrEnum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class _Link:
    """The bridge's channel to one actor (``transport="channel"``), on the bridge loop only.

    The calls sent on a connection are in its ``client.pending`` (seq -> request, resubmits);
    while the connection is down (`client` None) batches wait in `waiting` until it is
    re-opened.
    """

    def __init__(self, address: str, secret: bytes) -> None:
        self.address = address
        self.secret = secret
        self.client: ChannelClient | None = None
        self.waiting: list[tuple[list[EffectRequest], int]] = []
        self.reconnecting = False


def _failed(request: EffectRequest, exc_type: type[Exception], message: str) -> EffectResult:
    error = EffectError(error_type=exc_type.__name__, message=message, retryable=False)
    return EffectResult(call_id=request.call_id, error=error, attempts=0)


class RayBridge:
    """Submits `EffectRequest`s to Ray worker pools in micro-batches; results by polling.

    ```python
    bridge = RayBridge(executor_factory, config=BridgeConfig(max_in_flight=200))
    bridge.start()
    bridge.submit(request)        # blocks only while max_in_flight calls are pending
    results = bridge.poll()       # completed results, each exactly once
    bridge.close()
    ```
    `executor_factory` is a picklable zero-argument callable that returns an `EffectExecutor`;
    each worker actor calls it once, in its own process.
    """

    def __init__(
        self, executor_factory: ExecutorFactory, *, config: BridgeConfig | None = None
    ) -> None:
        if not callable(executor_factory):
            raise UserError(
                f"executor_factory must be a zero-argument callable, got {executor_factory!r}; "
                "pass e.g. AgentEngine(workflow).executor"
            )
        self.config = config or BridgeConfig()
        self._factory = executor_factory
        self._state = BridgeState.NEW
        self._holds_ray = False
        self._pools: dict[EffectKind, WorkerPool] = {}
        self._slots = threading.Semaphore(self.config.max_in_flight)
        self._cond = threading.Condition()
        self._pending: deque[EffectRequest] = deque()  # guarded by _cond
        self._completed: deque[EffectResult] = deque()  # guarded by _cond
        self._in_flight = 0  # guarded by _cond
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: dict[tuple[EffectKind, int], _Link] = {}
        self._seq = 0
        self.resubmitted = 0  # calls sent again after a worker died (metrics, tests)

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> BridgeState:
        return self._state

    @property
    def pools(self) -> dict[EffectKind, WorkerPool]:
        return self._pools

    def start(self) -> None:
        """Connect to Ray (start a loopback one, or join `ray_address`), create or find the pool
        actors and wait until they answer, then start the bridge thread.

        Raises `ConfigError` naming the fix when the Ray head at `ray_address` is down.
        """
        if self._state is not BridgeState.NEW:
            raise UserError(
                f"RayBridge.start() called in state {self._state.value!r}; create a new RayBridge"
            )
        import ray

        cfg = self.config
        connect_ray(
            address=cfg.ray_address,
            namespace=cfg.namespace,
            num_cpus=cfg.num_cpus,
            log_to_driver=cfg.log_to_driver,
            connect_timeout_s=cfg.connect_timeout_s,
        )
        self._holds_ray = True
        ready: list[Any] = []
        for kind, pool_cfg in cfg.pools.items():
            pool = WorkerPool(
                EffectKind(kind),
                pool_cfg,
                self._factory,
                name_prefix=cfg.name_prefix,
                namespace=cfg.namespace,
            )
            self._pools[pool.kind] = pool
            ready.extend(pool.start())
        try:
            ray.get(ready, timeout=120)
            for pool in self._pools.values():
                if pool.config.transport != "channel":
                    continue
                opened = ray.get([a.open_channel.remote() for a in pool.actors], timeout=60)
                for index, (address, secret) in enumerate(opened):
                    self._links[(pool.kind, index)] = _Link(address, secret)
        except Exception as exc:
            self._stop_pools()
            raise AgentRunError(
                f"the Ray worker pools did not start: {exc}; check the Ray logs "
                "(/tmp/ray/session_latest/logs) and that flink_actors is installed for the workers"
            ) from exc
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run_loop, args=(started,), name="flink-actors-ray-bridge", daemon=True
        )
        self._thread.start()
        started.wait()
        self._state = BridgeState.RUNNING
        logger.info(
            "ray bridge started: pools=%s",
            {k.value: p.config.size for k, p in self._pools.items()},
        )

    def close(self) -> None:
        """Stop the bridge thread and the actors it created; shut Ray down if it started it and
        no other bridge of this process still uses it.

        Calls still in flight are abandoned: drain them with `wait()` first.
        """
        if self._state is BridgeState.CLOSED:
            return
        was_running = self._state is BridgeState.RUNNING
        self._state = BridgeState.CLOSED
        # Unblock submitters waiting for a slot: they see CLOSED and raise.
        self._slots.release(self.config.max_in_flight)
        with self._cond:
            self._cond.notify_all()
        if was_running and self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._stop_pools()
        if self._holds_ray:
            self._holds_ray = False
            release_ray()  # Ray stays up while another bridge of this process uses it

    def __enter__(self) -> RayBridge:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _stop_pools(self) -> None:
        for pool in self._pools.values():
            pool.stop()

    # ------------------------------------------------------------------ operator-facing API

    @property
    def in_flight(self) -> int:
        """Calls submitted and not yet completed (never above `max_in_flight`)."""
        return self._in_flight

    @property
    def pending_results(self) -> int:
        """Completed results not yet taken by `poll`/`wait`."""
        return len(self._completed)

    def submit(self, request: EffectRequest) -> None:
        """Hand a call to the pools. Returns at once while fewer than `max_in_flight` calls are
        in flight; otherwise blocks until one completes (Flink backpressure)."""
        if self._state is not BridgeState.RUNNING:
            raise UserError(
                f"RayBridge.submit() in state {self._state.value!r}; call start() first "
                "and do not submit after close()"
            )
        self._slots.acquire()
        if self._state is not BridgeState.RUNNING:
            raise UserError("RayBridge.submit(): the bridge was closed while waiting for a slot")
        self._enqueue((request,))

    def submit_many(self, requests: Iterable[EffectRequest]) -> None:
        """Like `submit` for each request in order, with one hand-over to the bridge thread
        per run of free slots instead of one per call. Blocks while no slot is free, after
        handing over the calls it already holds slots for (so any number of requests works)."""
        if self._state is not BridgeState.RUNNING:
            raise UserError(
                f"RayBridge.submit_many() in state {self._state.value!r}; call start() first "
                "and do not submit after close()"
            )
        batch = list(requests)
        done = 0
        while done < len(batch):
            self._slots.acquire()
            held = 1
            while done + held < len(batch) and self._slots.acquire(blocking=False):
                held += 1
            if self._state is not BridgeState.RUNNING:
                raise UserError(
                    "RayBridge.submit_many(): the bridge was closed while waiting for a slot; "
                    f"{done} of {len(batch)} calls were submitted"
                )
            self._enqueue(batch[done : done + held])
            done += held

    def _enqueue(self, requests: tuple[EffectRequest, ...] | list[EffectRequest]) -> None:
        """Queue calls whose slots are held. The bridge thread is woken only when it is idle
        or a full batch is ready; while calls are outstanding it picks new ones up by itself
        (`BridgeConfig.busy_tick_ms`)."""
        with self._cond:
            before = len(self._pending)
            idle = self._in_flight == 0 or not self.config.busy_tick_ms
            self._in_flight += len(requests)
            self._pending.extend(requests)
            after = before + len(requests)
        batch_max = self.config.batch_max
        if (before == 0 and idle) or after // batch_max > before // batch_max:
            assert self._loop is not None and self._wake is not None
            self._loop.call_soon_threadsafe(self._wake.set)

    def snapshot(self) -> dict[str, Any]:
        """Where every call not yet returned is (for a drain that waits too long): queued for
        the bridge thread, sent on a channel link (per link), waiting for a link to re-open,
        and each pool's outstanding counts. Read without locks: a diagnostic, not a contract."""
        links = {
            f"{kind.value}:{index}": {
                "sent": len(link.client.pending) if link.client is not None else None,
                "closed": link.client.closed if link.client is not None else None,
                "waiting": sum(len(b) for b, _ in link.waiting),
                "reconnecting": link.reconnecting,
            }
            for (kind, index), link in list(self._links.items())
        }
        return {
            "state": self._state.value,
            "in_flight": self._in_flight,
            "queued": len(self._pending),
            "completed_unpolled": len(self._completed),
            "ray_call_tasks": len(self._tasks),
            "links": links,
            "outstanding": {k.value: list(p.outstanding) for k, p in self._pools.items()},
            "thread_alive": self._thread is not None and self._thread.is_alive(),
        }

    def poll(self) -> list[EffectResult]:
        """Completed results, each returned exactly once; never blocks."""
        if not self._completed:
            return []
        with self._cond:
            out = list(self._completed)
            self._completed.clear()
        return out

    def wait(self, timeout_s: float) -> list[EffectResult]:
        """Block until at least one result is ready or `timeout_s` passes; then `poll()`."""
        with self._cond:
            if not self._completed and self._state is BridgeState.RUNNING:
                self._cond.wait_for(
                    lambda: bool(self._completed) or self._state is not BridgeState.RUNNING,
                    timeout_s,
                )
        return self.poll()

    # ------------------------------------------------------------------ bridge thread

    def _run_loop(self, started: threading.Event) -> None:
        name_this_thread("fa-ray-bridge")
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._wake = asyncio.Event()
        loop.run_until_complete(self._connect_links())
        batcher = loop.create_task(self._batcher())
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            batcher.cancel()
            readers = []
            for link in self._links.values():
                if link.client is not None:
                    link.client.close()
                    readers.append(link.client.task)
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(
                    asyncio.gather(batcher, *self._tasks, *readers, return_exceptions=True)
                )
            loop.close()

    async def _connect_links(self) -> None:
        for (kind, index), link in list(self._links.items()):
            pool = self._pools[kind]
            try:
                link.client = await self._open_client(pool, index, link)
            except OSError as exc:
                # Not reachable over a local socket (another host): plain Ray calls instead.
                logger.warning(
                    "%s worker %d: no channel (%s); using Ray calls", kind.value, index, exc
                )
                del self._links[(kind, index)]

    async def _open_client(self, pool: WorkerPool, index: int, link: _Link) -> ChannelClient:
        return await ChannelClient.connect(
            link.address,
            link.secret,
            lambda client, items: self._on_channel_results(pool, index, client, items),
            lambda client, exc: self._on_channel_closed(pool, index, link, client, exc),
        )

    async def _batcher(self) -> None:
        assert self._wake is not None and self._loop is not None
        window = self.config.batch_window_ms / 1000.0
        tick = self.config.busy_tick_ms / 1000.0
        batch_max = self.config.batch_max
        while True:
            if tick and self._in_flight:  # submit does not wake a busy bridge: look by itself
                handle = self._loop.call_later(tick, self._wake.set)
                await self._wake.wait()
                handle.cancel()
            else:
                await self._wake.wait()
            self._wake.clear()
            if window > 0 and len(self._pending) < batch_max:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), window)
                self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        with self._cond:
            if not self._pending:
                return
            taken = list(self._pending)
            self._pending.clear()
        by_kind: dict[EffectKind, list[EffectRequest]] = {}
        for request in taken:
            by_kind.setdefault(request.kind, []).append(request)
        batch_max = self.config.batch_max
        for kind, requests in by_kind.items():
            pool = self._pools.get(kind)
            if pool is None:
                self._complete(
                    [
                        _failed(
                            r,
                            ConfigError,
                            f"config 'pools': no pool for kind {kind.value!r} (pools: "
                            f"{sorted(k.value for k in self._pools)}); add EffectKind."
                            f"{kind.name} to BridgeConfig.pools (an agent job starts pools "
                            "only for what its workflow declares: @model, @tool, "
                            "@mcp_server, context sources)",
                        )
                        for r in requests
                    ]
                )
                continue
            for i in range(0, len(requests), batch_max):
                self._dispatch(pool, requests[i : i + batch_max], resubmits=0)

    def _dispatch(
        self,
        pool: WorkerPool,
        batch: list[EffectRequest],
        *,
        resubmits: int = 0,
        undelivered: int = 0,
    ) -> None:
        assert self._loop is not None
        index = pool.pick()
        pool.outstanding[index] += len(batch)
        link = self._links.get((pool.kind, index))
        if link is not None:
            self._send(pool, index, link, batch, resubmits)
            return
        task = self._loop.create_task(self._run_batch(pool, index, batch, resubmits, undelivered))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(
        self,
        pool: WorkerPool,
        index: int,
        batch: list[EffectRequest],
        resubmits: int,
        undelivered: int,
    ) -> None:
        from ray.exceptions import RayActorError

        returned: set[int] = set()  # positions in `batch` whose results came back
        try:
            if pool.suspect[index]:
                # The actor failed a batch lately: send nothing until it answers again, so
                # calls are not thrown at an actor that Ray is still restarting.
                if not await self._until_alive(pool, index, pool.config.restart_timeout_s):
                    self._fail_lost(pool, batch, f"worker {index} did not come back", False)
                    return
                pool.suspect[index] = False
            actor = pool.actors[index]
            if pool.config.stream_results:
                stream = actor.execute_stream.options(num_returns="streaming").remote(batch)
                async for ref in stream:
                    chunk: list[tuple[int, EffectResult]] = await ref
                    returned.update(i for i, _ in chunk)
                    pool.outstanding[index] -= len(chunk)
                    self._complete([r for _, r in chunk])
                if len(returned) != len(batch):  # a broken worker: one result per call, always
                    self._fail_lost(
                        pool,
                        [r for i, r in enumerate(batch) if i not in returned],
                        "the worker returned no result",
                        True,
                    )
                    returned.update(range(len(batch)))
                return
            results: list[EffectResult] = await actor.execute_batch.remote(batch)
            returned.update(range(len(batch)))
            pool.outstanding[index] -= len(batch)
            if len(results) != len(batch):
                self._complete(self._match(batch, results))
            else:
                self._complete(results)
        except RayActorError as exc:
            pool.suspect[index] = True
            lost = [r for i, r in enumerate(batch) if i not in returned]
            pool.outstanding[index] -= len(lost)
            returned.update(range(len(batch)))
            await self._on_worker_lost(pool, index, lost, resubmits, undelivered, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error("batch to %s worker %d failed: %s", pool.kind.value, index, exc)
            failed = [r for i, r in enumerate(batch) if i not in returned]
            pool.outstanding[index] -= len(failed)
            returned.update(range(len(batch)))
            self._complete(
                [
                    _failed(
                        r, AgentRunError, f"the {pool.kind.value!r} worker failed the batch: {exc}"
                    )
                    for r in failed
                ]
            )
        finally:
            pool.outstanding[index] -= len(batch) - len(returned)

    # ------------------------------------------------------------------ channel transport

    def _send(
        self, pool: WorkerPool, index: int, link: _Link, batch: list[EffectRequest], resubmits: int
    ) -> None:
        """One frame on the actor's channel; queued while the channel is being re-opened."""
        if link.client is None or link.client.closed:
            link.waiting.append((batch, resubmits))
            self._start_reconnect(pool, index, link)
            return
        items: list[tuple[int, EffectRequest]] = []
        calls = link.client.pending
        seq = self._seq
        for request in batch:
            seq += 1
            calls[seq] = (request, resubmits)
            items.append((seq, request))
        self._seq = seq
        link.client.send(items)

    def _on_channel_results(
        self,
        pool: WorkerPool,
        index: int,
        client: ChannelClient,
        items: list[tuple[int, EffectResult]],
    ) -> None:
        calls = client.pending
        results = [result for seq, result in items if calls.pop(seq, None) is not None]
        pool.outstanding[index] -= len(results)
        self._complete(results)
        if self._pending and self.config.busy_tick_ms and not self.config.batch_window_ms:
            self._flush()  # calls submitted while this bridge was busy (see `_enqueue`)

    def _on_channel_closed(
        self, pool: WorkerPool, index: int, link: _Link, client: ChannelClient, exc: Exception
    ) -> None:
        """The actor's end went away: its calls are lost (resubmitted or failed), and the
        channel is re-opened to the restarted actor."""
        assert self._loop is not None
        if link.client is client:
            link.client = None
            pool.suspect[index] = True
        lost, client.pending = client.pending, {}
        pool.outstanding[index] -= len(lost)
        by_resubmits: dict[int, list[EffectRequest]] = {}
        for request, resubmits in lost.values():
            by_resubmits.setdefault(resubmits, []).append(request)
        for resubmits, batch in by_resubmits.items():
            task = self._loop.create_task(
                self._on_worker_lost(pool, index, batch, resubmits, 0, exc)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if link.client is None:
            self._start_reconnect(pool, index, link)

    def _start_reconnect(self, pool: WorkerPool, index: int, link: _Link) -> None:
        assert self._loop is not None
        if link.reconnecting:
            return
        link.reconnecting = True
        task = self._loop.create_task(self._reconnect(pool, index, link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self, pool: WorkerPool, index: int, link: _Link) -> None:
        """Ask the (restarted) actor for its channel until it answers or the pool's
        `restart_timeout_s` passes; then send the batches that waited, or fail them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + pool.config.restart_timeout_s
        delay = 0.05
        try:
            while True:
                try:
                    link.address, link.secret = await pool.actors[index].open_channel.remote()
                    link.client = await self._open_client(pool, index, link)
                    break
                except Exception as exc:  # actor errors, socket errors: retry until deadline
                    if loop.time() + delay > deadline:
                        logger.error(
                            "%s worker %d did not come back: %s", pool.kind.value, index, exc
                        )
                        waiting, link.waiting = link.waiting, []
                        for batch, _ in waiting:
                            pool.outstanding[index] -= len(batch)
                            self._fail_lost(pool, batch, f"worker {index} did not come back", False)
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        finally:
            link.reconnecting = False
        pool.suspect[index] = False
        waiting, link.waiting = link.waiting, []
        for batch, resubmits in waiting:
            self._send(pool, index, link, batch, resubmits)

    async def _on_worker_lost(
        self,
        pool: WorkerPool,
        index: int,
        batch: list[EffectRequest],
        resubmits: int,
        undelivered: int,
        exc: Exception,
    ) -> None:
        cfg = pool.config
        # Ray refuses a call outright while the actor restarts: that call never ran, so sending
        # it again is safe whatever the pool's policy. (Ray says so only in the message.)
        if _UNDELIVERED in str(exc) and undelivered < _MAX_UNDELIVERED:
            logger.info(
                "%s worker %d restarting; re-sending %d calls", pool.kind.value, index, len(batch)
            )
            self._dispatch(pool, batch, resubmits=resubmits, undelivered=undelivered + 1)
            return
        if cfg.resubmit_on_worker_loss and resubmits < cfg.max_resubmits:
            logger.warning(
                "%s worker %d lost with %d calls in flight; resubmitting (%d/%d): %s",
                pool.kind.value,
                index,
                len(batch),
                resubmits + 1,
                cfg.max_resubmits,
                exc,
            )
            self.resubmitted += len(batch)
            self._dispatch(pool, batch, resubmits=resubmits + 1, undelivered=undelivered)
            return
        if not cfg.resubmit_on_worker_loss:
            why = "the pool does not resubmit calls (resubmit_on_worker_loss=False)"
        else:
            why = f"it was resubmitted {resubmits} time(s) already (max_resubmits)"
        logger.error(
            "%s worker %d lost with %d calls in flight; failing them: %s",
            pool.kind.value,
            index,
            len(batch),
            exc,
        )
        self._fail_lost(pool, batch, f"the worker died while running it and {why}", True)

    def _fail_lost(
        self, pool: WorkerPool, batch: list[EffectRequest], why: str, maybe_ran: bool
    ) -> None:
        tail = (
            "; the call may or may not have taken effect" if maybe_ran else "; the call was not run"
        )
        self._complete(
            [
                _failed(
                    r,
                    DeliveryError,
                    f"call {r.call_id!r} to the {pool.kind.value!r} pool: {why}{tail}",
                )
                for r in batch
            ]
        )

    @staticmethod
    async def _until_alive(pool: WorkerPool, index: int, timeout_s: float) -> bool:
        """Wait until the actor answers a ping (Ray restarts it); False after `timeout_s`."""
        from ray.exceptions import RayActorError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delay = 0.05
        while True:
            try:
                await pool.actors[index].ping.remote()
                return True
            except RayActorError:
                if loop.time() + delay > deadline:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    @staticmethod
    def _match(batch: list[EffectRequest], results: list[EffectResult]) -> list[EffectResult]:
        out: list[EffectResult] = []
        for i, request in enumerate(batch):
            if i < len(results) and results[i].call_id == request.call_id:
                out.append(results[i])
            else:
                out.append(
                    _failed(
                        request,
                        AgentRunError,
                        f"call {request.call_id!r}: the worker returned no result",
                    )
                )
        return out

    def _complete(self, results: Iterable[EffectResult]) -> None:
        results = list(results)
        with self._cond:
            self._completed.extend(results)
            self._in_flight -= len(results)
            self._cond.notify_all()
        if results:
            self._slots.release(len(results))
