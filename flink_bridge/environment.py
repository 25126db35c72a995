"""The Flink execution environment flink-actors jobs run in.

Choices, with the numbers behind them in docs/architecture.md:
- Python runs in `thread` mode (Pemja, inside the JVM): 10x the records/s of `process` mode
  on a keyed job here. Thread mode has no AsyncFunction, so the agent operator dispatches calls
  to a bridge and polls results from keyed timers.
- The embedded interpreter does not see the driver's virtualenv unless PYTHONPATH says so; it
  must be set before the JVM gateway starts, so it is set here, from the driver's `sys.path`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from protocols.errors import ConfigError

__all__ = ["RuntimeConfig", "create_environment", "prepare_python_path"]


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """How an agent job runs. Every field has a working default for the local mini-cluster."""

    parallelism: int = 1
    checkpoint_interval_ms: int | None = 2_000
    state_backend: Literal["hashmap", "rocksdb"] = "hashmap"
    checkpoint_dir: str | None = None
    execution_mode: Literal["thread", "process"] = "thread"
    bundle_size: int = 100
    bundle_time_ms: int = 5
    poll_interval_ms: int = 5
    """The longest a key with calls in flight waits between two looks for their results
    (its first look is timed by the calls' observed latency)."""
    max_in_flight: int = 200
    python_operator_chaining: bool = True
    """Fuse consecutive Python operators into one (no serialization between them)."""
    jvm_args: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)
    """JVM options of the local mini-cluster (used when `JVM_ARGS` is not set). The default
    keeps the JIT to its quick tier: on 2 cores the optimizing compiler took a third of the
    TaskManager's CPU in the first minutes of a job, while the Java share of a turn is small
    (docs/architecture.md). Use ``()`` for the JVM's defaults."""
    restart_attempts: int = 3
    jars: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parallelism < 1:
            raise ConfigError(
                "parallelism", f"must be >= 1, got {self.parallelism}", "use 1 or more"
            )
        if self.checkpoint_interval_ms is not None and self.checkpoint_interval_ms < 10:
            raise ConfigError(
                "checkpoint_interval_ms",
                f"{self.checkpoint_interval_ms} ms is too short",
                "use 10 ms or more, or None to turn checkpointing off",
            )
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight", "must be >= 1", "use e.g. 200")
        if self.poll_interval_ms < 1:
            raise ConfigError("poll_interval_ms", "must be >= 1", "use e.g. 5")


def prepare_python_path() -> None:
    """Make the driver's import path visible to Python running inside the JVM."""
    paths = [p for p in sys.path if p and Path(p).exists()]
    # An editable install finds the project through an import hook that a .pth file installs;
    # PYTHONPATH entries are not scanned for .pth files, so name the project root outright.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in paths:
        paths.insert(0, root)
    cwd = os.getcwd()
    if cwd not in paths:
        paths.insert(0, cwd)
    existing = os.environ.get("PYTHONPATH", "")
    merged = [*paths, *[p for p in existing.split(os.pathsep) if p and p not in paths]]
    os.environ["PYTHONPATH"] = os.pathsep.join(merged)


def create_environment(config: RuntimeConfig | None = None) -> Any:
    """A `StreamExecutionEnvironment` configured for agent jobs."""
    from pyflink.common import Configuration
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment

    config = config or RuntimeConfig()
    prepare_python_path()
    if config.jvm_args and "JVM_ARGS" not in os.environ:
        os.environ["JVM_ARGS"] = " ".join(config.jvm_args)  # read when the local JVM starts
    conf = Configuration()
    conf.set_string("python.execution-mode", config.execution_mode)
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    conf.set_string("python.fn-execution.bundle.size", str(config.bundle_size))
    conf.set_string("python.fn-execution.bundle.time", str(config.bundle_time_ms))
    conf.set_string("state.backend.type", config.state_backend)
    conf.set_string(
        "python.operator-chaining.enabled", str(config.python_operator_chaining).lower()
    )
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", str(config.restart_attempts))
    conf.set_string("restart-strategy.fixed-delay.delay", "1 s")
    conf.set_string("rest.bind-address", "127.0.0.1")
    conf.set_string("rest.address", "127.0.0.1")
    conf.set_string("jobmanager.bind-host", "127.0.0.1")
    conf.set_string("taskmanager.bind-host", "127.0.0.1")
    conf.set_string("taskmanager.host", "127.0.0.1")
    if config.checkpoint_dir:
        conf.set_string("execution.checkpointing.dir", config.checkpoint_dir)
    restore_from = os.environ.get("FLINK_ACTORS_RESTORE_FROM")  # set by `run --from-savepoint`
    if restore_from:
        conf.set_string("execution.state-recovery.path", restore_from)
    for key, value in config.extra.items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(config.parallelism)
    if config.checkpoint_interval_ms:
        env.enable_checkpointing(config.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    if config.jars:
        env.add_jars(*config.jars)
    return env
