"""`AgentRuntime`: apply a workflow to a Flink DataStream or Table, as in the proposal.

```python
output = AgentRuntime.from_datastream(input_ds).apply(my_agent).to_datastream()
table = AgentRuntime.from_table(input_table).apply(my_agent).to_table()
```

`apply` compiles the workflow on the driver (bad definitions fail here, not in a TaskManager);
the operator only executes the compiled engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from actors.engine import AgentEngine
from actors.workflow import Workflow
from flink_bridge.environment import RuntimeConfig
from flink_bridge.kafka import StartFrom, add_connector_jars, kafka_sink, kafka_source
from flink_bridge.operator import ERRORS_TAG_NAME, OperatorOptions, build_process_function
from protocols.errors import UserError

__all__ = ["AgentRuntime", "default_key", "ray_client_env"]

KeySelector = Callable[[Any], str]


def default_key(record: Any) -> str:
    """The agent key of a record when no key selector is given.

    A mapping's ``"key"`` (else ``"id"``), a tuple's or Row's first field, else the record's text.
    """
    if isinstance(record, dict):
        for name in ("key", "id"):
            if name in record:
                return str(record[name])
    elif isinstance(record, tuple | list) and record:
        return str(record[0])
    elif hasattr(record, "as_dict"):
        return default_key(record.as_dict())
    return str(record)


def _row_to_input(row: Any) -> Any:
    return row.as_dict() if hasattr(row, "as_dict") else row


def _to_json(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, default=str, ensure_ascii=False)


class AgentRuntime:
    """A pipeline under construction: where inputs come from, which agent, where outputs go."""

    def __init__(
        self,
        stream: Any,
        *,
        key_selector: KeySelector | None = None,
        table_env: Any = None,
        config: RuntimeConfig | None = None,
    ) -> None:
        self._stream = stream
        self._key_selector = key_selector or default_key
        self._table_env = table_env
        self._config = config or RuntimeConfig()
        self._outputs: Any = None
        self._errors: Any = None
        self._engine: AgentEngine | None = None

    # -- sources ----------------------------------------------------------------------------

    @classmethod
    def from_datastream(
        cls,
        input_stream: Any,
        *,
        key_selector: KeySelector | None = None,
        config: RuntimeConfig | None = None,
    ) -> AgentRuntime:
        """Agents keyed by `key_selector(record)` (default: `default_key`)."""
        return cls(input_stream, key_selector=key_selector, config=config)

    @classmethod
    def from_table(
        cls,
        input_table: Any,
        *,
        key_column: str | None = None,
        config: RuntimeConfig | None = None,
    ) -> AgentRuntime:
        """Agents fed one `InputEvent` per row (the row as a dict), keyed by `key_column`
        (default: the ``key`` or ``id`` column, else the first column)."""
        from pyflink.table import StreamTableEnvironment  # noqa: F401 - checks pyflink is there

        table_env = _table_env_of(input_table)
        stream = table_env.to_data_stream(input_table).map(_row_to_input)
        names = input_table.get_schema().get_field_names()
        if key_column is None:
            key_column = next((n for n in ("key", "id") if n in names), names[0])
        elif key_column not in names:
            raise UserError(f"key_column {key_column!r} is not a column of the table {names!r}")
        column = key_column
        return cls(
            stream,
            key_selector=lambda row: str(row[column]),
            table_env=table_env,
            config=config,
        )

    @classmethod
    def from_kafka(
        cls,
        env: Any,
        topics: str | list[str],
        *,
        bootstrap_servers: str,
        group_id: str = "flink-actors",
        bounded: bool = False,
        start_from: StartFrom = "earliest",
        key_selector: KeySelector | None = None,
        config: RuntimeConfig | None = None,
    ) -> AgentRuntime:
        """Agents fed from Kafka records holding JSON values (one `InputEvent` each).

        Offsets are part of Flink's checkpoints; `bounded=True` stops at the offsets that are
        the latest at start (a replay of what is there).
        """
        from pyflink.common import Types

        add_connector_jars(env)
        raw = kafka_source(
            env,
            topics=topics,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            bounded=bounded,
            start_from=start_from,
        )
        stream = raw.map(json.loads, output_type=Types.PICKLED_BYTE_ARRAY()).name("json-decode")
        return cls(stream, key_selector=key_selector, config=config)

    # -- the agent --------------------------------------------------------------------------

    def apply(
        self,
        agent: Workflow,
        *,
        agent_type: str | None = None,
        effects: str = "ray",
        ray_env: dict[str, str] | None = None,
    ) -> AgentRuntime:
        """Run `agent` on every key. `effects="ray"` (default) executes model, tool and MCP
        calls in the Ray pool (the head `flink-actors up` started, or the one `ray_env` names:
        see `ray_client_env`); `"in-process"` runs them inside the Flink worker."""
        from pyflink.common import Types
        from pyflink.datastream import OutputTag

        if not isinstance(agent, Workflow):
            raise UserError(
                f"apply() takes a Workflow instance, got {type(agent).__name__!r}; "
                "write .apply(MyWorkflow())"
            )
        if effects not in ("ray", "in-process"):
            raise UserError(f"effects={effects!r}: use 'ray' or 'in-process'")
        engine = AgentEngine(agent)
        options = OperatorOptions(
            agent_type=agent_type or engine.name,
            poll_interval_ms=self._config.poll_interval_ms,
            max_in_flight=self._config.max_in_flight,
            bridge=effects,
            ray_env=(ray_env or ray_client_env()) if effects == "ray" else None,
        )
        errors_tag = OutputTag(ERRORS_TAG_NAME, Types.STRING())
        function = build_process_function(engine, options, errors_tag=errors_tag)
        keyed = self._stream.key_by(self._key_selector, key_type=Types.STRING())
        self._outputs = keyed.process(function, output_type=Types.PICKLED_BYTE_ARRAY()).name(
            f"agent:{options.agent_type}"
        )
        self._errors = self._outputs.get_side_output(errors_tag)
        self._engine = engine
        return self

    # -- sinks ------------------------------------------------------------------------------

    def _require_applied(self) -> None:
        if self._outputs is None:
            raise UserError("call .apply(agent) before reading outputs")

    def to_datastream(self) -> Any:
        """The agents' outputs (`OutputEvent.output` values), as Python objects."""
        self._require_applied()
        return self._outputs

    def errors(self) -> Any:
        """Unhandled `ErrorEvent`s of completed turns, as JSON strings with the agent key."""
        self._require_applied()
        return self._errors

    def to_kafka(
        self,
        topic: str,
        *,
        bootstrap_servers: str,
        exactly_once: bool = True,
        transactional_id_prefix: str | None = None,
    ) -> Any:
        """Write the outputs as JSON text to `topic`, transactionally by default."""
        from pyflink.common import Types

        self._require_applied()
        sink = kafka_sink(
            topic=topic,
            bootstrap_servers=bootstrap_servers,
            exactly_once=exactly_once,
            transactional_id_prefix=transactional_id_prefix,
        )
        rows = self._outputs.map(_to_json, output_type=Types.STRING()).name("json-encode")
        return _wall_clock_timestamps(rows).sink_to(sink).name(f"kafka:{topic}")

    def to_table(self) -> Any:
        """The outputs as a table with one STRING column ``output`` (JSON text)."""
        from pyflink.common import Types
        from pyflink.table import StreamTableEnvironment

        self._require_applied()
        table_env = self._table_env or StreamTableEnvironment.create(
            self._outputs.get_execution_environment()
        )
        rows = self._outputs.map(_to_json, output_type=Types.STRING())
        return table_env.from_data_stream(rows).alias("output")


class _WallClock:
    """Timestamp assigner: the time the record reaches the sink."""

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        import time

        return int(time.time() * 1000)


def _wall_clock_timestamps(stream: Any) -> Any:
    """Outputs of a turn that finished in the end-of-input drain carry the drain timer's
    timestamp (Long.MAX_VALUE - 1), which Kafka rejects; records leave with the wall clock."""
    from pyflink.common import WatermarkStrategy
    from pyflink.common.watermark_strategy import TimestampAssigner

    assigner = type("WallClockAssigner", (_WallClock, TimestampAssigner), {})()
    strategy = WatermarkStrategy.no_watermarks().with_timestamp_assigner(assigner)
    return stream.assign_timestamps_and_watermarks(strategy).name("wall-clock")


_RAY_CLIENT_VARS = (
    "RAY_ADDRESS",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_AUTH_TOKEN",
)


def ray_client_env() -> dict[str, str]:
    """What a Flink worker needs to join the Ray head: from the environment when RAY_ADDRESS is
    set there, else from the stack that `flink-actors up` started in this project."""
    if os.environ.get("RAY_ADDRESS"):
        env = {k: os.environ[k] for k in _RAY_CLIENT_VARS if k in os.environ}
        env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keeps Ray on 127.0.0.1
        return env
    from flink_bridge.stack.config import load_config
    from flink_bridge.stack.health import Health
    from flink_bridge.stack.ray_head import connect_env, status_ray

    config = load_config()
    if status_ray(config).health != Health.UP:
        raise UserError(
            f"no Ray head is running at {config.ray_address!r}; start the local stack with "
            "`flink-actors up`, set RAY_ADDRESS to a running head, or use "
            "apply(..., effects='in-process')"
        )
    return connect_env(config)


def _table_env_of(table: Any) -> Any:
    from pyflink.table import StreamTableEnvironment

    j_env = table._j_table.getTableEnvironment()
    env = getattr(table, "_t_env", None)
    if env is not None:
        return env
    return StreamTableEnvironment(j_env)  # pragma: no cover
