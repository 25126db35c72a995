from __future__ import annotations

from pathlib import Path

import pytest

from actors.context_sources import E5EmbeddingModel, LanceVectorStore
from actors.memory import LongTermMemory, ShortTermMemory, approx_token_count
from protocols.errors import ContextError, UserError
from protocols.events import ChatMessage, ToolCall


def msg(role: str, n_chars: int) -> ChatMessage:
    return ChatMessage(role=role, content="x" * n_chars)  # type: ignore[arg-type]


def test_token_window_trims_oldest_and_pins_system() -> None:
    memory = ShortTermMemory(max_tokens=50)
    memory.append(ChatMessage.system("be brief"))  # 4 + 2 = 6 tokens
    for _ in range(5):
        memory.append(msg("user", 40))  # 4 + 10 = 14 tokens each
    assert memory.tokens() <= 50
    assert memory.messages[0].role == "system"
    assert len(memory.messages) == 4 and memory.trimmed_count == 2
    trimmed = memory.append(msg("assistant", 40))
    assert len(trimmed) == 1 and memory.tokens() <= 50


def test_newest_message_kept_even_over_budget() -> None:
    memory = ShortTermMemory(max_tokens=10)
    memory.append(msg("user", 4))
    memory.append(msg("user", 400))
    assert len(memory.messages) == 1 and memory.messages[0].content == "x" * 400


def test_tool_results_never_orphaned() -> None:
    memory = ShortTermMemory(max_tokens=40)
    call = ToolCall(id="c1", name="lookup", arguments="{}")
    memory.append(ChatMessage.assistant(None, [call]))
    memory.append(ChatMessage.tool("c1", "y" * 60))
    memory.append(msg("user", 60))
    assert memory.messages[0].role != "tool"


def test_pluggable_counter() -> None:
    memory = ShortTermMemory(max_tokens=3)

    def words(m: ChatMessage) -> int:
        return len((m.content or "").split())

    for text in ["one two", "three four", "five"]:
        memory.append(ChatMessage.user(text), counter=words)
    assert [m.content for m in memory.messages] == ["three four", "five"]
    assert approx_token_count(ChatMessage.user("abcd" * 10)) == 14


async def test_summarize_hook_gets_trimmed_messages() -> None:
    memory = ShortTermMemory(max_tokens=30)
    seen: list[list[str]] = []

    async def summarize(trimmed: list[ChatMessage], previous: str | None) -> str:
        seen.append([m.content or "" for m in trimmed])
        return (previous or "") + f"[{len(trimmed)}]"

    for i in range(4):
        await memory.add(ChatMessage.user(f"message {i} " + "z" * 40), summarize=summarize)
    assert seen and all(batch for batch in seen)
    assert memory.summary == "[1]" * len(seen)
    context = memory.context()
    assert context[0].role == "system" and "Summary" in (context[0].content or "")
    restored = ShortTermMemory.model_validate_json(memory.model_dump_json())
    assert restored == memory


async def test_summarize_hook_must_return_str() -> None:
    memory = ShortTermMemory(max_tokens=5)
    memory.append(msg("user", 40))
    with pytest.raises(UserError, match="summary str"):
        await memory.add(msg("user", 40), summarize=lambda trimmed, prev: 42)  # type: ignore


@pytest.fixture
def long_term(tmp_path: Path, e5: E5EmbeddingModel) -> LongTermMemory:
    store = LanceVectorStore(str(tmp_path), dimension=384, metadata_schema={"agent_key": str})
    return LongTermMemory("memory", store, e5)


async def test_long_term_add_search_forget_per_key(long_term: LongTermMemory) -> None:
    a1 = await long_term.add("alice", "Alice is allergic to peanuts.")
    await long_term.add("alice", "Alice prefers email over phone calls.")
    await long_term.add("bob", "Bob is allergic to cats.")
    assert await long_term.add("alice", "Alice is allergic to peanuts.") == a1  # idempotent
    hits = await long_term.search("alice", "food allergy", k=5)
    assert [h["id"] for h in hits][0] == a1 and len(hits) == 2
    assert all(h["metadata"]["agent_key"] == "alice" for h in hits)
    assert [h["document"] for h in await long_term.search("bob", "allergy")] == [
        "Bob is allergic to cats."
    ]
    assert await long_term.forget("alice", [a1]) == 1
    assert len(await long_term.search("alice", "food allergy")) == 1
    assert await long_term.forget("alice") == 1
    assert await long_term.search("alice", "anything") == []
    assert len(await long_term.search("bob", "allergy")) == 1


async def test_long_term_bad_input(long_term: LongTermMemory) -> None:
    with pytest.raises(ContextError, match="agent_key"):
        await long_term.query({"op": "search", "query": "x"})
    with pytest.raises(ContextError, match="empty"):
        await long_term.query({"op": "add", "agent_key": "a", "query": ""})
    with pytest.raises(ContextError, match="unknown op"):
        await long_term.query({"op": "drop", "agent_key": "a"})


def test_long_term_needs_namespace_field(tmp_path: Path, e5: E5EmbeddingModel) -> None:
    with pytest.raises(UserError, match="metadata_schema"):
        LongTermMemory("m", LanceVectorStore(str(tmp_path), dimension=384), e5)
