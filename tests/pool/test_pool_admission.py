"""Unit tests for actors.admission: a fake clock makes every wait exact; no Ray, no network."""

from __future__ import annotations

import random

import pytest

from actors.admission import (
    AdmissionConfig,
    AdmissionController,
    BreakerState,
    CircuitBreaker,
    CircuitBreakerConfig,
    RateLimit,
    RateLimiter,
    RetryPolicy,
    TokenBucket,
    estimate_tokens,
)
from actors.effects import EffectError, EffectKind, EffectRequest, EffectResult
from protocols.errors import ConfigError, ModelRetryableError, ToolError
from protocols.events import Usage


class FakeClock:
    """Monotonic and wall clocks that only move when the code under test sleeps."""

    __test__ = False

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


class ScriptedExecutor:
    """Answers each call with the next scripted outcome: a result factory or an exception."""

    __test__ = False

    def __init__(self, clock: FakeClock, script: list[object], *, cost_s: float = 0.0) -> None:
        self.clock = clock
        self.script = list(script)
        self.calls: list[float] = []
        self.cost_s = cost_s

    async def execute(self, request: EffectRequest) -> EffectResult:
        self.calls.append(self.clock.now)
        self.clock.now += self.cost_s
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, EffectError):
            return EffectResult(call_id=request.call_id, error=step)
        return EffectResult(
            call_id=request.call_id, value="done", usage=Usage(input_tokens=10, output_tokens=5)
        )


def req(call_id: str = "c1", **kw: object) -> EffectRequest:
    return EffectRequest(call_id=call_id, kind=EffectKind.MODEL, target="m", **kw)  # type: ignore[arg-type]


def controller(clock: FakeClock, **kw: object) -> AdmissionController:
    return AdmissionController(
        AdmissionConfig(**kw),  # type: ignore[arg-type]
        clock=clock.monotonic,
        wall_clock=clock.wall,
        sleep=clock.sleep,
        rng=random.Random(7),
    )


def test_token_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 2.0, clock=clock.monotonic)
    bucket.take(2)
    assert bucket.wait_time(1) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.wait_time(1) == 0.0
    bucket.debit(5)  # usage beyond the reservation puts the bucket in debt
    assert bucket.wait_time(1) == pytest.approx(2.5)


def test_token_bucket_rejects_non_positive_rate() -> None:
    with pytest.raises(ConfigError, match="rate"):
        TokenBucket(0.0, 1.0)


async def test_rate_limiter_spaces_requests_at_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        {"p/m": RateLimit(requests_per_min=60, burst_s=1.0)},
        clock=clock.monotonic,
        sleep=clock.sleep,
    )
    starts = []
    for _ in range(5):
        assert await limiter.acquire("p/m", 0, deadline=None)
        starts.append(clock.now)
    # One permit in the bucket, then one a second.
    assert starts == pytest.approx([1000.0, 1001.0, 1002.0, 1003.0, 1004.0])
    # Keys without a limit pass freely.
    assert await limiter.acquire("other", 0, deadline=None)
    assert clock.now == pytest.approx(1004.0)


async def test_rate_limiter_tokens_per_minute_and_settle() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        {"p/m": RateLimit(tokens_per_min=600, burst_s=10.0)},  # 10 tokens/s, 100 burst
        clock=clock.monotonic,
        sleep=clock.sleep,
    )
    assert await limiter.acquire("p/m", 100, deadline=None)
    limiter.settle("p/m", reserved=100, used=150)  # 50 more than reserved: debt
    assert limiter.wait_time("p/m", 10) == pytest.approx(6.0)
    assert not await limiter.acquire("p/m", 10, deadline=clock.now + 1.0)


def test_estimate_tokens() -> None:
    r = req(payload={"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50})
    assert estimate_tokens(r) == 150
    assert estimate_tokens(req(payload={"estimated_tokens": 7})) == 7


def test_retry_policy_backoff_grows_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay_s=1.0, multiplier=2.0, max_delay_s=5.0)
    rng = random.Random(1)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [policy.delay_s(attempt, None, rng) for _ in range(200)]
        assert min(delays) >= 0.0 and max(delays) <= cap
        assert max(delays) > cap * 0.8  # full jitter spans the range
    assert 3.0 <= policy.delay_s(1, 3.0, rng) <= 3.0 + policy.retry_after_jitter_s
    assert policy.delay_s(1, 1e6, rng) <= policy.max_retry_after_s + policy.retry_after_jitter_s
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_circuit_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=2, reset_timeout_s=10), clock=clock.monotonic
    )
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert breaker.retry_in_s() == pytest.approx(10.0)
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


async def test_retry_after_is_honoured_then_success() -> None:
    clock = FakeClock()
    executor = ScriptedExecutor(clock, [ModelRetryableError("429", retry_after_s=2.0), "ok"])
    result = await controller(clock).run(req(), executor)
    assert result.ok and result.value == "done"
    assert result.attempts == 2
    assert executor.calls[1] - executor.calls[0] >= 2.0
    assert result.usage == Usage(input_tokens=10, output_tokens=5)


async def test_retryable_error_results_are_retried_with_backoff_until_attempts_run_out() -> None:
    clock = FakeClock()
    boom = EffectError(error_type="ModelRetryableError", message="503", retryable=True)
    executor = ScriptedExecutor(clock, [boom] * 10)
    ctl = controller(clock, retry=RetryPolicy(max_attempts=3, base_delay_s=1.0))
    result = await ctl.run(req(), executor)
    assert not result.ok and result.error is not None
    assert result.error.error_type == "ModelRetryableError"
    assert result.attempts == 3 and len(executor.calls) == 3
    assert len(clock.sleeps) == 2 and all(0 <= s <= 2.0 for s in clock.sleeps)


async def test_non_retryable_error_returns_at_once() -> None:
    clock = FakeClock()
    executor = ScriptedExecutor(clock, [ToolError("bad arguments")])
    result = await controller(clock).run(req(), executor)
    assert result.error is not None and result.error.error_type == "ToolError"
    assert not result.error.retryable
    assert result.attempts == 1 and clock.sleeps == []


async def test_deadline_already_passed() -> None:
    clock = FakeClock()
    executor = ScriptedExecutor(clock, ["ok"])
    result = await controller(clock).run(req(deadline_s=clock.wall() - 1.0), executor)
    assert result.error is not None and result.error.error_type == "DeadlineExceeded"
    assert result.attempts == 0 and executor.calls == []


async def test_deadline_stops_retries_that_would_pass_it() -> None:
    clock = FakeClock()
    executor = ScriptedExecutor(clock, [ModelRetryableError("429", retry_after_s=30.0), "ok"])
    result = await controller(clock).run(req(deadline_s=clock.wall() + 5.0), executor)
    assert result.error is not None and result.error.error_type == "DeadlineExceeded"
    assert result.attempts == 1 and len(executor.calls) == 1


async def test_breaker_fails_fast_after_threshold() -> None:
    clock = FakeClock()
    boom = EffectError(error_type="ModelRetryableError", message="503", retryable=True)
    executor = ScriptedExecutor(clock, [boom] * 10)
    ctl = controller(
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=CircuitBreakerConfig(failure_threshold=2, reset_timeout_s=60),
    )
    for i in range(2):
        assert (await ctl.run(req(f"c{i}", rate_key="p/m"), executor)).error is not None
    fast = await ctl.run(req("c9", rate_key="p/m"), executor)
    assert fast.error is not None and fast.error.error_type == "CircuitOpenError"
    assert fast.error.retryable and fast.attempts == 0
    assert len(executor.calls) == 2
    assert ctl.snapshot() == {"p/m": "open"}
    # Another endpoint is unaffected.
    assert (await ctl.run(req("c10", rate_key="p/other"), ScriptedExecutor(clock, []))).ok
