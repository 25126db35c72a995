"""Configuration of the Ray worker pools and of the bridge that feeds them."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.admission import AdmissionConfig
from actors.effects import EffectKind
from protocols.errors import ConfigError

__all__ = ["BridgeConfig", "PoolConfig"]


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """One pool of `EffectWorker` actors (one pool per `EffectKind`).

    - `size`: actors in the pool; each is one Python process, so keep it near the core count.
    - `max_concurrency`: Ray calls one actor runs at once (with ``transport="ray"`` each batch
      is one, so an actor holds up to ``max_concurrency * batch_max`` calls; channel calls are
      bounded by the bridges' `max_in_flight` instead).
    - `num_cpus`: CPUs Ray reserves per actor; 0 lets a small machine host every pool.
    - `max_restarts`: how often Ray restarts a dead actor (-1: always).
    - `resubmit_on_worker_loss`: when an actor dies with calls in flight, the bridge sends those
      calls again (up to `max_resubmits` times) to a live actor, waiting up to
      `restart_timeout_s` for one to answer. Right for calls that are safe to
      repeat (model calls, lookups); for side-effecting tools set it False and the calls come
      back as `DeliveryError` results, never lost silently.
    - `transport`: how calls and results travel. ``"channel"`` (default): a local socket to
      each actor (`_channel`), batches as frames and results as they finish; ~2.5 ms of Ray
      call latency less per call, which is most of the gap to the W / latency bound. An actor
      that cannot be reached that way (another host) falls back to ``"ray"``: one Ray call
      per batch. Ray creates, restarts and health-checks the actors either way.
    - `stream_results` (``transport="ray"`` only): workers send results back as calls finish
      (a Ray streaming generator) instead of once per batch, so one slow call does not hold
      back its batch-mates; False uses one plain `execute_batch` call per batch.
    - `admission`: rate limits, retries, deadlines, breakers for this pool. Rate limits are
      global to the pool: each of its `size` actors enforces ``1/size`` of every limit.
    """

    size: int = 1
    max_concurrency: int = 64
    num_cpus: float = 0.0
    max_restarts: int = -1
    resubmit_on_worker_loss: bool = True
    max_resubmits: int = 2
    restart_timeout_s: float = 30.0
    transport: str = "channel"
    stream_results: bool = True
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError("size", f"must be >= 1, got {self.size!r}", "use at least 1 actor")
        if self.max_concurrency < 1:
            raise ConfigError(
                "max_concurrency", f"must be >= 1, got {self.max_concurrency!r}", "use at least 1"
            )
        if self.transport not in ("channel", "ray"):
            raise ConfigError(
                "transport", f"unknown transport {self.transport!r}", "use 'channel' or 'ray'"
            )


def _default_pools() -> dict[EffectKind, PoolConfig]:
    return {kind: PoolConfig() for kind in EffectKind}


@dataclass(frozen=True, kw_only=True)
class BridgeConfig:
    """Settings of one `RayBridge` (one per Flink subtask).

    - `max_in_flight`: calls submitted and not yet completed; `submit` blocks beyond it, which
      is how a saturated pool shows up as Flink backpressure.
    - `batch_max` / `batch_window_ms`: a batch (one channel frame, or one Ray call) carries up
      to `batch_max` requests, gathered for at most `batch_window_ms` after the first one
      arrives (sent at once when full). The default window 0 batches adaptively: a batch
      holds what was submitted while the bridge thread sent the previous one, so calls wait
      for no timer and batches grow with load. A window > 0 trades latency for fewer, larger
      batches (worth it only with ``transport="ray"`` at low rates).
    - `busy_tick_ms`: > 0: while calls are outstanding, `submit` does not wake the bridge
      thread (a wake-up is a pipe write that makes the submitting Flink task thread give up
      the GIL mid-callback); the bridge thread picks new calls up when results arrive and at
      least every `busy_tick_ms`. Measured: 10-25% less CPU per call at the same share of the
      W / latency bound. 0 wakes the bridge thread for the first call of every batch.
    - `pools`: one `PoolConfig` per kind; a request of a kind without a pool fails at once.
    - `ray_address`: None starts (or joins) a Ray in this process bound to 127.0.0.1;
      ``"127.0.0.1:6379"`` connects to a running head (token auth, see `connect_ray`).
    - `name_prefix`: None makes anonymous actors owned by this bridge; a string makes named
      actors ``"<prefix>:<kind>:<i>"`` shared by every bridge (every Flink subtask) of the job,
      so their rate limits are job-wide. Use one prefix per workflow.
    - `num_cpus`: CPUs of a Ray started here.
    """

    max_in_flight: int = 200
    batch_max: int = 64
    batch_window_ms: float = 0.0
    busy_tick_ms: float = 1.0
    pools: dict[EffectKind, PoolConfig] = field(default_factory=_default_pools)
    ray_address: str | None = None
    namespace: str = "flink-actors"
    name_prefix: str | None = None
    num_cpus: int | None = 2
    log_to_driver: bool = False
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ConfigError(
                "max_in_flight", f"must be >= 1, got {self.max_in_flight!r}", "use at least 1"
            )
        if self.batch_max < 1:
            raise ConfigError("batch_max", f"must be >= 1, got {self.batch_max!r}", "use >= 1")
        if self.batch_window_ms < 0:
            raise ConfigError(
                "batch_window_ms", f"must be >= 0, got {self.batch_window_ms!r}", "use 0 or more"
            )
        if self.busy_tick_ms < 0:
            raise ConfigError(
                "busy_tick_ms", f"must be >= 0, got {self.busy_tick_ms!r}", "use 0 or more"
            )
        if not self.pools:
            raise ConfigError("pools", "no pool configured", "configure at least one EffectKind")
