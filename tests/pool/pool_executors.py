"""Small EffectExecutors for the pool tests (shipped to Ray workers by value, see conftest)."""

from __future__ import annotations

import asyncio
import os
import time

import httpx

from actors.effects import EffectError, EffectRequest, EffectResult
from protocols.errors import ModelNonRetryableError, ModelRetryableError
from protocols.events import Usage


class SleepExecutor:
    """Sleeps `payload["ms"]` (default `ms`), then answers with the worker's pid, the call's
    start time and the largest number of calls this worker ran at once."""

    __test__ = False

    def __init__(self, ms: float = 0.0) -> None:
        self.ms = ms
        self.running = 0
        self.peak = 0

    async def execute(self, request: EffectRequest) -> EffectResult:
        started = time.time()
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(float(request.payload.get("ms", self.ms)) / 1000.0)
        finally:
            self.running -= 1
        if request.payload.get("fail"):
            error = EffectError(error_type="ToolError", message=f"{request.call_id} failed")
            return EffectResult(call_id=request.call_id, error=error)
        if request.payload.get("raise"):
            raise RuntimeError(f"{request.call_id} raised")
        value = {
            "echo": request.payload.get("echo"),
            "pid": os.getpid(),
            "started": started,
            "peak": self.peak,
        }
        return EffectResult(
            call_id=request.call_id, value=value, usage=Usage(input_tokens=3, output_tokens=2)
        )


class RetryAfterOnceExecutor:
    """Raises ModelRetryableError(retry_after_s=...) on a call's first attempt, then answers
    with the times of both attempts."""

    __test__ = False

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self.first: dict[str, float] = {}

    async def execute(self, request: EffectRequest) -> EffectResult:
        now = time.time()
        if request.call_id not in self.first:
            self.first[request.call_id] = now
            raise ModelRetryableError("429 Too Many Requests", retry_after_s=self.retry_after_s)
        return EffectResult(call_id=request.call_id, value=[self.first[request.call_id], now])


class HttpModelExecutor:
    """Calls a real HTTP endpoint; 429/5xx -> ModelRetryableError with Retry-After."""

    __test__ = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: httpx.AsyncClient | None = None

    async def execute(self, request: EffectRequest) -> EffectResult:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        response = await self._client.post(self.url, json={"call_id": request.call_id})
        if response.status_code == 429 or response.status_code >= 500:
            after = response.headers.get("retry-after")
            raise ModelRetryableError(
                f"HTTP {response.status_code}", retry_after_s=float(after) if after else None
            )
        if response.status_code >= 400:
            raise ModelNonRetryableError(f"HTTP {response.status_code}")
        body = response.json()
        return EffectResult(
            call_id=request.call_id,
            value=body["text"],
            usage=Usage(input_tokens=body["in"], output_tokens=body["out"], cost_usd=0.001),
        )


def broken_factory() -> SleepExecutor:
    """An executor factory that fails in the worker (a misconfigured workflow)."""
    raise ValueError("no model configured")
