"""A single-node Apache Kafka broker in KRaft mode, run from the jars in ``jars/lib/kafka``.

Why embedded: the runtime's exactly-once path (transactional sink, read_committed readers)
needs a real broker, and a local JVM started from Maven jars needs no Docker and no download
at test time. The broker and its controller listen on 127.0.0.1 only; data lives under
``<state_dir>/kafka/data`` and survives `stop` + `start`.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

from flink_bridge.stack import jars as jars_mod
from flink_bridge.stack.config import StackConfig
from flink_bridge.stack.errors import StackStartError
from flink_bridge.stack.health import (
    LOOPBACK,
    ComponentStatus,
    Health,
    check_port_free,
    port_open,
    recorded_status,
    wait_until,
)
from flink_bridge.stack.java import find_java
from flink_bridge.stack.procs import PidFile, start_process, stop_process, stop_recorded

__all__ = [
    "broker_answers",
    "kafka_dir",
    "kafka_log",
    "kafka_pid_file",
    "start_kafka",
    "status_kafka",
    "stop_kafka",
]

_log = logging.getLogger("flink_actors.flink_bridge.stack")

NAME = "kafka"


def kafka_dir(config: StackConfig) -> Path:
    """Folder with the broker's data, generated config and logs."""
    return config.state_dir / "kafka"


def kafka_log(config: StackConfig) -> Path:
    """The broker's server log (log4j2 output)."""
    return kafka_dir(config) / "logs" / "server.log"


def kafka_pid_file(config: StackConfig) -> PidFile:
    """Pid file of the broker JVM."""
    return PidFile(config.state_dir / "run" / "kafka.pid")


def _server_properties(config: StackConfig, data_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{config.kafka_controller_port}",
        "listeners": (
            f"PLAINTEXT://{LOOPBACK}:{config.kafka_port},"
            f"CONTROLLER://{LOOPBACK}:{config.kafka_controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{config.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        # Fewer internal partitions and threads: faster first start on a small machine.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.num.partitions": "5",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        # Flink's exactly-once Kafka sink defaults to 1 h transactions; allow them.
        "transaction.max.timeout.ms": "3600000",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def _log4j2_properties(log_file: Path) -> str:
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = RollingFile",
            "appender.file.name = file",
            f"appender.file.fileName = {log_file}",
            f"appender.file.filePattern = {log_file}.%i",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 20MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 3",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = file",
            "logger.state.name = state.change.logger",
            "logger.state.level = WARN",
            "",
        ]
    )


def _jvm_args(config: StackConfig, log4j: Path, logs: Path) -> list[str]:
    return [
        f"-Xmx{config.kafka_heap_mb}m",
        "-Xms64m",
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={logs}",
    ]


def broker_answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True if the broker at `bootstrap` answers a metadata request."""
    host, _, port = bootstrap.rpartition(":")
    if not port_open(int(port), host=host):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000)}
    )
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException and timeouts: not answering yet
        return False
    return len(metadata.brokers) > 0


def _cluster_id() -> str:
    """A random cluster id in Kafka's form (22 base64url characters). One starting with "-"
    would be read as an option by the storage tool's command line (1 in 64 ids: a flaky
    format), so such ids are drawn again, as Kafka's own `Uuid.randomUuid` does."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_storage(config: StackConfig, java: Path, props: Path, data_dir: Path) -> None:
    if (data_dir / "meta.properties").is_file():
        return
    cluster_id = _cluster_id()
    base = kafka_dir(config)
    log = base / "logs" / "format.log"
    proc = start_process(
        [
            str(java),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            f"-Dlog4j2.configurationFile={base / 'log4j2.properties'}",
            "-cp",
            jars_mod.kafka_broker_classpath(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
        ],
        log_path=log,
    )
    code = proc.wait(timeout=config.startup_timeout_s)
    if code != 0 or not (data_dir / "meta.properties").is_file():
        raise StackStartError(NAME, f"storage format failed with exit code {code}", log)
    _log.info("formatted Kafka storage in %s (cluster id %s)", data_dir, cluster_id)


def start_kafka(config: StackConfig) -> ComponentStatus:
    """Start the broker unless it runs; return once it answers a metadata request."""
    pid_file = kafka_pid_file(config)
    running = pid_file.live()
    if running is not None:
        return status_kafka(config)
    check_port_free(config.kafka_port, key="kafka_port", component="Kafka")
    check_port_free(
        config.kafka_controller_port, key="kafka_controller_port", component="Kafka controller"
    )
    java = find_java()
    classpath = jars_mod.kafka_broker_classpath()

    base = kafka_dir(config)
    data_dir = base / "data"
    logs = base / "logs"
    for folder in (data_dir, logs):
        folder.mkdir(parents=True, exist_ok=True)
    props = base / "server.properties"
    props.write_text(_server_properties(config, data_dir), encoding="utf-8")
    log4j = base / "log4j2.properties"
    log4j.write_text(_log4j2_properties(kafka_log(config)), encoding="utf-8")

    _format_storage(config, java, props, data_dir)

    proc = start_process(
        [str(java), *_jvm_args(config, log4j, logs), "-cp", classpath, "kafka.Kafka", str(props)],
        log_path=logs / "stdout.log",
    )
    record = pid_file.write(proc.pid, NAME)
    up = wait_until(
        lambda: broker_answers(config.kafka_bootstrap),
        timeout_s=config.startup_timeout_s,
        interval_s=0.5,
        abort=lambda: proc.poll() is not None,
    )
    if not up:
        exited = proc.poll() is not None
        stop_process(record, timeout_s=config.stop_timeout_s)
        pid_file.remove()
        problem = (
            f"exited with code {proc.returncode} during start"
            if exited
            else f"did not answer on {config.kafka_bootstrap} "
            f"within {config.startup_timeout_s:.0f}s"
        )
        raise StackStartError("Kafka broker", problem, kafka_log(config))
    return ComponentStatus(
        name=NAME, health=Health.UP, address=config.kafka_bootstrap, pid=proc.pid
    )


def stop_kafka(config: StackConfig) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL after `stop_timeout_s`); False if not running."""
    return stop_recorded(kafka_pid_file(config), timeout_s=config.stop_timeout_s)


def status_kafka(config: StackConfig) -> ComponentStatus:
    """Pid and health of the broker."""
    return recorded_status(
        NAME,
        kafka_pid_file(config),
        address=config.kafka_bootstrap,
        answers=lambda: broker_answers(config.kafka_bootstrap),
    )
