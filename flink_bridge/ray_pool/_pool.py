"""`WorkerPool`: the `EffectWorker` actors of one `EffectKind`, and which one gets a batch."""

from __future__ import annotations

import logging
from typing import Any

from actors.effects import EffectKind
from flink_bridge.ray_pool._config import PoolConfig
from flink_bridge.ray_pool._worker import EffectWorker, ExecutorFactory

__all__ = ["WorkerPool"]

logger = logging.getLogger("flink_actors.flink_bridge.ray_pool")


class WorkerPool:
    """Creates (or, with a name prefix, finds) the actors of one pool and balances batches.

    Batches go to the actor with the fewest calls outstanding from this bridge; ties rotate.
    Not thread-safe: used only from the bridge's event-loop thread after `start`.
    """

    def __init__(
        self,
        kind: EffectKind,
        config: PoolConfig,
        executor_factory: ExecutorFactory,
        *,
        name_prefix: str | None,
        namespace: str,
    ) -> None:
        self.kind = kind
        self.config = config
        self._factory = executor_factory
        self._name_prefix = name_prefix
        self._namespace = namespace
        self.actors: list[Any] = []
        self.outstanding: list[int] = []
        self.suspect: list[bool] = []  # failed a batch lately: ping before sending more
        self._next = 0

    @property
    def named(self) -> bool:
        return self._name_prefix is not None

    def actor_name(self, index: int) -> str:
        return f"{self._name_prefix}:{self.kind.value}:{index}"

    def start(self) -> list[Any]:
        """Create the actors; returns one readiness ref per actor (their `ping`)."""
        import ray

        remote_cls = ray.remote(EffectWorker)
        cfg = self.config
        for index in range(cfg.size):
            options: dict[str, Any] = {
                "max_concurrency": cfg.max_concurrency,
                "num_cpus": cfg.num_cpus,
                "max_restarts": cfg.max_restarts,
                # The bridge decides about calls lost with a dead actor (resubmit or fail).
                "max_task_retries": 0,
            }
            if self.named:
                options.update(
                    name=self.actor_name(index), namespace=self._namespace, get_if_exists=True
                )
            handle = remote_cls.options(**options).remote(  # type: ignore[attr-defined]
                self._factory, cfg.admission, rate_share=1.0 / cfg.size
            )
            self.actors.append(handle)
            self.outstanding.append(0)
            self.suspect.append(False)
        return [a.ping.remote() for a in self.actors]

    def pick(self) -> int:
        """Index of the actor for the next batch: healthy before suspect, then least loaded."""
        n = len(self.actors)
        best, best_load = -1, (True, 0)
        for step in range(n):
            index = (self._next + step) % n
            load = (self.suspect[index], self.outstanding[index])
            if best < 0 or load < best_load:
                best, best_load = index, load
        self._next = (best + 1) % n
        return best

    def stop(self) -> None:
        """Kill the actors this pool created anonymously (named ones are shared: kept)."""
        if self.named:
            return
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                logger.debug("actor already gone", exc_info=True)
        self.actors.clear()
        self.outstanding.clear()
        self.suspect.clear()
