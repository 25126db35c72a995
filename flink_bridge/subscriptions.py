"""Topic subscriptions of agent types on Flink: keyed routes and broadcasts to live keys.

An agent job reads, besides its inbox topics, the Kafka topic of every `Subscription` its
workflow declares (`actors.messaging.subscriptions_of`). The decode step
(`flink_bridge.envelopes.decode_record`) routes a topic-addressed envelope with
`Subscription.route(payload)`:

* a **keyed** subscription picks one key: an `Inbound` for that key joins the agent's input;
  a key of None skips the message (counted in the metric ``flink_actors.subscription_skipped``;
  not a dead letter, a filter);
* a **broadcast** subscription (``key=None``) goes to every live instance of the type. PyFlink
  has no ``applyToKeys`` over keyed state, so the runtime keeps a **registry of live keys**:
  the agent operator emits a key on its keys side output when the key's first turn completes
  (the first time the key has agent state), and a transactional sink writes it to the compacted
  topic ``agents.<agent_type>.keys``. A `BroadcastProcessFunction` reads that topic as its
  broadcast side (the keys in broadcast state, a `MapState` copied on every subtask) and the
  broadcast envelopes as its main side, and emits one `Inbound` per registered key; its output
  is unioned with the other inputs before ``key_by``.

Why a topic and not the keys side output straight into the broadcast side: a loop inside one
Flink job (operator -> fan-out -> operator) is an iteration, which PyFlink does not offer; a
Kafka topic closes the loop, survives restarts, and is shared by every job of the type.

Semantics (docs/messaging.md): a key is registered once the checkpoint covering its first turn
commits and the registry record is read back, so a broadcast published before that misses it.
Order per (publisher, recipient) is kept for one topic: one publisher's records share a
partition (keyed by the sender), one decode and fan-out subtask, one channel to each key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from actors.messaging import Subscription
from flink_bridge.envelopes import Inbound, OutRecord
from protocols.addresses import AgentAddress

if TYPE_CHECKING:
    from flink_bridge.stack.kafka_client import KafkaClient

__all__ = [
    "BROADCASTS_TAG_NAME",
    "KEYS_TAG_NAME",
    "REGISTRY_SUFFIX",
    "BroadcastFanOutFunction",
    "KeyRegistry",
    "broadcast_topics",
    "build_fan_out_function",
    "create_subscription_topics",
    "fan_out",
    "registry_record",
    "registry_topic",
    "subscribed_topics",
    "wait_until_registered",
]

logger = logging.getLogger("flink_actors.flink_bridge")

KEYS_TAG_NAME = "agent-keys"
"""Side output of the agent operator: each key once, when its first turn completes."""
BROADCASTS_TAG_NAME = "agent-broadcasts"
"""Side output of the decode step: envelopes of broadcast subscriptions, before the fan-out."""
REGISTRY_SUFFIX = ".keys"
REGISTRY_STATE_NAME = "agent-keys"


def registry_topic(agent_type: str) -> str:
    """The compacted topic of the live keys of `agent_type`: ``agents.<agent_type>.keys``."""
    from flink_bridge.topics import INBOX_PREFIX, inbox_topic

    inbox_topic(agent_type)  # validates the type name
    return f"{INBOX_PREFIX}{agent_type}{REGISTRY_SUFFIX}"


def subscribed_topics(subscriptions: Sequence[Subscription]) -> list[str]:
    """The topics of `subscriptions`, each once, in declaration order."""
    return list(dict.fromkeys(s.topic for s in subscriptions))


def broadcast_topics(subscriptions: Sequence[Subscription]) -> list[str]:
    """The topics with at least one broadcast subscription, each once."""
    return list(dict.fromkeys(s.topic for s in subscriptions if s.broadcast))


def registry_record(agent_type: str, key: str) -> OutRecord:
    """The registry topic's record for a live key: keyed by the agent's address (compaction
    keeps one record per key), the value is the key."""
    address = str(AgentAddress(agent_type, str(key)))
    return OutRecord(registry_topic(agent_type), address.encode(), str(key).encode(), {})


def create_subscription_topics(
    bootstrap_servers: str,
    agent_type: str,
    subscriptions: Sequence[Subscription],
    *,
    partitions: int = 1,
) -> list[str]:
    """Create (if missing) the subscribed topics and, for broadcast subscriptions, the
    compacted registry topic; returns the names. A Flink Kafka source needs its topics."""
    from flink_bridge.stack.kafka_client import KafkaClient

    client = KafkaClient(bootstrap_servers)
    topics = subscribed_topics(subscriptions)
    if topics:
        client.create_topics(topics, partitions=partitions)
    if broadcast_topics(subscriptions):
        registry = registry_topic(agent_type)
        client.create_topics([registry], partitions=1, config={"cleanup.policy": "compact"})
        topics.append(registry)
    return topics


def fan_out(inbound: Inbound, keys: Iterable[str]) -> Iterator[Inbound]:
    """One copy of a broadcast `Inbound` per key (each with its own meta dict)."""
    for key in keys:
        yield Inbound(key, inbound.event, dict(inbound.meta))


class KeyRegistry:
    """The registered keys of one fan-out subtask: broadcast state, mirrored in memory.

    Reading broadcast state is a call into the JVM per entry; a broadcast to 100,000 keys would
    pay that on every message. Broadcast state changes only in `add`, so the mirror stays
    exact; after a restore it is rebuilt from the state on first use.
    """

    def __init__(self) -> None:
        self._keys: list[str] | None = None
        self._known: set[str] = set()

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    def load(self, state: Any) -> None:
        """Fill the mirror from broadcast state (its ``items()``), or from an iterable of keys.

        Not ``keys()``: PyFlink's thread-mode broadcast state implements it with a Java method
        the state does not have (AttributeError from pemja); ``items()`` uses ``entries()``.
        """
        keys = [k for k, _ in state.items()] if hasattr(state, "items") else state
        self._keys = [str(k) for k in keys]
        self._known = set(self._keys)

    def add(self, key: str, state: Any = None) -> bool:
        """Register `key` (and put it in `state`); False if it was registered already."""
        if self._keys is None:
            self.load(state if state is not None else ())
        if key in self._known:
            return False
        if state is not None:
            state.put(key, True)
        assert self._keys is not None
        self._keys.append(key)
        self._known.add(key)
        return True

    def keys(self) -> list[str]:
        return list(self._keys or ())

    def __len__(self) -> int:
        return len(self._known)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return str(value)


class BroadcastFanOutFunction:
    """Mixed into pyflink's `BroadcastProcessFunction` by `build_fan_out_function`.

    Broadcast side: registry records (agent keys as text). Main side: broadcast `Inbound`s
    from the decode step; each leaves once per registered key.
    """

    def __init__(self, agent_type: str, descriptor: Any) -> None:
        self.agent_type = agent_type
        self.descriptor = descriptor

    def open(self, runtime_context: Any) -> None:
        self.registry = KeyRegistry()
        self.delivered = 0
        self.counter: Any = None
        try:
            group = runtime_context.get_metrics_group().add_group("flink_actors")
            self.counter = group.counter("broadcast_deliveries")
        except Exception as exc:  # pragma: no cover - depends on the execution mode
            logger.info("no Flink metric group for broadcast fan-out (%s)", exc)

    def process_broadcast_element(self, value: Any, ctx: Any) -> None:
        state = ctx.get_broadcast_state(self.descriptor)
        if not self.registry.loaded:
            self.registry.load(state)
        self.registry.add(_as_text(value), state)

    def process_element(self, value: Inbound, ctx: Any) -> Iterator[Inbound]:
        if not self.registry.loaded:
            self.registry.load(ctx.get_broadcast_state(self.descriptor))
        count = 0
        for inbound in fan_out(value, self.registry.keys()):
            count += 1
            yield inbound
        self.delivered += count
        if self.counter is not None and count:
            self.counter.inc(count)
        if not count:
            logger.debug(
                "broadcast to %r reached no instance: no key is registered yet", self.agent_type
            )


def registry_state_descriptor() -> Any:
    """The broadcast state of the fan-out: agent key -> True."""
    from pyflink.common import Types
    from pyflink.datastream.state import MapStateDescriptor

    return MapStateDescriptor(REGISTRY_STATE_NAME, Types.STRING(), Types.BOOLEAN())


def build_fan_out_function(agent_type: str, descriptor: Any) -> Any:
    """The `BroadcastProcessFunction` fanning broadcasts out to registered keys."""
    from pyflink.datastream import BroadcastProcessFunction

    cls = type("BroadcastFanOutFunction", (BroadcastFanOutFunction, BroadcastProcessFunction), {})
    return cls(agent_type, descriptor)


def wait_until_registered(
    kafka: KafkaClient,
    agent_type: str,
    group_id: str,
    keys: Collection[str],
    *,
    timeout_s: float,
    still_running: Callable[[], object] | None = None,
) -> bool:
    """Wait until broadcasts to `agent_type` reach every key in `keys`; False on timeout.

    That is the case once each key's registry record is committed and the fan-out of the job
    reading with `group_id` has taken it in: its Kafka source commits its registry offsets when
    a checkpoint completes, and by then every record before the checkpoint's barrier is in the
    fan-out's broadcast state. So: find the records of `keys` (read_committed), then wait for
    the group's committed offsets to pass them. `still_running` is called on each round (raise
    from it to stop early, e.g. when the job failed).
    """
    topic = registry_topic(agent_type)
    wanted = set(keys)
    needed: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if still_running is not None:
            still_running()
        if wanted:
            for record in kafka.consume(topic, 1_000_000, timeout=2.0):  # all there is, 2 s
                key = (record.value or b"").decode("utf-8", "replace")  # the value is the key
                if key in wanted:
                    wanted.discard(key)
                    needed[record.partition] = max(
                        needed.get(record.partition, 0), record.offset + 1
                    )
            continue
        committed = kafka.committed_offsets(group_id, topic)
        if all(committed.get(p, -1) >= offset for p, offset in needed.items()):
            return True
        time.sleep(0.5)
    return False
