"""Admission control for effect calls: rate limits, retries, deadlines, circuit breakers.

Every model/tool/MCP/context call passes through one `AdmissionController.run` before and
around `EffectExecutor.execute`:

1. deadline: a call whose `EffectRequest.deadline_s` (absolute unix time) has passed, or would
   pass while it waits for admission, ends at once as a `DeadlineExceeded` result;
2. circuit breaker per endpoint: after `failure_threshold` consecutive retryable failures the
   endpoint is *open* and calls fail fast (`CircuitOpenError`) until `reset_timeout_s` has
   passed; then one probe call is let through (*half open*);
3. token buckets per `rate_key` for requests/min and tokens/min: the call waits for a permit;
   the tokens actually used (`EffectResult.usage`) are debited afterwards, so the estimate made
   before the call does not need to be exact;
4. retries: retryable failures (429, 5xx, timeouts: `error.retryable` or a raised error whose
   `retryable` attribute is true) are retried with exponential backoff and full jitter, and a
   server's Retry-After (`ModelRetryableError.retry_after_s`) is honoured; non-retryable errors
   come back at once.

Why here, as pure Python: the Ray worker applies it (one controller per worker process, see
flink_bridge.ray_pool), the local runner can apply it too, and unit tests need no Ray. Nothing
here imports ray or pyflink (contract: actors never does). Clock, sleep and randomness are
injectable so tests can be exact.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from actors.effects import EffectError, EffectExecutor, EffectRequest, EffectResult
from protocols.errors import AgentRunError, ConfigError, DeadlineExceeded
from protocols.trusted import trusted_model

__all__ = [
    "AdmissionConfig",
    "AdmissionController",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "RateLimit",
    "RateLimiter",
    "RetryPolicy",
    "TokenBucket",
    "endpoint_of",
    "estimate_tokens",
]

logger = logging.getLogger("flink_actors.actors.admission")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class CircuitOpenError(AgentRunError):
    """An endpoint's circuit breaker is open: the call was not attempted.

    Retryable: the endpoint may recover once the breaker's reset timeout has passed.
    (Candidate for protocols/errors.py.)
    """

    retryable = True


# --------------------------------------------------------------------------- token buckets


class TokenBucket:
    """A classic token bucket: `rate_per_s` refill, `capacity` burst.

    The level may go negative: `debit` records usage that was larger than what was reserved
    (a model answered with more tokens than estimated), and later callers wait it off.
    """

    def __init__(self, rate_per_s: float, capacity: float, *, clock: Clock = time.monotonic):
        if rate_per_s <= 0:
            raise ConfigError("rate", f"must be > 0, got {rate_per_s!r}", "pass a positive rate")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0.0 when it can be taken now)."""
        self._refill()
        # A request larger than the whole bucket is admitted once the bucket is full,
        # otherwise it could never run.
        need = min(amount, self.capacity)
        if self._level >= need:
            return 0.0
        return (need - self._level) / self.rate_per_s

    def take(self, amount: float) -> None:
        """Take `amount` now (callers check `wait_time` first)."""
        self._refill()
        self._level -= amount

    def debit(self, amount: float) -> None:
        """Adjust for usage found after the call (negative `amount` gives tokens back)."""
        self._refill()
        self._level = min(self.capacity, self._level - amount)


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """Limits of one rate key (a provider/model pair, e.g. ``"openai/gpt-4o-mini"``).

    `burst_s` sizes the buckets: a bucket holds `burst_s` seconds' worth of its rate, so a
    rate of 600/min with `burst_s=1.0` admits at most 10 calls at once after an idle period.
    """

    requests_per_min: float | None = None
    tokens_per_min: float | None = None
    burst_s: float = 1.0

    def scaled(self, share: float) -> RateLimit:
        """This limit divided among `1/share` independent limiters (e.g. pool workers)."""
        return RateLimit(
            requests_per_min=None
            if self.requests_per_min is None
            else self.requests_per_min * share,
            tokens_per_min=None if self.tokens_per_min is None else self.tokens_per_min * share,
            burst_s=self.burst_s,
        )


def estimate_tokens(request: EffectRequest) -> int:
    """A cheap estimate of a model call's tokens, made before the call (~4 chars a token).

    An explicit ``payload["estimated_tokens"]`` wins; `RateLimiter.settle` corrects the bucket
    with the real usage afterwards.
    """
    explicit = request.payload.get("estimated_tokens")
    if isinstance(explicit, int | float):
        return int(explicit)
    messages = request.payload.get("messages")
    if not messages:
        return 0
    chars = sum(
        len(str(m.get("content", ""))) if isinstance(m, dict) else len(str(m)) for m in messages
    )
    max_out = request.payload.get("max_tokens")
    return chars // 4 + (int(max_out) if isinstance(max_out, int) else 0)


class RateLimiter:
    """Token buckets per rate key: one for requests/min and one for tokens/min.

    Rate keys without a configured limit (and requests with `rate_key=None`) pass freely.
    """

    def __init__(
        self,
        limits: dict[str, RateLimit],
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}
        for key, limit in limits.items():
            if limit.requests_per_min is not None:
                rate = limit.requests_per_min / 60.0
                self._requests[key] = TokenBucket(rate, max(1.0, rate * limit.burst_s), clock=clock)
            if limit.tokens_per_min is not None:
                rate = limit.tokens_per_min / 60.0
                self._tokens[key] = TokenBucket(rate, max(1.0, rate * limit.burst_s), clock=clock)

    def wait_time(self, rate_key: str | None, tokens: int) -> float:
        """Seconds until a call of `tokens` under `rate_key` may start (0.0: now)."""
        if rate_key is None:
            return 0.0
        wait = 0.0
        if (bucket := self._requests.get(rate_key)) is not None:
            wait = max(wait, bucket.wait_time(1))
        if tokens and (bucket := self._tokens.get(rate_key)) is not None:
            wait = max(wait, bucket.wait_time(tokens))
        return wait

    async def acquire(self, rate_key: str | None, tokens: int, *, deadline: float | None) -> bool:
        """Wait for a permit and take it. False if the wait would pass `deadline` (monotonic).

        Waiters re-check after sleeping, so concurrent callers never overdraw the buckets.
        """
        while True:
            wait = self.wait_time(rate_key, tokens)
            if wait <= 0.0:
                break
            if deadline is not None and self._clock() + wait > deadline:
                return False
            await self._sleep(wait)
        if rate_key is not None:
            if (bucket := self._requests.get(rate_key)) is not None:
                bucket.take(1)
            if tokens and (bucket := self._tokens.get(rate_key)) is not None:
                bucket.take(tokens)
        return True

    def settle(self, rate_key: str | None, reserved: int, used: int) -> None:
        """Correct the tokens bucket once the real usage of a call is known."""
        if rate_key is not None and (bucket := self._tokens.get(rate_key)) is not None:
            bucket.debit(used - reserved)


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After overrides the backoff.

    Attempt n (1-based) that failed retryably waits ``uniform(0, min(max_delay_s,
    base_delay_s * multiplier**(n-1)))`` before attempt n+1, or Retry-After seconds (capped at
    `max_retry_after_s`) plus a small jitter when the server sent one.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.25
    multiplier: float = 2.0
    max_delay_s: float = 20.0
    max_retry_after_s: float = 120.0
    retry_after_jitter_s: float = 0.05

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                "max_attempts", f"must be >= 1, got {self.max_attempts!r}", "pass 1 for no retries"
            )

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after_s is not None and retry_after_s >= 0:
            return min(retry_after_s, self.max_retry_after_s) + rng.uniform(
                0.0, self.retry_after_jitter_s
            )
        cap = min(self.max_delay_s, self.base_delay_s * self.multiplier ** (attempt - 1))
        return rng.uniform(0.0, cap)


# --------------------------------------------------------------------------- circuit breaker


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, kw_only=True)
class CircuitBreakerConfig:
    """`failure_threshold` consecutive retryable failures open the breaker for
    `reset_timeout_s`; then one probe call decides between closed and open again."""

    failure_threshold: int = 5
    reset_timeout_s: float = 30.0


class CircuitBreaker:
    """Per-endpoint breaker: stops hammering an endpoint that keeps failing."""

    def __init__(self, config: CircuitBreakerConfig, *, clock: Clock = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self._config.reset_timeout_s
        ):
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the endpoint now (takes the probe slot when half open)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._config.reset_timeout_s - self._clock())

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        self._probe_in_flight = False
        if (
            self._state is BreakerState.HALF_OPEN
            or self._failures >= self._config.failure_threshold
        ):
            if self._state is not BreakerState.OPEN:
                logger.warning("circuit opened after %d failures", self._failures)
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()


def _with_timing(result: EffectResult, attempts: int, latency_ms: float) -> EffectResult:
    """`result` with its attempts and latency set, copied without pydantic's `model_copy`
    (on every call of the hot path)."""
    fields = result.__dict__.copy()
    fields["attempts"] = attempts
    fields["latency_ms"] = latency_ms
    return trusted_model(
        type(result),
        fields,
        fields_set=result.__pydantic_fields_set__ | _TIMING_FIELDS,
        extra=result.__pydantic_extra__,
        private=result.__pydantic_private__,
    )


_TIMING_FIELDS = frozenset(("attempts", "latency_ms"))


def endpoint_of(request: EffectRequest) -> str:
    """The breaker key of a call: its rate key (provider/model) or else kind:target."""
    return request.rate_key or f"{request.kind}:{request.target}"


# --------------------------------------------------------------------------- controller


@dataclass(frozen=True, kw_only=True)
class AdmissionConfig:
    """Admission settings for one executor process.

    `default_timeout_s` bounds a call that carries no deadline (None: unbounded).
    """

    rate_limits: dict[str, RateLimit] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    default_timeout_s: float | None = None

    def scaled(self, share: float) -> AdmissionConfig:
        """The same settings with every rate limit multiplied by `share` (0 < share <= 1)."""
        return AdmissionConfig(
            rate_limits={k: v.scaled(share) for k, v in self.rate_limits.items()},
            retry=self.retry,
            breaker=self.breaker,
            default_timeout_s=self.default_timeout_s,
        )


def _error_of(exc: BaseException) -> tuple[EffectError, float | None]:
    retryable = bool(getattr(exc, "retryable", False)) or isinstance(
        exc, TimeoutError | ConnectionError
    )
    retry_after = getattr(exc, "retry_after_s", None)
    error = EffectError(error_type=type(exc).__name__, message=str(exc), retryable=retryable)
    return error, retry_after if isinstance(retry_after, int | float) else None


class AdmissionController:
    """Runs calls through deadline, breaker, rate limit and retry checks (see module doc).

    One instance per process that executes calls; not thread-safe (one event loop).
    """

    def __init__(
        self,
        config: AdmissionConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or AdmissionConfig()
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.limiter = RateLimiter(self.config.rate_limits, clock=clock, sleep=sleep)
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, endpoint: str) -> CircuitBreaker:
        found = self._breakers.get(endpoint)
        if found is None:
            found = self._breakers[endpoint] = CircuitBreaker(
                self.config.breaker, clock=self._clock
            )
        return found

    def _deadline(self, request: EffectRequest) -> float | None:
        """The call's deadline on the monotonic clock (None: no deadline)."""
        if request.deadline_s is not None:
            return self._clock() + (request.deadline_s - self._wall())
        if self.config.default_timeout_s is not None:
            return self._clock() + self.config.default_timeout_s
        return None

    async def run(self, request: EffectRequest, executor: EffectExecutor) -> EffectResult:
        """Execute `request` with `executor` under admission control. Never raises
        (except for cancellation): every outcome is an `EffectResult`."""
        started = self._clock()
        deadline = self._deadline(request)
        breaker = self.breaker(endpoint_of(request))
        attempts = 0
        last: EffectResult | None = None

        def finish(result: EffectResult) -> EffectResult:
            return _with_timing(result, attempts, (self._clock() - started) * 1000.0)

        def failed(exc_type: type[Exception], message: str, retryable: bool) -> EffectResult:
            error = EffectError(error_type=exc_type.__name__, message=message, retryable=retryable)
            usage = last.usage if last is not None else None
            return finish(EffectResult(call_id=request.call_id, error=error, usage=usage))

        def expired() -> EffectResult:
            return failed(
                DeadlineExceeded,
                f"call {request.call_id!r} to {request.target!r} passed its deadline after "
                f"{attempts} attempt(s); raise the deadline or the model's timeout",
                False,
            )

        while True:
            if deadline is not None and self._clock() >= deadline:
                return expired()
            if not breaker.allow():
                return failed(
                    CircuitOpenError,
                    f"circuit for endpoint {endpoint_of(request)!r} is open after repeated "
                    f"failures; retry in {breaker.retry_in_s():.1f}s",
                    True,
                )
            tokens = 0
            if request.rate_key is not None:  # no limit to wait for otherwise
                tokens = estimate_tokens(request)
                if not await self.limiter.acquire(request.rate_key, tokens, deadline=deadline):
                    return expired()
            attempts += 1
            result, retry_after = await self._attempt(request, executor, deadline)
            if result is None:  # the attempt itself ran past the deadline
                breaker.record_failure()
                return expired()
            used = result.usage.total_tokens if result.usage is not None else tokens
            self.limiter.settle(request.rate_key, tokens, used)
            if result.error is None:
                breaker.record_success()
                return finish(result)
            if not result.error.retryable:
                # The endpoint answered: a bad request says nothing about its health.
                breaker.record_success()
                return finish(result)
            breaker.record_failure()
            last = result
            if attempts >= self.config.retry.max_attempts:
                return finish(result)
            delay = self.config.retry.delay_s(attempts, retry_after, self._rng)
            if deadline is not None and self._clock() + delay >= deadline:
                return expired()
            logger.debug(
                "retrying %r after %s in %.3fs", request.call_id, result.error.error_type, delay
            )
            await self._sleep(delay)

    async def _attempt(
        self, request: EffectRequest, executor: EffectExecutor, deadline: float | None
    ) -> tuple[EffectResult | None, float | None]:
        """One call. Returns (None, None) when it ran past the deadline."""
        try:
            if deadline is None:
                result = await executor.execute(request)
            else:
                result = await asyncio.wait_for(
                    executor.execute(request), timeout=max(0.0, deadline - self._clock())
                )
        except TimeoutError:
            if deadline is not None and self._clock() >= deadline - 1e-3:
                return None, None
            error, retry_after = _error_of(TimeoutError("the call timed out"))
            return EffectResult(call_id=request.call_id, error=error), retry_after
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # executors should not raise; isolate those that do
            error, retry_after = _error_of(exc)
            return EffectResult(call_id=request.call_id, error=error), retry_after
        retry_after = getattr(result.error, "retry_after_s", None) if result.error else None
        return result, retry_after if isinstance(retry_after, int | float) else None

    def snapshot(self) -> dict[str, Any]:
        """Breaker states per endpoint, for metrics and tests."""
        return {name: b.state.value for name, b in self._breakers.items()}
