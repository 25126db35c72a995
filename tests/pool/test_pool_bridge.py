"""Integration tests of the Ray pools and RayBridge: real Ray on 127.0.0.1, real actors."""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pool_executors import (
    HttpModelExecutor,
    RetryAfterOnceExecutor,
    SleepExecutor,
    broken_factory,
)

from actors.admission import AdmissionConfig, RateLimit
from actors.effects import EffectKind, EffectRequest, EffectResult
from flink_bridge.ray_pool import BridgeConfig, PoolConfig, RayBridge
from flink_bridge.ray_pool._channel import ChannelClient
from protocols.errors import ConfigError, UserError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

ray = pytest.importorskip("ray")


def model_req(call_id: str, **payload: object) -> EffectRequest:
    return EffectRequest(call_id=call_id, kind=EffectKind.MODEL, target="m", payload=payload)


def drain(bridge: RayBridge, count: int, timeout_s: float = 30.0) -> dict[str, EffectResult]:
    """Collect `count` results (asserting each call_id comes back exactly once)."""
    out: dict[str, EffectResult] = {}
    end = time.monotonic() + timeout_s
    while len(out) < count:
        assert time.monotonic() < end, f"only {len(out)} of {count} results arrived"
        for result in bridge.wait(0.5):
            assert result.call_id not in out, f"duplicate result for {result.call_id!r}"
            out[result.call_id] = result
    assert bridge.poll() == [] and bridge.in_flight == 0
    return out


@pytest.fixture
def make_bridge() -> Iterator[Callable[..., RayBridge]]:
    bridges: list[RayBridge] = []

    def make(factory: Callable[[], object], **config: object) -> RayBridge:
        bridge = RayBridge(factory, config=BridgeConfig(**config))  # type: ignore[arg-type]
        bridge.start()
        bridges.append(bridge)
        return bridge

    yield make
    for bridge in bridges:
        bridge.close()


def test_pool_sizing_and_spread(make_bridge: Callable[..., RayBridge]) -> None:
    bridge = make_bridge(
        functools.partial(SleepExecutor, 150),
        batch_max=4,
        pools={EffectKind.MODEL: PoolConfig(size=2), EffectKind.TOOL: PoolConfig(size=1)},
    )
    assert {k: len(p.actors) for k, p in bridge.pools.items()} == {
        EffectKind.MODEL: 2,
        EffectKind.TOOL: 1,
    }
    pids = {ray.get(a.ping.remote()) for p in bridge.pools.values() for a in p.actors}
    assert len(pids) == 3  # one process per actor
    for i in range(8):
        bridge.submit(model_req(f"m{i}"))
    bridge.submit(EffectRequest(call_id="t0", kind=EffectKind.TOOL, target="t"))
    bridge.submit(EffectRequest(call_id="x0", kind=EffectKind.MCP, target="srv/tool"))
    results = drain(bridge, 10)
    model_pids = {results[f"m{i}"].value["pid"] for i in range(8)}
    assert len(model_pids) == 2  # both model actors got batches
    assert results["t0"].ok and results["t0"].value["pid"] not in model_pids
    no_pool = results["x0"].error
    assert no_pool is not None and no_pool.error_type == "ConfigError" and "mcp" in no_pool.message


TRANSPORTS = {
    "channel": {"transport": "channel"},
    "ray-stream": {"transport": "ray", "stream_results": True},
    "ray-batch": {"transport": "ray", "stream_results": False},
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_batching_isolates_failures(make_bridge: Callable[..., RayBridge], transport: str) -> None:
    bridge = make_bridge(
        functools.partial(SleepExecutor, 5),
        batch_max=32,
        batch_window_ms=20,
        pools={EffectKind.MODEL: PoolConfig(size=1, **TRANSPORTS[transport])},  # type: ignore[arg-type]
    )
    n = 60
    for i in range(n):
        bridge.submit(model_req(f"c{i}", echo=i, fail=i % 7 == 3, **{"raise": i % 11 == 5}))
    results = drain(bridge, n)
    for i in range(n):
        r = results[f"c{i}"]
        if i % 7 == 3:
            assert r.error is not None and r.error.error_type == "ToolError"
            assert f"c{i}" in r.error.message
        elif i % 11 == 5:
            assert r.error is not None and r.error.error_type == "RuntimeError"
        else:
            assert r.ok and r.value["echo"] == i and r.attempts == 1
            assert r.usage is not None and r.usage.total_tokens == 5
    # Many calls per Ray call: all 60 ran in at most a few batches.
    stats = ray.get(bridge.pools[EffectKind.MODEL].actors[0].stats.remote())
    assert stats["calls"] == n and stats["batches"] <= 4


def test_slow_call_does_not_hold_back_its_batch_mates(
    make_bridge: Callable[..., RayBridge],
) -> None:
    bridge = make_bridge(
        SleepExecutor, batch_max=8, batch_window_ms=50, pools={EffectKind.MODEL: PoolConfig()}
    )
    started = time.monotonic()
    bridge.submit(model_req("slow", ms=1500))
    for i in range(7):
        bridge.submit(model_req(f"fast{i}", ms=10))
    fast: dict[str, float] = {}
    while len(fast) < 7:
        assert time.monotonic() - started < 1.2, f"fast calls held back: {sorted(fast)}"
        for r in bridge.wait(0.2):
            assert r.call_id != "slow"
            fast[r.call_id] = time.monotonic() - started
    assert bridge.in_flight == 1  # the fast calls' slots are free already
    stats = ray.get(bridge.pools[EffectKind.MODEL].actors[0].stats.remote())
    assert stats["batches"] == 1  # they did share one Ray call
    assert drain(bridge, 1)["slow"].ok


@pytest.mark.parametrize("tick_ms", [0.0, 200.0])
def test_calls_submitted_to_a_busy_bridge_are_sent(
    make_bridge: Callable[..., RayBridge], tick_ms: float
) -> None:
    """While a call is outstanding, `submit` does not wake the bridge thread: it picks new
    calls up itself, within `busy_tick_ms` when no result arrives meanwhile (0: woken)."""
    bridge = make_bridge(
        SleepExecutor, busy_tick_ms=tick_ms, pools={EffectKind.MODEL: PoolConfig(size=1)}
    )
    bridge.submit(model_req("slow", ms=3000))
    time.sleep(0.2)  # sent: the bridge is busy now, and stays so for 3 s
    started = time.monotonic()
    bridge.submit(model_req("fast", ms=10))
    results = bridge.wait(2.0)
    took = time.monotonic() - started
    assert [r.call_id for r in results] == ["fast"], results
    assert took < tick_ms / 1000.0 + 1.0
    assert drain(bridge, 1)["slow"].ok


def test_busy_tick_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="busy_tick_ms"):
        BridgeConfig(busy_tick_ms=-1)


def test_rate_limit_is_honoured(make_bridge: Callable[..., RayBridge]) -> None:
    per_s = 20.0
    admission = AdmissionConfig(
        rate_limits={"fake/m": RateLimit(requests_per_min=per_s * 60, burst_s=0.1)}
    )
    bridge = make_bridge(
        SleepExecutor, pools={EffectKind.MODEL: PoolConfig(size=2, admission=admission)}
    )
    n = 40
    for i in range(n):
        bridge.submit(
            EffectRequest(call_id=f"r{i}", kind=EffectKind.MODEL, target="m", rate_key="fake/m")
        )
    results = drain(bridge, n)
    starts = sorted(r.value["started"] for r in results.values())
    # Two workers, each allowed 10/s with a burst of 1: 40 calls need >= ~1.9 s.
    span = starts[-1] - starts[0]
    assert span >= (n - 2) / per_s * 0.9
    assert (n - 1) / span <= per_s * 1.1
    # Any one-second window holds at most the limit plus the bursts.
    for s in starts:
        assert sum(1 for t in starts if s <= t < s + 1.0) <= per_s + 2


def test_retry_after_is_honoured(make_bridge: Callable[..., RayBridge]) -> None:
    bridge = make_bridge(
        functools.partial(RetryAfterOnceExecutor, 0.4),
        pools={EffectKind.MODEL: PoolConfig(size=1)},
    )
    bridge.submit(model_req("a"))
    result = drain(bridge, 1)["a"]
    assert result.ok and result.attempts == 2
    first, second = result.value
    assert second - first >= 0.4


class _ScriptedProvider(http.server.BaseHTTPRequestHandler):
    """Answers 429 with Retry-After to each call's first request, then 200 with usage."""

    seen: dict[str, float] = {}

    def do_POST(self) -> None:
        import json

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        call_id = body["call_id"]
        if call_id not in self.seen:
            self.seen[call_id] = time.time()
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(
            {"text": f"hi {call_id}", "in": 7, "out": 3, "waited": time.time() - self.seen[call_id]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_http_429_then_200(make_bridge: Callable[..., RayBridge]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat"
        bridge = make_bridge(
            functools.partial(HttpModelExecutor, url), pools={EffectKind.MODEL: PoolConfig()}
        )
        started = time.monotonic()
        for i in range(3):
            bridge.submit(model_req(f"h{i}"))
        results = drain(bridge, 3)
        assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
        for i in range(3):
            r = results[f"h{i}"]
            assert r.ok and r.value == f"hi h{i}" and r.attempts == 2
            assert r.usage is not None and r.usage.total_tokens == 10
            assert r.usage.cost_usd == pytest.approx(0.001)
    finally:
        server.shutdown()
        server.server_close()


def test_deadline_expiry(make_bridge: Callable[..., RayBridge]) -> None:
    bridge = make_bridge(SleepExecutor, pools={EffectKind.MODEL: PoolConfig()})
    bridge.submit(model_req("slow", ms=2000).model_copy(update={"deadline_s": time.time() + 0.3}))
    bridge.submit(model_req("past").model_copy(update={"deadline_s": time.time() - 1}))
    bridge.submit(model_req("fast", ms=10).model_copy(update={"deadline_s": time.time() + 5}))
    started = time.monotonic()
    results = drain(bridge, 3)
    assert time.monotonic() - started < 1.5
    for call_id in ("slow", "past"):
        error = results[call_id].error
        assert error is not None and error.error_type == "DeadlineExceeded"
    assert results["past"].attempts == 0
    assert 250 <= results["slow"].latency_ms < 1000
    assert results["fast"].ok


@pytest.mark.parametrize("transport", ["channel", "ray"])
@pytest.mark.parametrize("resubmit", [True, False])
def test_worker_killed_with_calls_in_flight(
    make_bridge: Callable[..., RayBridge], resubmit: bool, transport: str
) -> None:
    bridge = make_bridge(
        functools.partial(SleepExecutor, 1500),
        batch_max=8,
        pools={
            EffectKind.MODEL: PoolConfig(
                size=1, resubmit_on_worker_loss=resubmit, transport=transport
            )
        },
    )
    actor = bridge.pools[EffectKind.MODEL].actors[0]
    old_pid = ray.get(actor.ping.remote())
    n = 20
    for i in range(n):
        bridge.submit(model_req(f"k{i}"))
    time.sleep(0.5)  # the calls are running on the worker
    assert bridge.in_flight == n
    ray.kill(actor, no_restart=False)
    results = drain(bridge, n, timeout_s=60)
    if resubmit:
        assert all(r.ok for r in results.values())
        assert {r.value["pid"] for r in results.values()} != {old_pid}
        assert bridge.resubmitted == n
    else:
        for r in results.values():
            assert r.error is not None and r.error.error_type == "DeliveryError"
            assert "died" in r.error.message
    # The restarted actor serves new calls.
    bridge.submit(model_req("after", ms=1))
    after = drain(bridge, 1, timeout_s=60)["after"]
    assert after.ok and after.value["pid"] != old_pid


@pytest.mark.parametrize("transport", ["channel", "ray"])
def test_worker_gone_for_good_fails_its_calls(
    make_bridge: Callable[..., RayBridge], transport: str
) -> None:
    """No restart: the calls come back as DeliveryError after `restart_timeout_s`, not never."""
    bridge = make_bridge(
        functools.partial(SleepExecutor, 1500),
        pools={EffectKind.MODEL: PoolConfig(size=1, transport=transport, restart_timeout_s=1.0)},
    )
    n = 6
    bridge.submit_many(model_req(f"g{i}") for i in range(n))
    time.sleep(0.5)
    ray.kill(bridge.pools[EffectKind.MODEL].actors[0], no_restart=True)
    results = drain(bridge, n, timeout_s=60)
    for r in results.values():
        assert r.error is not None and r.error.error_type == "DeliveryError"
        assert "did not come back" in r.error.message


def test_backpressure_bounds_in_flight(make_bridge: Callable[..., RayBridge]) -> None:
    bound = 5
    bridge = make_bridge(
        functools.partial(SleepExecutor, 200),
        max_in_flight=bound,
        pools={EffectKind.MODEL: PoolConfig()},
    )
    n = 20
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, bridge.in_flight)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    block_times = []
    for i in range(n):
        t0 = time.monotonic()
        bridge.submit(model_req(f"b{i}"))
        block_times.append(time.monotonic() - t0)
        assert bridge.in_flight <= bound
    submit_s = time.monotonic() - started
    results = drain(bridge, n)
    stop.set()
    sampler.join()
    assert peak <= bound
    assert max(block_times[:bound]) < 0.1  # below the bound, submit does not block
    assert submit_s >= (n - bound) / bound * 0.2 * 0.8  # beyond it, it waits for completions
    assert max(r.value["peak"] for r in results.values()) <= bound


def test_submit_many_more_than_the_bound(make_bridge: Callable[..., RayBridge]) -> None:
    """One hand-over per run of free slots; beyond the bound it blocks like `submit`."""
    bound = 5
    bridge = make_bridge(
        functools.partial(SleepExecutor, 200),
        max_in_flight=bound,
        pools={EffectKind.MODEL: PoolConfig(size=2)},
    )
    n = 17
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, bridge.in_flight)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    bridge.submit_many(model_req(f"s{i}", echo=i) for i in range(n))
    submit_s = time.monotonic() - started
    results = drain(bridge, n)
    stop.set()
    sampler.join()
    assert peak <= bound
    assert submit_s >= (n - bound) // bound * 0.2 * 0.8  # it waited for completions
    assert all(results[f"s{i}"].ok and results[f"s{i}"].value["echo"] == i for i in range(n))
    assert max(r.value["peak"] for r in results.values()) <= bound


def test_executor_factory_failure_comes_back_per_call(
    make_bridge: Callable[..., RayBridge],
) -> None:
    bridge = make_bridge(broken_factory, pools={EffectKind.MODEL: PoolConfig()})
    bridge.submit_many([model_req("f0"), model_req("f1")])
    results = drain(bridge, 2)
    for r in results.values():
        assert r.error is not None and r.error.error_type == "ValueError"
        assert "fix the workflow definition" in r.error.message


def test_channel_refuses_a_wrong_secret(make_bridge: Callable[..., RayBridge]) -> None:
    bridge = make_bridge(SleepExecutor, pools={EffectKind.MODEL: PoolConfig()})
    actor = bridge.pools[EffectKind.MODEL].actors[0]
    address, secret = ray.get(actor.open_channel.remote())
    assert isinstance(secret, bytes) and len(secret) == 32

    async def intrude() -> list[object]:
        closed: list[object] = []
        got: list[object] = []
        client = await ChannelClient.connect(
            address,
            b"x" * 32,
            lambda _client, items: got.extend(items),
            lambda _client, exc: closed.append(exc),
        )
        client.send([(1, model_req("intruder"))])
        await asyncio.wait_for(client.task, 10)
        assert got == []
        return closed

    closed = asyncio.run(intrude())
    assert len(closed) == 1 and isinstance(closed[0], ConnectionError)
    assert ray.get(actor.stats.remote())["calls"] == 0  # nothing ran
    bridge.submit(model_req("legit"))  # the bridge's own channel still works
    assert drain(bridge, 1)["legit"].ok


def test_close_releases_a_blocked_submitter(make_bridge: Callable[..., RayBridge]) -> None:
    bridge = make_bridge(
        functools.partial(SleepExecutor, 5000),
        max_in_flight=1,
        pools={EffectKind.MODEL: PoolConfig()},
    )
    bridge.submit(model_req("first"))
    raised: list[BaseException] = []

    def second() -> None:
        try:
            bridge.submit(model_req("second"))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            raised.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # blocked: the one slot is taken
    bridge.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], UserError)
    with pytest.raises(UserError, match="start"):
        bridge.submit(model_req("third"))


def test_ray_head_down_gives_the_fix() -> None:
    bridge = RayBridge(SleepExecutor, config=BridgeConfig(ray_address="127.0.0.1:1"))
    with pytest.raises(ConfigError, match="ray start --head") as info:
        bridge.start()
    assert "'127.0.0.1:1'" in str(info.value)


LOOPBACK = {"127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"}


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_ray_started_by_the_bridge_path_stays_on_loopback(
    make_bridge: Callable[..., RayBridge],
) -> None:
    bridge = make_bridge(
        functools.partial(SleepExecutor, 1), pools={EffectKind.MODEL: PoolConfig()}
    )
    bridge.submit(model_req("lo"))
    assert drain(bridge, 1)["lo"].ok
    ours = _descendants(os.getpid())
    sockets = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout
    checked = 0
    for line in sockets.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if not pids & ours:
            continue
        local, peer = line.split()[3:5]
        checked += 1
        assert local.rsplit(":", 1)[0] in LOOPBACK, line
        assert peer.rsplit(":", 1)[0] in LOOPBACK | {"0.0.0.0", "*", "[::]"}, line
    assert checked > 0  # Ray's processes do hold sockets: the check looked at them
