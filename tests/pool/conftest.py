"""Fixtures for the Ray pool tests: one loopback Ray for the module, shut down after."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Ray's local-only mode (everything on 127.0.0.1), set before anything imports ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


_STACK_RAY_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A small Ray bound to 127.0.0.1 (2 CPUs, no dashboard), per test module, so modules of
    other folders in the same pytest run find no Ray of ours initialised in the process."""
    ray = pytest.importorskip("ray")
    import pool_executors  # on sys.path through pytest's rootdir insertion

    # Workers cannot import the tests directory: ship the test executors by value.
    ray.cloudpickle.register_pickle_by_value(pool_executors)
    from flink_bridge.ray_pool import connect_ray, release_ray

    # The session's stack fixture (tests/conftest.py) may have put its head's client env in
    # os.environ; with RAY_ADDRESS set, ray.init would join that head instead of starting the
    # small local Ray these tests size their pools for.
    saved = {k: os.environ.pop(k) for k in _STACK_RAY_VARS if k in os.environ}
    try:
        # The bridge's own start-up path (loopback, no dashboard); bridges in the tests join it.
        connect_ray(
            address=None,
            namespace="flink-actors-tests",
            num_cpus=2,
            log_to_driver=False,
            connect_timeout_s=5.0,
        )
        yield
        release_ray()
    finally:
        os.environ.update(saved)
