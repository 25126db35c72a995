"""Session fixtures that start the real local stack for integration tests, and stop it after.

Use them by name in any test (mark the test ``@pytest.mark.integration``):

- ``kafka`` -> `KafkaClient`: ``kafka.bootstrap_servers``, ``kafka.create_topics(names,
  partitions)``, ``kafka.produce(topic, records)``, ``kafka.consume(topic, n, timeout,
  read_committed=True)``; ``kafka_bootstrap`` -> the bootstrap string alone.
- ``ray_head`` -> `RayHead` (address + the env a client needs); the fixture also puts that env
  into ``os.environ``, so ``ray.init()`` (or ``ray.init(address=ray_head.address)``) in the
  test process joins the head with its token.
- ``local_stack`` -> `LocalStack` (both, started in parallel: the cheapest way to get both).
- ``stack_config`` -> the `StackConfig` (temp state dir, free loopback ports).

Each service starts at most once per session, on first use, in a fresh temp dir with free
ports, and is stopped (by pid) at the end of the session. Set FLINK_ACTORS_KEEP_TEST_STATE=1
to keep the temp dir (logs) for a look after the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported lazily: unit tests must not need psutil, confluent-kafka or ray
    from flink_bridge.stack.config import StackConfig
    from flink_bridge.stack.kafka_client import KafkaClient


@dataclass(frozen=True)
class RayHead:
    """A running Ray head: `address` for ray.init and `env` for client processes."""

    address: str
    env: dict[str, str]
    pid: int | None


@dataclass(frozen=True)
class LocalStack:
    """Kafka + Ray of this test session."""

    config: StackConfig
    kafka: KafkaClient
    ray: RayHead


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all sockets held until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


class _SessionStack:
    """Starts each service once, on demand, and stops whatever it started."""

    def __init__(self) -> None:
        from flink_bridge.stack.config import StackConfig

        # Short path: Ray's unix sockets live under the state dir and must stay < 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="fa-test-", dir="/tmp"))
        ports = _free_ports(8)
        self.config = StackConfig(
            state_dir=self.root,
            kafka_port=ports[0],
            kafka_controller_port=ports[1],
            ray_port=ports[2],
            ray_client_port=ports[3],
            flink_rest_port=ports[4],
            flink_rpc_port=ports[5],
            model_port=ports[6],
            ray_num_cpus=2,
            startup_timeout_s=300.0,
            stop_timeout_s=20.0,
        )
        self._lock = threading.Lock()
        self._kafka: KafkaClient | None = None
        self._ray: RayHead | None = None
        self._saved_env: dict[str, str | None] = {}

    def kafka(self) -> KafkaClient:
        with self._lock:
            if self._kafka is None:
                from flink_bridge.stack import jars, kafka_broker
                from flink_bridge.stack.kafka_client import KafkaClient

                jars.ensure_jars()
                kafka_broker.start_kafka(self.config)
                self._kafka = KafkaClient(self.config.kafka_bootstrap)
            return self._kafka

    def ray(self) -> RayHead:
        from flink_bridge.stack import ray_head as ray_head_mod
        from flink_bridge.stack.health import Health

        with self._lock:
            if (
                self._ray is not None
                and ray_head_mod.status_ray(self.config).health is not Health.UP
            ):
                # Say why in the run's warnings summary, and give the next tests a live head.
                report = ray_head_mod.exit_report(self.config)
                message = f"the session's Ray head died ({report}); starting another"
                warnings.warn(message, stacklevel=2)
                ray_head_mod.stop_ray(self.config)
                self._ray = None
            if self._ray is None:
                status = ray_head_mod.start_ray(self.config)
                env = ray_head_mod.connect_env(self.config)
                for key, value in env.items():
                    self._saved_env.setdefault(key, os.environ.get(key))
                    os.environ[key] = value
                self._ray = RayHead(address=self.config.ray_address, env=env, pid=status.pid)
            return self._ray

    def both(self) -> tuple[KafkaClient, RayHead]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            kafka_future = pool.submit(self.kafka)
            ray_future = pool.submit(self.ray)
            return kafka_future.result(), ray_future.result()

    def close(self) -> None:
        from flink_bridge.stack import kafka_broker
        from flink_bridge.stack import ray_head as ray_head_mod

        if self._ray is not None:
            with contextlib.suppress(Exception):
                import ray

                if ray.is_initialized():
                    ray.shutdown()
            ray_head_mod.stop_ray(self.config)
            for key, old in self._saved_env.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
        if self._kafka is not None:
            kafka_broker.stop_kafka(self.config)
        if os.environ.get("FLINK_ACTORS_KEEP_TEST_STATE") != "1":
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def _session_stack() -> Iterator[_SessionStack]:
    stack = _SessionStack()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def stack_config(_session_stack: _SessionStack) -> StackConfig:
    """The session's stack config: temp state dir, free loopback ports."""
    return _session_stack.config


@pytest.fixture(scope="session")
def kafka(_session_stack: _SessionStack) -> KafkaClient:
    """A running single-node Kafka broker on 127.0.0.1 (started once per session)."""
    return _session_stack.kafka()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka: KafkaClient) -> str:
    """Bootstrap servers string of the session's broker, e.g. ``127.0.0.1:41234``."""
    return kafka.bootstrap_servers


@pytest.fixture
def ray_head(_session_stack: _SessionStack) -> RayHead:
    """A running token-authenticated Ray head on 127.0.0.1; its env is in os.environ.

    Started once per session; checked before each test that asks for it (and started again,
    with a warning that quotes Ray's exit report, if it died).
    """
    return _session_stack.ray()


@pytest.fixture
def local_stack(_session_stack: _SessionStack) -> LocalStack:
    """Kafka and Ray, started in parallel."""
    kafka_client, head = _session_stack.both()
    return LocalStack(config=_session_stack.config, kafka=kafka_client, ray=head)
