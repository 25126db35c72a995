"""`up`, `down` and `status` of the whole local stack, used by the CLI and by test fixtures.

Why a separate module: the CLI stays a thin layer of flags and printing, and the order and
pre-checks live in one place. `up` checks everything it can before it starts anything (every
port, Java, the jars), so a bad set-up fails in a second with one line, not after a broker
started. Kafka and Ray start in parallel: each spends most of its start waiting on its own
JVM/raylet, and on a 2-core machine that overlap saves tens of seconds.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType

from flink_bridge.stack import flink_cluster, jars, kafka_broker, ray_head
from flink_bridge.stack.config import StackConfig
from flink_bridge.stack.errors import StackError
from flink_bridge.stack.health import ComponentStatus, Health, check_port_free
from flink_bridge.stack.java import find_java

__all__ = [
    "MODEL_MODULE",
    "ModelNotInstalledError",
    "StopResult",
    "down",
    "status",
    "up",
]

_log = logging.getLogger("flink_actors.flink_bridge.stack")

MODEL_MODULE = "flink_bridge.local_model"


class ModelNotInstalledError(StackError):
    """`up --model` without the local model module."""

    def __init__(self) -> None:
        super().__init__(
            f"the local model server is not installed (no module {MODEL_MODULE!r}); "
            "install the local-model extra or run 'flink-actors up' without --model"
        )


@dataclass(frozen=True)
class StopResult:
    """What `down` did for one component."""

    name: str
    was_running: bool


def _model_module() -> ModuleType | None:
    if importlib.util.find_spec(MODEL_MODULE) is None:
        return None
    return importlib.import_module(MODEL_MODULE)


def _precheck_ports(config: StackConfig, *, flink_cluster_on: bool) -> None:
    """Fail before starting anything if a port of a component that is not running is taken."""
    if kafka_broker.kafka_pid_file(config).live() is None:
        check_port_free(config.kafka_port, key="kafka_port", component="Kafka")
        check_port_free(
            config.kafka_controller_port,
            key="kafka_controller_port",
            component="Kafka controller",
        )
    if ray_head.ray_pid_file(config).live() is None:
        check_port_free(config.ray_port, key="ray_port", component="Ray GCS")
        check_port_free(
            config.ray_client_port, key="ray_client_port", component="Ray client server"
        )
    if flink_cluster_on and flink_cluster.status_flink_cluster(config).health is Health.DOWN:
        check_port_free(config.flink_rest_port, key="flink_rest_port", component="Flink REST")
        check_port_free(
            config.flink_rpc_port, key="flink_rpc_port", component="Flink JobManager RPC"
        )


def up(
    config: StackConfig,
    *,
    flink_cluster_on: bool = False,
    model: bool = False,
    fetch_jars: bool = True,
) -> list[ComponentStatus]:
    """Start Kafka and Ray (and optionally a Flink cluster and the model); idempotent.

    Returns one status per component once each answers. Raises a `StackError` subclass with a
    one-line message naming the fix.
    """
    model_mod = _model_module() if model else None
    if model and model_mod is None:
        raise ModelNotInstalledError()
    # Cheap checks first (ports, Java), then the jars (which may need a mvn run).
    _precheck_ports(config, flink_cluster_on=flink_cluster_on)
    find_java()
    if fetch_jars:
        jars.ensure_jars()
    jars.kafka_broker_jars()
    jars.flink_connector_jars()
    config.state_dir.mkdir(parents=True, exist_ok=True)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="stack-up") as pool:
        kafka_future = pool.submit(kafka_broker.start_kafka, config)
        ray_future = pool.submit(ray_head.start_ray, config)
        results = [kafka_future.exception(), ray_future.exception()]
    errors = [e for e in results if e is not None]
    if errors:
        raise errors[0]
    statuses = [kafka_future.result(), ray_future.result()]
    if flink_cluster_on:
        statuses.append(flink_cluster.start_flink_cluster(config))
    else:
        statuses.append(flink_cluster.status_flink_cluster(config))
    if model_mod is not None:
        info = model_mod.start(config.state_dir, config.model_port)
        statuses.append(
            ComponentStatus(
                name="model",
                health=Health.UP,
                address=str(info.base_url),
                pid=int(info.pid),
                detail=str(getattr(info, "model", "")),
            )
        )
    return statuses


def down(config: StackConfig) -> list[StopResult]:
    """Stop every component this state dir started (model, Flink, Ray, Kafka)."""
    results: list[StopResult] = []
    model_mod = _model_module()
    if model_mod is not None:
        results.append(StopResult("model", bool(model_mod.stop(config.state_dir))))
    results.append(StopResult("flink cluster", flink_cluster.stop_flink_cluster(config)))
    results.append(StopResult("ray", ray_head.stop_ray(config)))
    results.append(StopResult("kafka", kafka_broker.stop_kafka(config)))
    return results


def _model_status(config: StackConfig) -> ComponentStatus:
    model_mod = _model_module()
    address = f"http://127.0.0.1:{config.model_port}/v1"
    if model_mod is None:
        return ComponentStatus(name="model", health=Health.NOT_INSTALLED, address=address)
    try:
        info = model_mod.status(config.state_dir)
    except Exception as exc:  # a broken optional component must not break `status`
        _log.warning("model status failed: %s", exc)
        return ComponentStatus(name="model", health=Health.DOWN, address=address, detail=str(exc))
    if info is None:
        return ComponentStatus(name="model", health=Health.DOWN, address=address)
    return ComponentStatus(
        name="model",
        health=Health.UP,
        address=str(info.base_url),
        pid=int(info.pid),
        detail=str(getattr(info, "model", "")),
    )


def status(config: StackConfig) -> list[ComponentStatus]:
    """One status per component: kafka, ray, flink cluster, model."""
    return [
        kafka_broker.status_kafka(config),
        ray_head.status_ray(config),
        flink_cluster.status_flink_cluster(config),
        _model_status(config),
    ]
