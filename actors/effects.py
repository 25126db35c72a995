"""Effects: the calls a workflow makes to the outside world, as data.

A step never calls a model or a tool itself. It asks through its context; the engine turns the
ask into an `EffectRequest` with a deterministic `call_id`; a runtime (the local runner, the Ray
pool behind the Flink operator) executes it with an `EffectExecutor` and journals the
`EffectResult` under that id. Re-running a turn with the journal replays recorded results
instead of calling again (contract 2 in DESIGN.md).

Both classes hold only msgpack-friendly data so they can travel to Ray workers and live in
Flink keyed state.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from protocols.events import Usage

__all__ = ["EffectError", "EffectExecutor", "EffectKind", "EffectRequest", "EffectResult"]


class EffectKind(StrEnum):
    MODEL = "model"  # target: model name; payload: {"messages": [...], "tools": [...]}
    TOOL = "tool"  # target: local tool name; payload: {"arguments": {...}}
    MCP = "mcp"  # target: "server/tool"; payload: {"arguments": {...}}
    CONTEXT = "context"  # target: context source name; payload: source specific


class EffectRequest(BaseModel):
    """One call to execute. `call_id` is unique within the agent key's turn and deterministic."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    kind: EffectKind
    target: str
    payload: dict[str, Any] = Field(default_factory=dict)
    deadline_s: float | None = None  # absolute unix time; None: the executor's default timeout
    rate_key: str | None = None  # admission-control bucket, e.g. "openai/gpt-4o-mini"


class EffectError(BaseModel):
    """Why an effect failed: the exception class name, its message, and whether to retry."""

    model_config = ConfigDict(frozen=True)

    error_type: str
    message: str
    retryable: bool = False


class EffectResult(BaseModel):
    """The outcome of one `EffectRequest`, journaled under its `call_id`."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    value: Any = None
    error: EffectError | None = None
    usage: Usage | None = None
    attempts: int = 1
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class EffectExecutor(Protocol):
    """Executes effects. Implementations never raise for a failed call: they return a result
    with `error` set, so one failure cannot take down its batch-mates."""

    async def execute(self, request: EffectRequest) -> EffectResult: ...
