"""Agent and topic addresses, and their one canonical string form.

The canonical string is what travels as the Kafka record key and what Flink keys on, so it
must be unique per address and cheap to compute and to parse:

- an agent address is ``"<agent_type>/<key>"``: the agent type never contains ``/`` or ``:``,
  the key may contain anything printable, ``/`` included (the first ``/`` splits);
- a topic address is ``"topic:<name>"``: since an agent type cannot contain ``:``, no topic
  string can ever parse as an agent address, and the other way round.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, field_validator

from protocols.errors import UserError

__all__ = [
    "Address",
    "AgentAddress",
    "TopicAddress",
    "WireAddress",
    "parse_address",
]

_AGENT_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")
_TOPIC_RE = re.compile(r"[A-Za-z0-9._\-]{1,249}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_KEY_LEN = 1024
TOPIC_PREFIX = "topic:"


def _agent_type_problem(agent_type: object) -> str | None:
    if not isinstance(agent_type, str):
        return f"agent_type must be a str, got {type(agent_type).__name__}"
    if not _AGENT_TYPE_RE.fullmatch(agent_type):
        return (
            f"agent_type {agent_type!r} must start with a letter or '_' and hold only letters, "
            "digits, '_', '.', '-' (at most 128 characters)"
        )
    return None


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str):
        return f"key must be a str, got {type(key).__name__}"
    if not key:
        return "key must not be empty"
    if len(key) > _MAX_KEY_LEN:
        return f"key is {len(key)} characters long; the limit is {_MAX_KEY_LEN}"
    if _CONTROL_RE.search(key):
        return f"key {key!r} contains a control character"
    return None


def _topic_problem(topic: object) -> str | None:
    if not isinstance(topic, str):
        return f"topic must be a str, got {type(topic).__name__}"
    if not _TOPIC_RE.fullmatch(topic):
        return (
            f"topic {topic!r} must hold 1 to 249 letters, digits, '.', '_' or '-' "
            "(the Kafka topic alphabet)"
        )
    return None


class AgentAddress(BaseModel):
    """One agent instance: its type (which workflow handles it) and its key (which instance).

    `str(address)` is the canonical form ``"agent_type/key"``; `AgentAddress.parse` reads it back.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_type: str
    key: str

    def __init__(self, agent_type: str, key: str) -> None:
        super().__init__(agent_type=agent_type, key=key)

    @field_validator("agent_type")
    @classmethod
    def _check_agent_type(cls, value: str) -> str:
        problem = _agent_type_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        problem = _key_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def __str__(self) -> str:
        d = self.__dict__  # one attribute hook instead of two (pydantic's __getattr__)
        return f"{d['agent_type']}/{d['key']}"

    def __repr__(self) -> str:
        return f"AgentAddress({self.agent_type!r}, {self.key!r})"

    @classmethod
    def parse(cls, text: str) -> AgentAddress:
        """Parse the canonical ``"agent_type/key"`` form; raise `UserError` when malformed."""
        result = parse_address(text)
        if not isinstance(result, AgentAddress):
            raise UserError(
                f"{text!r} is a topic address, not an agent address; "
                "pass 'agent_type/key', e.g. 'support/user-42'"
            )
        return result


class TopicAddress(BaseModel):
    """A publish/subscribe topic; canonical form ``"topic:<name>"``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str

    def __init__(self, topic: str) -> None:
        super().__init__(topic=topic)

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        problem = _topic_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def __str__(self) -> str:
        return f"{TOPIC_PREFIX}{self.topic}"

    def __repr__(self) -> str:
        return f"TopicAddress({self.topic!r})"

    @classmethod
    def parse(cls, text: str) -> TopicAddress:
        """Parse the canonical ``"topic:<name>"`` form; raise `UserError` when malformed."""
        result = parse_address(text)
        if not isinstance(result, TopicAddress):
            raise UserError(
                f"{text!r} is an agent address, not a topic address; "
                "pass 'topic:<name>', e.g. 'topic:orders'"
            )
        return result


Address = AgentAddress | TopicAddress


_MAX_TEXTS = 1 << 16
ADDRESS_TEXTS: dict[int, tuple[AgentAddress | TopicAddress, str]] = {}
"""Canonical strings of addresses by identity: `id(address) -> (address, str(address))`.

Addresses are immutable, so the string of one object never changes; the entry holds the
object, so its id is not reused while the entry lives. The encoder reads this instead of
calling `__str__` (a Python method); `address_text` fills it.
"""


def address_text(address: AgentAddress | TopicAddress) -> str:
    """`str(address)`, memoized by identity in `ADDRESS_TEXTS` (bounded)."""
    hit = ADDRESS_TEXTS.get(id(address))
    if hit is not None and hit[0] is address:
        return hit[1]
    text = str(address)
    if len(ADDRESS_TEXTS) >= _MAX_TEXTS:
        ADDRESS_TEXTS.clear()
    ADDRESS_TEXTS[id(address)] = (address, text)
    return text


@functools.lru_cache(maxsize=65536)
def parse_address(text: str) -> AgentAddress | TopicAddress:
    """Parse either canonical form; raise `UserError` naming the problem and the fix.

    Results are cached (addresses are immutable and keys recur), which keeps the decode hot
    path to a dictionary lookup.
    """
    if not isinstance(text, str):
        raise UserError(
            f"an address must be a str, got {type(text).__name__}; "
            "pass 'agent_type/key' or 'topic:<name>'"
        )
    address: AgentAddress | TopicAddress
    if text.startswith(TOPIC_PREFIX):
        name = text[len(TOPIC_PREFIX) :]
        problem = _topic_problem(name)
        if problem:
            raise UserError(f"malformed topic address {text!r}: {problem}")
        address = TopicAddress.model_construct(topic=name)
    else:
        agent_type, sep, key = text.partition("/")
        if not sep:
            raise UserError(
                f"malformed agent address {text!r}: no '/' between agent type and key; "
                "write 'agent_type/key', e.g. 'support/user-42'"
            )
        problem = _agent_type_problem(agent_type) or _key_problem(key)
        if problem:
            raise UserError(f"malformed agent address {text!r}: {problem}")
        address = AgentAddress.model_construct(agent_type=agent_type, key=key)
    address_text(address)  # the encoder finds its string without calling __str__
    return address


def _coerce_address(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_address(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None
    return value


WireAddress = Annotated[
    AgentAddress | TopicAddress,
    BeforeValidator(_coerce_address),
    PlainSerializer(str, return_type=str),
]
"""An address field that accepts the canonical string and serializes back to it."""
