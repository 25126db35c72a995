"""Starting Ray the way the Flink operator does: std streams without fileno, loopback only."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest

from flink_bridge.ray_pool import real_std_streams


class StdErrCatcher:
    """What PyFlink thread mode (Pemja) puts in sys.stdout/sys.stderr: no fileno()."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_real_std_streams_swaps_only_while_needed() -> None:
    saved = sys.stdout, sys.stderr
    catcher = StdErrCatcher()
    sys.stdout = catcher  # type: ignore[assignment]
    try:
        with real_std_streams():
            assert isinstance(sys.stdout.fileno(), int)
            assert sys.stderr is saved[1]  # a stream with a real fileno is left alone
        assert sys.stdout is catcher
    finally:
        sys.stdout, sys.stderr = saved
    with real_std_streams():  # nothing to do: the same objects stay
        assert sys.stdout is saved[0]


def test_real_std_streams_restores_after_an_error() -> None:
    saved = sys.stdout
    catcher = io.StringIO()  # StringIO.fileno() raises UnsupportedOperation
    sys.stdout = catcher
    try:
        with pytest.raises(RuntimeError), real_std_streams():
            raise RuntimeError("boom")
        assert sys.stdout is catcher
    finally:
        sys.stdout = saved


@pytest.mark.integration
def test_connect_ray_works_with_pemja_like_streams() -> None:
    """`ray.init` fails with "'StdErrCatcher' object has no attribute 'fileno'" under such
    streams; `connect_ray` (used by RayBridge.start) does not."""
    script = textwrap.dedent(
        """
        import sys
        class StdErrCatcher:
            def write(self, s): return len(s)
            def flush(self): pass
        real = sys.__stderr__
        sys.stdout = StdErrCatcher(); sys.stderr = StdErrCatcher()
        from flink_bridge.ray_pool import connect_ray
        import ray
        assert connect_ray(address=None, namespace="t", num_cpus=1, log_to_driver=False,
                           connect_timeout_s=5.0)
        assert type(sys.stdout).__name__ == "StdErrCatcher"
        assert ray.get(ray.put(41)) + 1 == 42
        ray.shutdown()
        real.write("CONNECTED\\n")
        """
    )
    # A fresh local Ray: drop the client env a stack fixture of this session may have set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env
    )
    assert "CONNECTED" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.integration
def test_bridges_of_one_process_share_the_ray_one_of_them_started() -> None:
    """A TaskManager runs every agent operator of a job in one interpreter. The bridge that
    started Ray closing first (its bounded input ended) must leave Ray, and the other bridge's
    workers, running: their calls still come back, and the last close shuts Ray down."""
    script = textwrap.dedent(
        """
        import sys
        import ray
        from actors.effects import EffectKind, EffectRequest, EffectResult
        from flink_bridge.ray_pool import BridgeConfig, PoolConfig, RayBridge

        class Echo:
            async def execute(self, request):
                return EffectResult(call_id=request.call_id, value=request.payload["x"])

        def bridge():
            config = BridgeConfig(pools={EffectKind.MODEL: PoolConfig(size=1)}, num_cpus=2)
            b = RayBridge(Echo, config=config)
            b.start()
            return b

        def call(b, name):
            b.submit(EffectRequest(call_id=name, kind=EffectKind.MODEL, target="m",
                                   payload={"x": name}))
            results = b.wait(60.0)
            assert [r.value for r in results] == [name], results

        first, second = bridge(), bridge()
        call(first, "a")
        call(second, "b")
        first.close()
        assert ray.is_initialized()
        call(second, "c")  # its worker actor is alive and answers
        second.close()
        assert not ray.is_initialized()
        sys.stderr.write("SHARED\\n")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=env
    )
    assert "SHARED" in proc.stderr, proc.stderr[-3000:]


def test_actors_admission_does_not_import_ray() -> None:
    code = "import sys, actors.admission; assert 'ray' not in sys.modules; print('clean')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "clean", proc.stderr
