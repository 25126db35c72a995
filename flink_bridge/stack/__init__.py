"""The embedded local stack: a Kafka broker, a Ray head and (optionally) a Flink cluster.

Everything binds to 127.0.0.1. `flink-actors up/down/status` drive it; tests use the same
functions through the fixtures in ``tests/conftest.py``. Modules, one concept each:

- `config`: `StackConfig` and `load_config` (defaults < flink-actors.toml < env < flags)
- `jars`: `ensure_jars`, `flink_connector_jars`, `flink_connector_jar_urls`
- `kafka_broker`, `ray_head` (`connect_env`), `flink_cluster`: one service each
- `stack`: `up`, `down`, `status` of the whole stack
- `kafka_client`: `KafkaClient` (create topics, produce, consume read_committed)
- `loopback`: `non_loopback_sockets` for the loopback-only checks
- `procs`, `health`, `java`, `errors`: pid files, port checks, Java lookup, one-line errors
"""

from __future__ import annotations

from flink_bridge.stack.config import StackConfig, load_config
from flink_bridge.stack.errors import (
    JarsMissingError,
    JavaNotFoundError,
    MavenNotFoundError,
    PortInUseError,
    StackError,
    StackStartError,
    StalePidFileError,
)
from flink_bridge.stack.jars import ensure_jars, flink_connector_jar_urls, flink_connector_jars
from flink_bridge.stack.ray_head import connect_env

__all__ = [
    "JarsMissingError",
    "JavaNotFoundError",
    "MavenNotFoundError",
    "PortInUseError",
    "StackConfig",
    "StackError",
    "StackStartError",
    "StalePidFileError",
    "connect_env",
    "ensure_jars",
    "flink_connector_jar_urls",
    "flink_connector_jars",
    "load_config",
]
