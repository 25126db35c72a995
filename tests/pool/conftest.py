"""Fixtures for the Ray pool tests: one loopback Ray for the module, shut down after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A small Ray bound to 127.0.0.1 (2 CPUs, no dashboard), shared by the pool tests."""
    ray = pytest.importorskip("ray")
    import pool_executors  # on sys.path through pytest's rootdir insertion

    # Workers cannot import the tests directory: ship the test executors by value.
    ray.cloudpickle.register_pickle_by_value(pool_executors)
    owns = not ray.is_initialized()
    if owns:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            namespace="flink-actors-tests",
            log_to_driver=False,
            configure_logging=False,
        )
    yield
    if owns:
        ray.shutdown()
