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


def test_actors_admission_does_not_import_ray() -> None:
    code = "import sys, actors.admission; assert 'ray' not in sys.modules; print('clean')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "clean", proc.stderr
