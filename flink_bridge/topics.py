"""The Kafka topic layout of agent messaging: one inbox topic per agent type.

- ``agents.<agent_type>.inbox`` holds every envelope addressed to an agent of that type, keyed
  by the recipient's canonical address (``"<agent_type>/<key>"``), so one agent instance's
  messages share a partition and Flink keys by the same string;
- a `TopicAddress` recipient (``"topic:<name>"``) is written to the Kafka topic ``<name>``,
  keyed by the sender's address;
- envelope outputs of an agent job go to the topic the job names, keyed by the emitting agent;
- dead letters go to ``agents.dead-letters`` unless the job names another topic.

One topic per agent type (not per instance) keeps the topic count independent of the number
of agents (100,000 agents are 100,000 keys, not topics); docs/messaging.md has the details.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from protocols.addresses import AgentAddress, TopicAddress, parse_address
from protocols.errors import UserError

__all__ = [
    "DEFAULT_DEAD_LETTER_TOPIC",
    "INBOX_PREFIX",
    "INBOX_SUFFIX",
    "create_agent_topics",
    "inbox_topic",
    "topic_for",
]

INBOX_PREFIX = "agents."
INBOX_SUFFIX = ".inbox"
DEFAULT_DEAD_LETTER_TOPIC = "agents.dead-letters"


def inbox_topic(agent_type: str) -> str:
    """The inbox topic of `agent_type`, e.g. ``inbox_topic("Pinger") == "agents.Pinger.inbox"``.

    Every agent type name (``[A-Za-z_][A-Za-z0-9_.-]{0,127}``) is a legal Kafka topic name.
    """
    if not isinstance(agent_type, str) or "/" in agent_type:
        raise UserError(f"agent type {agent_type!r} must be a str without '/', e.g. 'Pinger'")
    parse_address(f"{agent_type}/_")  # raises UserError naming what is wrong with the type
    return f"{INBOX_PREFIX}{agent_type}{INBOX_SUFFIX}"


def topic_for(recipient: AgentAddress | TopicAddress | str) -> str:
    """The Kafka topic an envelope for `recipient` is written to."""
    address: Any = parse_address(recipient) if isinstance(recipient, str) else recipient
    if isinstance(address, AgentAddress):
        return inbox_topic(address.agent_type)
    if isinstance(address, TopicAddress):
        return address.topic
    raise UserError(
        f"cannot route to {recipient!r}: pass an AgentAddress, a TopicAddress or "
        "'agent_type/key' / 'topic:<name>'"
    )


def create_agent_topics(
    bootstrap_servers: str,
    agent_types: Iterable[str],
    *,
    extra_topics: Iterable[str] = (),
    partitions: int = 1,
) -> list[str]:
    """Create the inbox topics of `agent_types` (and `extra_topics`) if missing; returns them.

    Flink's Kafka source needs its topics to exist when the job starts.
    """
    from flink_bridge.stack.kafka_client import KafkaClient

    names = [inbox_topic(t) for t in agent_types] + list(extra_topics)
    KafkaClient(bootstrap_servers).create_topics(names, partitions=partitions)
    return names
