"""`as_tool`: a context source as a plain async function with a real signature and docstring.

Tool registries (`@tool`, an `AgentWorkflow`'s tool list) derive a tool's JSON schema from the
function's signature and Google-style docstring; the function built here carries both, taken
from the source, and forwards its arguments to `source.query`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from actors.context_sources.base import ContextSource

__all__ = ["as_tool"]


def as_tool(source: ContextSource, *, name: str | None = None) -> Callable[..., Awaitable[Any]]:
    """Wrap `source` as an async tool function named `name` (default: the source's name)."""
    signature = source.tool_signature()

    async def tool_fn(**arguments: Any) -> Any:
        bound = signature.bind(**arguments)
        bound.apply_defaults()
        return await source.query(source.payload_from_arguments(dict(bound.arguments)))

    tool_fn.__name__ = tool_fn.__qualname__ = name or source.name
    tool_fn.__doc__ = source.tool_doc()
    tool_fn.__signature__ = signature  # type: ignore[attr-defined]
    tool_fn.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {
        "return": signature.return_annotation
    }
    tool_fn.__context_source__ = source  # type: ignore[attr-defined]
    return tool_fn
