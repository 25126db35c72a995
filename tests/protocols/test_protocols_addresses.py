"""Addresses: one canonical string each, parsed back exactly, malformed input refused clearly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from protocols import AgentAddress, TopicAddress, UserError, parse_address
from protocols.addresses import address_text

agent_types = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
keys = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
topics = st.from_regex(r"[A-Za-z0-9._\-]{1,30}", fullmatch=True)


def test_agent_address_canonical_form_and_parse() -> None:
    addr = AgentAddress("support", "user-42")
    assert str(addr) == "support/user-42"
    assert AgentAddress.parse("support/user-42") == addr
    assert AgentAddress(agent_type="support", key="user-42") == addr


def test_key_may_contain_slashes_and_colons() -> None:
    addr = AgentAddress.parse("orders/eu:shop/123")
    assert (addr.agent_type, addr.key) == ("orders", "eu:shop/123")
    assert str(addr) == "orders/eu:shop/123"


def test_topic_address_canonical_form() -> None:
    topic = TopicAddress("orders.v1")
    assert str(topic) == "topic:orders.v1"
    assert TopicAddress.parse("topic:orders.v1") == topic
    assert parse_address("topic:orders.v1") == topic


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("support", "no '/'"),
        ("/user-42", "agent_type ''"),
        ("1support/x", "agent_type '1support'"),
        ("sup port/x", "agent_type 'sup port'"),
        ("support/", "key must not be empty"),
        ("support/a\nb", "control character"),
        ("topic:", "topic ''"),
        ("topic:a b", "topic 'a b'"),
        ("support/" + "k" * 1025, "limit is 1024"),
    ],
)
def test_malformed_addresses_raise_user_error_naming_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(UserError) as info:
        parse_address(text)
    assert fragment in str(info.value)
    assert repr(text)[:30] in str(info.value)


def test_parse_of_the_wrong_kind_says_so() -> None:
    with pytest.raises(UserError, match="topic address, not an agent"):
        AgentAddress.parse("topic:orders")
    with pytest.raises(UserError, match="agent address, not a topic"):
        TopicAddress.parse("support/u1")


def test_non_string_is_refused() -> None:
    with pytest.raises(UserError, match="must be a str"):
        parse_address(42)  # type: ignore[arg-type]


def test_constructor_validates() -> None:
    with pytest.raises(ValidationError, match="agent_type"):
        AgentAddress("bad/type", "k")
    with pytest.raises(ValidationError, match="key must not be empty"):
        AgentAddress("ok", "")
    with pytest.raises(ValidationError, match="topic"):
        TopicAddress("no spaces")


def test_addresses_are_frozen_and_hashable() -> None:
    addr = AgentAddress("a", "b")
    with pytest.raises(ValidationError):
        addr.key = "c"  # type: ignore[misc]
    assert {addr: 1}[AgentAddress("a", "b")] == 1


@given(agent_types, keys)
def test_agent_round_trip_and_never_a_topic(agent_type: str, key: str) -> None:
    addr = AgentAddress(agent_type, key)
    parsed = parse_address(str(addr))
    assert isinstance(parsed, AgentAddress)
    assert parsed == addr


@given(topics)
def test_topic_round_trip_and_never_an_agent(name: str) -> None:
    parsed = parse_address(str(TopicAddress(name)))
    assert isinstance(parsed, TopicAddress)
    assert parsed.topic == name


@given(st.text(max_size=60))
def test_parse_raises_only_user_error(text: str) -> None:
    try:
        result = parse_address(text)
    except UserError:
        return
    assert str(result) == text


def test_address_text_is_the_canonical_string() -> None:
    built = AgentAddress("support", "k/1")  # not made by parse_address
    assert address_text(built) == "support/k/1" == str(built)
    assert address_text(built) is address_text(built)
    assert address_text(parse_address("topic:t")) == "topic:t"
