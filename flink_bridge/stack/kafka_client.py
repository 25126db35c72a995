"""Small Kafka helpers for tests, the CLI and demos: create topics, produce, consume.

Why a module and not test-only code: the demo and the integration tests of every package
need the same three operations against the embedded broker, with `read_committed` reads so
that only the output of committed Flink transactions is seen. Built on confluent-kafka
(librdkafka), which supports transactions and isolation levels.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as _TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from protocols.errors import DeliveryError

__all__ = ["ConsumedRecord", "KafkaClient", "Record"]

Record = bytes | str | tuple[bytes | str | None, bytes | str | None]
"""A value, or a (key, value) pair; str is encoded as UTF-8."""


@dataclass(frozen=True)
class ConsumedRecord:
    """One record read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _b(data: bytes | str | None) -> bytes | None:
    return data.encode("utf-8") if isinstance(data, str) else data


class KafkaClient:
    """Admin, producer and consumer helpers bound to one bootstrap address."""

    def __init__(self, bootstrap_servers: str, *, extra: Mapping[str, Any] | None = None):
        self.bootstrap_servers = bootstrap_servers
        self._extra = dict(extra or {})

    def _conf(self, **conf: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, **self._extra, **conf}

    def admin(self) -> AdminClient:
        """A new AdminClient."""
        return AdminClient(self._conf())

    def create_topics(
        self,
        names: Iterable[str],
        partitions: int = 1,
        *,
        config: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Create topics (existing ones are left as they are) and wait until they exist."""
        wanted = list(names)
        topics = [
            NewTopic(
                name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
            )
            for name in wanted
        ]
        admin = self.admin()  # keep a reference: the futures die with their client
        futures = admin.create_topics(topics, operation_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise DeliveryError(f"cannot create topic {name!r}: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            known = admin.list_topics(timeout=5).topics
            if all(name in known and not known[name].error for name in wanted):
                return
            time.sleep(0.2)
        raise DeliveryError(f"topics {wanted!r} did not appear within {timeout_s:.0f}s")

    def delete_topics(self, names: Iterable[str], *, timeout_s: float = 30.0) -> None:
        """Delete topics; missing ones are ignored."""
        admin = self.admin()
        futures = admin.delete_topics(list(names), operation_timeout=timeout_s)
        for future in futures.values():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise

    def list_topics(self) -> set[str]:
        """Names of the topics on the broker (internal ones included)."""
        return set(self.admin().list_topics(timeout=10).topics)

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of `topic` (empty if it does not exist)."""
        meta = self.admin().list_topics(topic=topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        return sorted(meta.partitions)

    def committed_offsets(self, group_id: str, topic: str) -> dict[int, int]:
        """The offsets `group_id` has committed for each partition of `topic` (a Flink Kafka
        source commits them when a checkpoint completes); partitions without one are left out."""
        parts = self.partitions(topic)
        if not parts:
            return {}
        request = ConsumerGroupTopicPartitions(group_id, [_TopicPartition(topic, p) for p in parts])
        admin = self.admin()  # kept referenced until the answer is in (it owns the future)
        futures = admin.list_consumer_group_offsets([request], request_timeout=10)
        result = futures[group_id].result(timeout=15)
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}

    def produce(
        self,
        topic: str,
        records: Iterable[Record],
        *,
        partition: int | None = None,
        timeout_s: float = 30.0,
    ) -> int:
        """Write `records` (values or (key, value) pairs) with acks=all; returns the count.

        Raises DeliveryError if any record is not acknowledged within `timeout_s`.
        """
        producer = Producer(self._conf(acks="all", **{"enable.idempotence": True}))
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        count = 0
        for record in records:
            key, value = record if isinstance(record, tuple) else (None, record)
            while True:
                try:
                    producer.produce(
                        topic,
                        key=_b(key),
                        value=_b(value),
                        partition=-1 if partition is None else partition,  # -1: partitioner
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
        remaining = producer.flush(timeout_s)
        if remaining or errors:
            raise DeliveryError(
                f"{remaining} records to {topic!r} not acknowledged, errors: {errors[:3]!r}"
            )
        return count

    def consume(
        self,
        topic: str,
        n: int,
        timeout: float = 30.0,
        read_committed: bool = True,
    ) -> list[ConsumedRecord]:
        """Read up to `n` records of `topic` from the beginning, waiting at most `timeout` s.

        Reads every partition from offset 0 with a throwaway group (nothing is committed), so
        it can be called repeatedly. With `read_committed` (the default) records of open or
        aborted transactions are not returned. Returns fewer than `n` on timeout.
        """
        consumer = Consumer(
            self._conf(
                **{
                    "group.id": f"flink-actors-reader-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                    "enable.partition.eof": False,
                }
            )
        )
        out: list[ConsumedRecord] = []
        try:
            deadline = time.monotonic() + timeout
            parts: list[int] = []
            while not parts and time.monotonic() < deadline:
                parts = self.partitions(topic)
                if not parts:
                    time.sleep(0.2)
            consumer.assign([_TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            while len(out) < n and time.monotonic() < deadline:
                batch = consumer.consume(
                    num_messages=min(500, n - len(out)),
                    timeout=max(0.05, min(1.0, deadline - time.monotonic())),
                )
                for msg in batch:
                    if msg.error() is not None:
                        continue
                    out.append(
                        ConsumedRecord(
                            topic=msg.topic() or topic,
                            partition=msg.partition() or 0,
                            offset=msg.offset() or 0,
                            key=msg.key(),
                            value=msg.value(),
                            timestamp_ms=msg.timestamp()[1],
                        )
                    )
        finally:
            consumer.close()
        return out
