"""Joining a running Ray head (as a Flink job does): loopback, token auth, shared named pools."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env_without_session_ray() -> dict[str, str]:
    """This module's head and clients use Ray's default token; a stack fixture of the same
    pytest session may have put another head's address and token path in os.environ."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head of our own on 127.0.0.1 (local-only mode), stopped by its process group."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the ray CLI is not installed next to this Python")
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-pool-head-")
    env = _env_without_session_ray()
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "the Ray head did not come up"
                time.sleep(0.5)
        time.sleep(2.0)  # let the raylet register with the GCS
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # our own group: ray start and what it spawned
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_bridges_join_a_head_and_share_named_pools(ray_head: str) -> None:
    script = textwrap.dedent(
        f"""
        import functools, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import ray, pool_executors
        ray.cloudpickle.register_pickle_by_value(pool_executors)
        from pool_executors import SleepExecutor
        from actors.effects import EffectKind, EffectRequest
        from flink_bridge.ray_pool import BridgeConfig, PoolConfig, RayBridge

        def config():
            return BridgeConfig(ray_address={ray_head!r}, name_prefix="wf-test",
                                pools={{EffectKind.MODEL: PoolConfig(size=1)}})
        a = RayBridge(functools.partial(SleepExecutor, 1), config=config())
        b = RayBridge(functools.partial(SleepExecutor, 1), config=config())
        a.start(); b.start()
        assert ray.get_runtime_context().gcs_address == {ray_head!r}
        pids = set()
        for bridge in (a, b):
            bridge.submit(EffectRequest(call_id="x", kind=EffectKind.MODEL, target="m"))
            (result,) = bridge.wait(30)
            assert result.ok, result
            pids.add(result.value["pid"])
        assert len(pids) == 1, pids  # one named actor serves both subtasks
        b.close(); a.close()
        print("JOINED", flush=True)
        """
    )
    env = _env_without_session_ray()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env
    )
    assert "JOINED" in proc.stdout, proc.stderr[-3000:]
