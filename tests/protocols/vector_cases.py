"""The golden vectors' source objects: fixed ids, clocks and contents, built in code.

tests/protocols/vectors/<name>.hex holds their bytes; regenerate them only on purpose with
FLINK_ACTORS_REGEN_VECTORS=1 (and review the diff: a change breaks every deployed reader).
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from protocols import DeadLetter, DeadLetterReason, Envelope
from protocols.events import ChatMessage, ChatModelEvent, ToolResultEvent

VECTORS = Path(__file__).with_name("vectors")
NOW = 1767225600.0  # 2026-01-01T00:00:00Z, before every vector's deadline


def chat_request() -> Envelope:
    """Every header field set: ids, trace context, deadline, a retry, a header."""
    env = Envelope.wrap(
        ChatModelEvent(
            model="gpt-4o-mini",
            messages=[ChatMessage.system("Be brief."), ChatMessage.user("Capital of France?")],
            max_iterations=3,
        ),
        recipient="support/customer-84721",
        sender="router/eu-1",
        correlation_id=UUID("01936f3e-5a00-7000-8000-000000000001"),
        causation_id=UUID("01936f3e-5a00-7000-8000-000000000002"),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="vendor=abc",
        deadline=4102444800.0,
        attempt=2,
        headers={"tenant": "acme"},
    )
    return env.model_copy(
        update={
            "message_id": UUID("01936f3e-5a00-7abc-8def-0123456789ab"),
            "created_at": 1767225600.25,
        }
    )


def tool_result_to_topic() -> Envelope:
    """The smallest header: a topic recipient, every optional field nil."""
    env = Envelope.wrap(
        ToolResultEvent(tool_name="search", result={"hits": [1, 2]}, call_id="c1"),
        recipient="topic:tool-results",
    )
    return env.model_copy(
        update={
            "message_id": UUID("01936f3e-5a01-7000-8000-00000000000f"),
            "created_at": 1767225601.0,
        }
    )


def dead_letter() -> DeadLetter:
    return DeadLetter(
        reason=DeadLetterReason.TRUNCATED,
        message="truncated envelope: 3 bytes, the fixed header alone is 12",
        original=b"FA\x01",
        source_topic="agents.in",
        source_partition=3,
        source_offset=1234,
        failed_at=1767225600.5,
    )


ENVELOPES = {"chat_request": chat_request, "tool_result_to_topic": tool_result_to_topic}


def to_hex(data: bytes) -> str:
    """16 bytes a line, lowercase: diffable, and whitespace is ignored when read."""
    hexed = data.hex()
    return "\n".join(hexed[i : i + 32] for i in range(0, len(hexed), 32)) + "\n"


def read_vector(name: str) -> bytes:
    return bytes.fromhex("".join((VECTORS / f"{name}.hex").read_text().split()))
