"""The baseline side of the runtime benchmark: the same pipeline on apache/flink-agents 0.2.0.

Kafka (read_committed) -> pickled Python dicts -> the flink-agents agent of `baseline_agent`,
keyed by ``key`` -> JSON -> transactional Kafka sink, with the same checkpoint interval and
parallelism as our side, and ``num-async-threads`` set to our number of calls in flight.

This module needs only flink-agents and apache-flink (it runs in the baseline's own venv); it
never imports the project's packages. The repo root must be on PYTHONPATH.

Run (in the baseline's venv):
    python -m bench._runtime.baseline_job --bootstrap 127.0.0.1:9092 --source in --sink out \
        --jars file:///.../flink-connector-kafka.jar,...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from bench._runtime.baseline_agent import BaselineAgent

__all__ = ["main"]


def _key(record: dict[str, Any]) -> str:
    return str(record["key"])


def _to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--jars", required=True, help="comma-separated file:// URLs")
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument("--num-async-threads", type=int, default=200)
    parser.add_argument("--execution-mode", default="thread", choices=["thread", "process"])
    parser.add_argument("--group", default="bench-runtime-baseline")
    args = parser.parse_args()

    # Thread mode runs Python inside the JVM, which sees only PYTHONPATH, read when the JVM starts
    # (importing flink_agents' execution environment starts it): name the repo root (for
    # this module and the workload) and this interpreter's import path (flink-agents, pemja).
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [root, *[p for p in sys.path if p and os.path.exists(p)]]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))

    from flink_agents.api.core_options import AgentExecutionOptions
    from flink_agents.api.execution_environment import AgentsExecutionEnvironment
    from pyflink.common import Configuration, Types, WatermarkStrategy
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import (
        KafkaOffsetsInitializer,
        KafkaRecordSerializationSchema,
        KafkaSink,
        KafkaSource,
    )

    conf = Configuration()
    conf.set_string("python.execution-mode", args.execution_mode)
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", "3")
    conf.set_string("restart-strategy.fixed-delay.delay", "1 s")
    for key in (
        "rest.bind-address",
        "rest.address",
        "jobmanager.bind-host",
        "taskmanager.bind-host",
        "taskmanager.host",
    ):
        conf.set_string(key, "127.0.0.1")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    env.enable_checkpointing(args.checkpoint_ms, CheckpointingMode.EXACTLY_ONCE)
    env.add_jars(*args.jars.split(","))

    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.source)
        .set_group_id(args.group)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("isolation.level", "read_committed")
        .build()
    )
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(args.sink)
        .set_value_serialization_schema(SimpleStringSchema())
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_record_serializer(serializer)
        .set_property("transaction.timeout.ms", "900000")
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(f"bench-baseline-{uuid.uuid4().hex[:8]}")
        .build()
    )
    raw = env.from_source(
        source, WatermarkStrategy.no_watermarks(), f"kafka:{args.source}", type_info=Types.STRING()
    )
    # flink-agents takes pickled Python objects in and gives them back out.
    records = raw.map(json.loads, output_type=Types.PICKLED_BYTE_ARRAY()).name("json-decode")

    agents_env = AgentsExecutionEnvironment.get_execution_environment(env=env)
    agents_env.get_config().set(AgentExecutionOptions.NUM_ASYNC_THREADS, args.num_async_threads)
    outputs = (
        agents_env.from_datastream(input=records, key_selector=_key)
        .apply(BaselineAgent())
        .to_datastream()
    )
    outputs.map(_to_json, output_type=Types.STRING()).name("json-encode").sink_to(sink).name(
        f"kafka:{args.sink}"
    )
    agents_env.execute()


if __name__ == "__main__":
    main()
