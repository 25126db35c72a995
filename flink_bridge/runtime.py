"""`AgentRuntime`: apply a workflow to a Flink DataStream or Table, as in the proposal.

```python
output = AgentRuntime.from_datastream(input_ds).apply(my_agent).to_datastream()
table = AgentRuntime.from_table(input_table).apply(my_agent).to_table()
```

`apply` compiles the workflow on the driver (bad definitions fail here, not in a TaskManager);
the operator only executes the compiled engine.

Envelopes over Kafka (docs/messaging.md):

```python
pinger = AgentRuntime.from_kafka(env, [inbox_topic("Pinger"), "starts"], bootstrap_servers=bs,
                                 format="envelope", dead_letter_topic="dlq").apply(Pinger())
pinger.to_kafka("pinger-out", bootstrap_servers=bs, format="envelope")  # outputs + ctx.send
```

A workflow's `Subscription`s are read too: `apply` adds a source per subscribed topic, routes
keyed subscriptions to one key and broadcasts to every registered key (see
`flink_bridge.subscriptions`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any, Literal

from actors.engine import AgentEngine
from actors.messaging import Subscription, subscriptions_of
from actors.workflow import Workflow
from flink_bridge.envelopes import (
    DEAD_LETTERS_TAG_NAME,
    SENDS_TAG_NAME,
    KeyedOutput,
    OutRecord,
    build_decode_function,
    capture_message_types,
    envelope_kafka_sink,
    output_record,
)
from flink_bridge.environment import RuntimeConfig
from flink_bridge.kafka import StartFrom, add_connector_jars, kafka_sink, kafka_source
from flink_bridge.operator import ERRORS_TAG_NAME, OperatorOptions, build_process_function
from flink_bridge.subscriptions import (
    BROADCASTS_TAG_NAME,
    KEYS_TAG_NAME,
    broadcast_topics,
    build_fan_out_function,
    create_subscription_topics,
    registry_record,
    registry_state_descriptor,
    registry_topic,
    subscribed_topics,
)
from flink_bridge.topics import DEFAULT_DEAD_LETTER_TOPIC
from protocols import DEFAULT_MAX_BYTES, AgentAddress
from protocols.errors import UserError

__all__ = ["AgentRuntime", "default_key", "ray_client_env"]

KeySelector = Callable[[Any], str]

logger = logging.getLogger("flink_actors.flink_bridge")


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


def _output_of(record: KeyedOutput) -> Any:
    return record.output


def _key_of_inbound(record: Any) -> str:
    return str(record.key)


def _output_envelope(agent_type: str, topic: str, record: KeyedOutput) -> OutRecord:
    sender = AgentAddress(agent_type, record.key)
    return output_record(record.output, topic=topic, sender=sender, cause=record.meta)


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
        # The envelope path (from_kafka(format="envelope")); see `_apply_envelopes`.
        self._format: Literal["json", "envelope"] = "json"
        self._envelope_sources: list[tuple[str, Any]] = []
        self._dead_letter_topic: str | None = None
        self._bootstrap_servers: str | None = None
        self._max_envelope_bytes = DEFAULT_MAX_BYTES
        self._agent_type: str | None = None
        self._sends: Any = None
        # False only for an unbounded Kafka source: its input never ends, so the operator
        # needs no end-of-input drain timer (None: a stream of unknown boundedness).
        self._bounded: bool | None = None
        self._dead_letters: Any = None
        self._sends_wired = False
        self._source_settings: dict[str, Any] = {}  # from_kafka's, for subscription sources
        self._subscriptions: tuple[Subscription, ...] = ()

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
        format: Literal["json", "envelope"] = "json",  # noqa: A002 - the proposal's name
        dead_letter_topic: str | None = DEFAULT_DEAD_LETTER_TOPIC,
        max_envelope_bytes: int = DEFAULT_MAX_BYTES,
    ) -> AgentRuntime:
        """Agents fed from Kafka records: JSON values (one `InputEvent` each, the default) or,
        with ``format="envelope"``, protocol envelopes keyed by their recipient.

        Envelopes that cannot be delivered (truncated, malformed, unknown type, invalid
        payload, over `max_envelope_bytes`, expired, addressed to another agent type, or of a
        type no step accepts) become `DeadLetter` records in `dead_letter_topic` (None: only
        on `dead_letters()` and in the log); the job keeps running.

        Offsets are part of Flink's checkpoints; `bounded=True` stops at the offsets that are
        the latest at start (a replay of what is there).

        With ``format="envelope"``, `apply` also reads the topic of each `Subscription` the
        workflow declares, with these settings (`flink_bridge.subscriptions`).
        """
        from pyflink.common import Types

        if format not in ("json", "envelope"):
            raise UserError(f"format={format!r}: use 'json' or 'envelope'")
        add_connector_jars(env)
        if format == "envelope":
            if key_selector is not None:
                raise UserError(
                    "from_kafka(format='envelope') keys agents by each envelope's recipient; "
                    "drop key_selector"
                )
            names = [topics] if isinstance(topics, str) else list(topics)
            runtime = cls(None, config=config)
            runtime._format = "envelope"
            runtime._bounded = bounded
            runtime._bootstrap_servers = bootstrap_servers
            runtime._dead_letter_topic = dead_letter_topic
            runtime._max_envelope_bytes = max_envelope_bytes
            runtime._source_settings = {
                "env": env,
                "group_id": group_id,
                "bounded": bounded,
                "start_from": start_from,
            }
            # One source per topic, so a dead letter can say which topic it came from.
            runtime._envelope_sources = [
                (
                    name,
                    kafka_source(
                        env,
                        topics=name,
                        bootstrap_servers=bootstrap_servers,
                        group_id=group_id,
                        bounded=bounded,
                        start_from=start_from,
                        value_format="bytes",
                        name=f"kafka:{name}",
                    ),
                )
                for name in names
            ]
            return runtime
        raw = kafka_source(
            env,
            topics=topics,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            bounded=bounded,
            start_from=start_from,
        )
        stream = raw.map(json.loads, output_type=Types.PICKLED_BYTE_ARRAY()).name("json-decode")
        runtime = cls(stream, key_selector=key_selector, config=config)
        runtime._bounded = bounded
        return runtime

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
        message_types = capture_message_types()
        options = OperatorOptions(
            agent_type=agent_type or engine.name,
            poll_interval_ms=self._config.poll_interval_ms,
            max_in_flight=self._config.max_in_flight,
            bridge=effects,
            ray_env=(ray_env or ray_client_env()) if effects == "ray" else None,
            envelopes=self._format == "envelope",
            message_types=message_types,
            drain_timer=self._bounded is not False,
        )
        errors_tag = OutputTag(ERRORS_TAG_NAME, Types.STRING())
        sends_tag = OutputTag(SENDS_TAG_NAME, Types.PICKLED_BYTE_ARRAY())
        if self._format == "envelope":
            self._subscriptions = subscriptions_of(agent)
        keys_tag = None
        if broadcast_topics(self._subscriptions):
            keys_tag = OutputTag(KEYS_TAG_NAME, Types.STRING())
        function = build_process_function(
            engine, options, errors_tag=errors_tag, sends_tag=sends_tag, keys_tag=keys_tag
        )
        if self._format == "envelope":
            keyed = self._decode_envelopes(engine, options.agent_type, message_types)
        else:
            keyed = self._stream.key_by(self._key_selector, key_type=Types.STRING())
        self._outputs = keyed.process(function, output_type=Types.PICKLED_BYTE_ARRAY()).name(
            f"agent:{options.agent_type}"
        )
        self._errors = self._outputs.get_side_output(errors_tag)
        self._sends = self._outputs.get_side_output(sends_tag)
        if keys_tag is not None:
            self._register_keys(self._outputs.get_side_output(keys_tag), options.agent_type)
        self._engine = engine
        self._agent_type = options.agent_type
        return self

    def _decode_envelopes(self, engine: AgentEngine, agent_type: str, message_types: Any) -> Any:
        """Decode each topic's envelopes (dead letters on a side output), key by recipient."""
        from pyflink.common import Types
        from pyflink.datastream import OutputTag

        if self._stream is not None:
            raise UserError("apply() was already called on this runtime; build a new one")
        dead_tag = OutputTag(DEAD_LETTERS_TAG_NAME, Types.PICKLED_BYTE_ARRAY())
        broadcasts_tag = OutputTag(BROADCASTS_TAG_NAME, Types.PICKLED_BYTE_ARRAY())
        event_types = tuple(t for s in engine.compiled.steps for t in s.events)
        subscriptions = self._subscriptions
        self._add_subscription_sources(agent_type)
        decoded, dead, broadcasts = [], [], []
        for topic, raw in self._envelope_sources:
            function = build_decode_function(
                agent_type=agent_type,
                event_types=event_types,
                message_types=message_types,
                source_topic=topic,
                dead_letter_topic=self._dead_letter_topic,
                dead_letters_tag=dead_tag,
                max_bytes=self._max_envelope_bytes,
                subscriptions=subscriptions,
                broadcasts_tag=broadcasts_tag if broadcast_topics(subscriptions) else None,
            )
            stream = raw.process(function, output_type=Types.PICKLED_BYTE_ARRAY())
            stream = stream.name(f"decode:{topic}")
            decoded.append(stream)
            dead.append(stream.get_side_output(dead_tag))
            if broadcast_topics(subscriptions):
                broadcasts.append(stream.get_side_output(broadcasts_tag))
        if broadcasts:
            decoded.append(self._fan_out(broadcasts, agent_type))
        self._stream = decoded[0].union(*decoded[1:]) if len(decoded) > 1 else decoded[0]
        self._dead_letters = dead[0].union(*dead[1:]) if len(dead) > 1 else dead[0]
        if self._dead_letter_topic is not None:
            assert self._bootstrap_servers is not None
            envelope_kafka_sink(
                _wall_clock_timestamps(self._dead_letters),
                bootstrap_servers=self._bootstrap_servers,
                name=f"dead-letters-{agent_type}",
            )
        return self._stream.key_by(_key_of_inbound, key_type=Types.STRING())

    # -- subscriptions (flink_bridge.subscriptions) -----------------------------------------

    def _add_subscription_sources(self, agent_type: str) -> None:
        """A source per subscribed topic not read already; the topics (and the compacted key
        registry of broadcast subscriptions) are created if missing."""
        if not self._subscriptions:
            return
        assert self._bootstrap_servers is not None
        try:
            create_subscription_topics(self._bootstrap_servers, agent_type, self._subscriptions)
        except Exception as exc:  # the sources will say it again when the job starts
            logger.warning(
                "could not create the subscription topics of %r (%s); create them with "
                "flink_bridge.subscriptions.create_subscription_topics",
                agent_type,
                exc,
            )
        read = {topic for topic, _ in self._envelope_sources}
        for topic in subscribed_topics(self._subscriptions):
            if topic not in read:
                self._envelope_sources.append((topic, self._source(topic, "bytes")))

    def _source(self, topic: str, value_format: Literal["bytes", "string"]) -> Any:
        settings = self._source_settings
        assert self._bootstrap_servers is not None
        return kafka_source(
            settings["env"],
            topics=topic,
            bootstrap_servers=self._bootstrap_servers,
            group_id=settings["group_id"],
            bounded=settings["bounded"],
            start_from=settings["start_from"],
            value_format=value_format,
            name=f"kafka:{topic}",
        )

    def _fan_out(self, broadcasts: list[Any], agent_type: str) -> Any:
        """Each broadcast envelope once per registered key: the registry topic as the
        broadcast side of a `BroadcastProcessFunction`."""
        from pyflink.common import Types

        main = broadcasts[0].union(*broadcasts[1:]) if len(broadcasts) > 1 else broadcasts[0]
        descriptor = registry_state_descriptor()
        registry = self._source(registry_topic(agent_type), "string").broadcast(descriptor)
        function = build_fan_out_function(agent_type, descriptor)
        return (
            main.connect(registry)
            .process(function, output_type=Types.PICKLED_BYTE_ARRAY())
            .name(f"broadcast:{agent_type}")
        )

    def _register_keys(self, keys: Any, agent_type: str) -> None:
        """Write each new key to the registry topic, exactly-once (visible at checkpoints)."""
        from pyflink.common import Types

        assert self._bootstrap_servers is not None
        records = keys.map(
            functools.partial(registry_record, agent_type),
            output_type=Types.PICKLED_BYTE_ARRAY(),
        ).name(f"keys:{agent_type}")
        envelope_kafka_sink(
            _wall_clock_timestamps(records),
            bootstrap_servers=self._bootstrap_servers,
            name=f"keys-{agent_type}",
        )

    # -- sinks ------------------------------------------------------------------------------

    def _require_applied(self) -> None:
        if self._outputs is None:
            raise UserError("call .apply(agent) before reading outputs")

    def _plain_outputs(self) -> Any:
        from pyflink.common import Types

        if self._format != "envelope":
            return self._outputs
        return self._outputs.map(_output_of, output_type=Types.PICKLED_BYTE_ARRAY())

    def to_datastream(self) -> Any:
        """The agents' outputs (`OutputEvent.output` values), as Python objects."""
        self._require_applied()
        return self._plain_outputs()

    def sends(self) -> Any:
        """Messages of ``ctx.send``/``ctx.reply`` from completed turns, as `OutRecord`s
        (topic, key, envelope bytes, headers); `to_agents` writes them to Kafka."""
        self._require_applied()
        return self._sends

    def dead_letters(self) -> Any:
        """Undeliverable envelopes as `OutRecord`s whose value is `DeadLetter.encode()`.
        Only for ``from_kafka(format="envelope")``."""
        self._require_applied()
        if self._dead_letters is None:
            raise UserError("dead_letters() needs AgentRuntime.from_kafka(..., format='envelope')")
        return self._dead_letters

    def to_agents(
        self,
        *,
        bootstrap_servers: str,
        exactly_once: bool = True,
        transactional_id_prefix: str | None = None,
    ) -> Any:
        """Write the agents' outbound messages to the recipients' inbox topics
        (``agents.<agent_type>.inbox``, keyed by address), transactionally by default."""
        self._require_applied()
        if self._sends_wired:
            raise UserError("outbound messages are already written to Kafka by this runtime")
        self._sends_wired = True
        return envelope_kafka_sink(
            _wall_clock_timestamps(self._sends),
            bootstrap_servers=bootstrap_servers,
            exactly_once=exactly_once,
            transactional_id_prefix=transactional_id_prefix,
            name=f"sends-{self._agent_type}",
        )

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
        format: Literal["json", "envelope"] = "json",  # noqa: A002 - the proposal's name
    ) -> Any:
        """Write the outputs to `topic`, transactionally by default: as JSON text, or with
        ``format="envelope"`` as envelopes from the emitting agent to ``topic:<topic>``
        (keyed by the agent's address; the payload is the output when it is a registered
        message, else ``OutputEvent``), together with the agents' outbound messages (see
        `to_agents`) unless they are written already."""
        from pyflink.common import Types

        self._require_applied()
        if format == "envelope":
            if self._format != "envelope" or self._agent_type is None:
                raise UserError(
                    "to_kafka(format='envelope') needs AgentRuntime.from_kafka(..., "
                    "format='envelope'), whose outputs know their agent and cause"
                )
            records = self._outputs.map(
                functools.partial(_output_envelope, self._agent_type, topic),
                output_type=Types.PICKLED_BYTE_ARRAY(),
            ).name("envelope-encode")
            name = envelope_kafka_sink(
                _wall_clock_timestamps(records),
                bootstrap_servers=bootstrap_servers,
                exactly_once=exactly_once,
                transactional_id_prefix=transactional_id_prefix,
                name=f"out-{topic}",
            )
            if not self._sends_wired:
                self.to_agents(bootstrap_servers=bootstrap_servers, exactly_once=exactly_once)
            return name
        if format != "json":
            raise UserError(f"format={format!r}: use 'json' or 'envelope'")
        sink = kafka_sink(
            topic=topic,
            bootstrap_servers=bootstrap_servers,
            exactly_once=exactly_once,
            transactional_id_prefix=transactional_id_prefix,
        )
        rows = self._plain_outputs().map(_to_json, output_type=Types.STRING()).name("json-encode")
        return _wall_clock_timestamps(rows).sink_to(sink).name(f"kafka:{topic}")

    def to_table(self) -> Any:
        """The outputs as a table with one STRING column ``output`` (JSON text)."""
        from pyflink.common import Types
        from pyflink.table import StreamTableEnvironment

        self._require_applied()
        table_env = self._table_env or StreamTableEnvironment.create(
            self._outputs.get_execution_environment()
        )
        rows = self._plain_outputs().map(_to_json, output_type=Types.STRING())
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
