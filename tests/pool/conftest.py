"""Fixtures for the Ray pool tests: one loopback Ray for the module, shut down after."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Ray's local-only mode (everything on 127.0.0.1), set before anything imports ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A small Ray bound to 127.0.0.1 (2 CPUs, no dashboard), shared by the pool tests."""
    ray = pytest.importorskip("ray")
    import pool_executors  # on sys.path through pytest's rootdir insertion

    # Workers cannot import the tests directory: ship the test executors by value.
    ray.cloudpickle.register_pickle_by_value(pool_executors)
    from flink_bridge.ray_pool import connect_ray

    # The bridge's own start-up path (loopback, no dashboard); bridges in the tests join it.
    owns = connect_ray(
        address=None,
        namespace="flink-actors-tests",
        num_cpus=2,
        log_to_driver=False,
        connect_timeout_s=5.0,
    )
    yield
    if owns:
        ray.shutdown()
