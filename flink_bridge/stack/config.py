"""Configuration of the embedded local stack (Kafka broker, Ray head, Flink cluster, model).

Why one small frozen object: every component reads its ports and folders from the same place,
and error messages can name the exact key to change. Values are layered, later wins:

    defaults  <  flink-actors.toml in the project dir  <  FLINK_ACTORS_<KEY> env vars  <  CLI flags

Keys are the field names of `StackConfig` (flat, e.g. ``kafka_port = 19092`` in the toml file;
``FLINK_ACTORS_KAFKA_PORT=19092`` in the environment; ``--kafka-port 19092`` on the CLI).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols.errors import ConfigError

__all__ = [
    "CONFIG_FILE_NAME",
    "ENV_PREFIX",
    "StackConfig",
    "config_key_hint",
    "load_config",
]

CONFIG_FILE_NAME = "flink-actors.toml"
ENV_PREFIX = "FLINK_ACTORS_"


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Where the local stack keeps its state and which loopback ports it uses.

    All services bind to 127.0.0.1 only; there is deliberately no host setting.
    """

    state_dir: Path = field(default_factory=lambda: Path(".flink-actors"))
    """Project-local folder for data, logs, pid files and generated config."""
    kafka_port: int = 9092
    """Kafka PLAINTEXT listener (bootstrap servers are 127.0.0.1:<kafka_port>)."""
    kafka_controller_port: int = 9093
    """Kafka KRaft CONTROLLER listener."""
    kafka_heap_mb: int = 512
    """Kafka broker JVM heap (-Xmx)."""
    ray_port: int = 6379
    """Ray head GCS port (the address clients pass to ray.init)."""
    ray_client_port: int = 10001
    """Ray client server port on the head."""
    ray_num_cpus: int = 2
    """CPUs the Ray head offers to actors."""
    ray_object_store_mb: int = 512
    """Ray's shared-memory object store. Calls travel over the pools' own channels, not
    through it, so a small store is enough; Ray's default (30% of RAM) would need as much
    room in /dev/shm, which containers often keep small."""
    flink_rest_port: int = 8081
    """Standalone Flink cluster REST/web port (only with `up --flink-cluster`)."""
    flink_rpc_port: int = 6123
    """Standalone Flink JobManager RPC port."""
    flink_task_slots: int = 2
    """Task slots of the standalone TaskManager."""
    model_port: int = 8765
    """Port of the local model server (only with `up --model`)."""
    startup_timeout_s: float = 180.0
    """How long `up` waits for each service to answer before giving up."""
    stop_timeout_s: float = 30.0
    """How long `down` waits after SIGTERM before it sends SIGKILL."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_port"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ConfigError(f.name, f"{value!r} is not an integer", _fix(f.name))
                if not 1024 <= value <= 65535:
                    raise ConfigError(f.name, f"port {value} is outside 1024..65535", _fix(f.name))
        for name in ("kafka_heap_mb", "ray_num_cpus", "ray_object_store_mb", "flink_task_slots"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, f"{value!r} is not a positive integer", _fix(name))
        for name in ("startup_timeout_s", "stop_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(name, f"{value!r} is not a positive number", _fix(name))
        if not isinstance(self.state_dir, Path):
            raise ConfigError("state_dir", f"{self.state_dir!r} is not a path", _fix("state_dir"))
        ports = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        seen: dict[int, str] = {}
        for name, value in ports:
            if not name.endswith("_port"):
                continue
            if value in seen:
                raise ConfigError(name, f"port {value} is also used by {seen[value]!r}", _fix(name))
            seen[value] = name

    @property
    def kafka_bootstrap(self) -> str:
        """Bootstrap servers string for Kafka clients."""
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def ray_address(self) -> str:
        """Address a Ray driver passes to ``ray.init(address=...)``."""
        return f"127.0.0.1:{self.ray_port}"

    @property
    def flink_rest_address(self) -> str:
        """REST address of the standalone Flink cluster."""
        return f"127.0.0.1:{self.flink_rest_port}"

    def resolved(self, base: Path | None = None) -> StackConfig:
        """This config with `state_dir` made absolute (relative to `base`, default cwd)."""
        root = base if base is not None else Path.cwd()
        state = self.state_dir if self.state_dir.is_absolute() else root / self.state_dir
        return dataclasses.replace(self, state_dir=state.resolve())


def config_key_hint(key: str) -> str:
    """How a user changes `key`: the CLI flag, the env var and the toml key."""
    return _fix(key)


def _fix(key: str) -> str:
    flag = "--" + key.replace("_", "-")
    return f"set it with {flag}, {ENV_PREFIX}{key.upper()} or {key!r} in {CONFIG_FILE_NAME}"


_FIELDS = {f.name: f for f in dataclasses.fields(StackConfig)}


def _coerce(key: str, raw: Any) -> Any:
    """Convert a toml/env/CLI value to the field's type; ConfigError names the key."""
    default = getattr(StackConfig(), key)
    try:
        if isinstance(default, Path):
            if not isinstance(raw, str | Path) or str(raw) == "":
                raise ValueError
            return Path(raw).expanduser()
        if isinstance(default, bool):
            raise ValueError
        if isinstance(default, int):
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw) if not isinstance(raw, str) else int(raw.strip(), 10)
        if isinstance(default, float):
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
    except (TypeError, ValueError):
        kind = type(default).__name__ if not isinstance(default, Path) else "path"
        raise ConfigError(key, f"{raw!r} is not a valid {kind}", _fix(key)) from None
    return raw


def load_config(
    project_dir: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> StackConfig:
    """Build the config from defaults < toml < env < `overrides` (CLI flags; None = not given).

    The returned config has an absolute `state_dir` (relative paths are taken from
    `project_dir`, default the current directory).
    """
    root = (project_dir if project_dir is not None else Path.cwd()).resolve()
    values: dict[str, Any] = {}

    toml_path = root / CONFIG_FILE_NAME
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                CONFIG_FILE_NAME, f"cannot be parsed ({exc})", f"fix the syntax in {toml_path}"
            ) from exc
        section = data.get("stack", data)
        for key, raw in section.items():
            if key not in _FIELDS:
                raise ConfigError(
                    key,
                    f"unknown key in {toml_path}",
                    f"use one of {sorted(_FIELDS)}",
                )
            values[key] = _coerce(key, raw)

    env = os.environ if environ is None else environ
    for key in _FIELDS:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None and raw != "":
            values[key] = _coerce(key, raw)

    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(key, "unknown setting", f"use one of {sorted(_FIELDS)}")
        values[key] = _coerce(key, raw)

    return StackConfig(**values).resolved(root)
