"""The `ContextSource` contract: a named, picklable lookup the engine runs as an effect.

A step asks for context through its ctx; the engine turns the ask into an
`EffectRequest(kind=EffectKind.CONTEXT, target=source.name, payload=...)`, a worker runs
`await source.query(payload)`, and the result is journaled so a replay returns the same context
without asking again. That is why a source is a *definition* (it pickles to Ray workers and is
rebuilt on the driver) whose connections, clients and models open lazily in the process that
executes it, and why `query` returns only msgpack-friendly data.
"""

from __future__ import annotations

import abc
import inspect
from typing import Any, ClassVar

from protocols.errors import ContextError, UserError

__all__ = ["ContextSource", "check_source_name"]


def check_source_name(name: str) -> str:
    """Validate a source name: it becomes an effect target and a tool name."""
    if not isinstance(name, str) or not name or not name.replace("_", "a").isalnum():
        raise UserError(
            f"context source name {name!r} is invalid; use letters, digits and underscores"
        )
    return name


class ContextSource(abc.ABC):
    """A named context lookup, executed as an effect of kind `context`.

    Subclasses keep their definition in plain attributes and their opened resources in the
    attributes named by `_transient`, which are dropped when the source is pickled and reopened
    lazily on first use in the executing process.
    """

    name: str
    description: str = ""
    _transient: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    async def query(self, payload: dict[str, Any]) -> Any:
        """Run one lookup; return msgpack-friendly data; raise `ContextError` on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release opened resources; the source reopens them on its next query."""

    def tool_signature(self) -> inspect.Signature:
        """The signature of this source used as a tool (see `as_tool`)."""
        return inspect.Signature(
            [inspect.Parameter("payload", inspect.Parameter.KEYWORD_ONLY, annotation=dict)]
        )

    def tool_doc(self) -> str:
        """The Google-style docstring of this source used as a tool."""
        return f"{self.description or 'Look up context.'}\n\nArgs:\n    payload: The lookup."

    def payload_from_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Map tool-call arguments to a `query` payload."""
        return dict(arguments.get("payload") or {})

    def _error(self, message: str, cause: BaseException | None = None) -> ContextError:
        """A `ContextError` naming this source, with its cause attached."""
        err = ContextError(f"context source {self.name!r}: {message}")
        err.__cause__ = cause
        return err

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in self._transient:
            state[key] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
