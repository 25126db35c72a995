"""Kafka in and out of agent jobs, with the Flink Kafka connector.

Sources commit their offsets in Flink checkpoints; sinks are transactional (EXACTLY_ONCE), so a
reader with ``isolation.level=read_committed`` sees each output once, after the checkpoint that
covers it completes. The connector jars come from `flink_bridge.stack.jars` (`flink-actors jars`).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from protocols.errors import ConfigError

__all__ = ["StartFrom", "add_connector_jars", "kafka_sink", "kafka_source"]

StartFrom = Literal["earliest", "latest", "committed"]

# Flink's default transaction timeout (1 h) must not exceed the broker's
# transaction.max.timeout.ms; 15 min is within every broker default.
TRANSACTION_TIMEOUT_MS = "900000"


def add_connector_jars(env: Any) -> None:
    """Put the Flink Kafka connector on the job's classpath (fetching it once if needed)."""
    from flink_bridge.stack.jars import ensure_jars, flink_connector_jar_urls

    ensure_jars()
    env.add_jars(*flink_connector_jar_urls())


def kafka_source(
    env: Any,
    *,
    topics: str | list[str],
    bootstrap_servers: str,
    group_id: str = "flink-actors",
    start_from: StartFrom = "earliest",
    bounded: bool = False,
    value_format: Literal["bytes", "string"] = "string",
    name: str | None = None,
) -> Any:
    """A DataStream of the topics' record values (str or bytes).

    `bounded=True` reads up to the offsets that are the latest when the job starts, then ends:
    the form a replay or a test takes.
    """
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.common.serialization import ByteArraySchema, SimpleStringSchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource

    _check_loopback(bootstrap_servers)
    if start_from == "earliest":
        starting = KafkaOffsetsInitializer.earliest()
    elif start_from == "latest":
        starting = KafkaOffsetsInitializer.latest()
    elif start_from == "committed":
        # The Python wrapper names a shaded enum class that connector 5.x no longer shades,
        # so the initializer is built on the Java side directly.
        starting = _committed_or_earliest()
    else:
        raise ConfigError(
            "start_from", f"{start_from!r} is not known", "use 'earliest', 'latest' or 'committed'"
        )
    schema = SimpleStringSchema() if value_format == "string" else ByteArraySchema()
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap_servers)
        .set_topics(*([topics] if isinstance(topics, str) else topics))
        .set_group_id(group_id)
        .set_starting_offsets(starting)
        .set_value_only_deserializer(schema)
        .set_property("isolation.level", "read_committed")
        .set_property("client.dns.lookup", "use_all_dns_ips")
    )
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    type_info = Types.STRING() if value_format == "string" else Types.PRIMITIVE_ARRAY(Types.BYTE())
    return env.from_source(
        builder.build(),
        WatermarkStrategy.for_monotonous_timestamps(),
        name or f"kafka:{topics}",
        type_info=type_info,
    )


def _committed_or_earliest() -> Any:
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    strategy = jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy.EARLIEST
    j_init = jvm.org.apache.flink.connector.kafka.source.enumerator.initializer
    return KafkaOffsetsInitializer(j_init.OffsetsInitializer.committedOffsets(strategy))


def kafka_sink(
    *,
    topic: str,
    bootstrap_servers: str,
    exactly_once: bool = True,
    transactional_id_prefix: str | None = None,
    value_format: Literal["bytes", "string"] = "string",
) -> Any:
    """A transactional Kafka sink (records appear to read_committed readers at checkpoints)."""
    from pyflink.common.serialization import ByteArraySchema, SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    _check_loopback(bootstrap_servers)
    schema = SimpleStringSchema() if value_format == "string" else ByteArraySchema()
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(schema)
        .build()
    )
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap_servers)
        .set_record_serializer(serializer)
        .set_property("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
    )
    if exactly_once:
        prefix = transactional_id_prefix or f"flink-actors-{topic}-{uuid.uuid4().hex[:8]}"
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        builder = builder.set_transactional_id_prefix(prefix)
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return builder.build()


def _check_loopback(bootstrap_servers: str) -> None:
    """Contract 7: the embedded stack talks to 127.0.0.1 only; anything else is asked for."""
    import os

    if os.environ.get("FLINK_ACTORS_ALLOW_REMOTE_KAFKA") == "1":
        return
    for server in bootstrap_servers.split(","):
        host = server.strip().rpartition(":")[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            raise ConfigError(
                "bootstrap_servers",
                f"{server.strip()!r} is not a loopback address",
                "use the local stack's 127.0.0.1:<port>, or set FLINK_ACTORS_ALLOW_REMOTE_KAFKA=1 "
                "to reach an existing cluster",
            )
