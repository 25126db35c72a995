"""The one exception tree of flink-actors.

```
FlinkActorsError
 ├── UserError                 misuse: bad definitions, bad config, bad arguments (fix the code)
 │    └── ConfigError          a bad configuration value; names the key and the fix
 ├── SerializationError        bytes that cannot be encoded or decoded
 └── AgentRunError             a failure while an agent runs
      ├── ModelError           a model call failed
      │    ├── ModelRetryableError     429, 5xx, timeouts: worth retrying
      │    └── ModelNonRetryableError  4xx other than 429, bad responses
      ├── ToolError            a tool (local or MCP) failed or got bad arguments
      ├── ContextError         a context lookup (vector, SQL, REST) failed
      ├── DeliveryError        an envelope could not be delivered
      └── DeadlineExceeded     a call or envelope ran past its deadline
```

Signals used for control flow (none yet) stay outside this tree.
"""

from __future__ import annotations

__all__ = [
    "AgentRunError",
    "ConfigError",
    "ContextError",
    "DeadlineExceeded",
    "DeliveryError",
    "FlinkActorsError",
    "ModelError",
    "ModelNonRetryableError",
    "ModelRetryableError",
    "SerializationError",
    "ToolError",
    "UserError",
]


class FlinkActorsError(Exception):
    """Root of every error raised by flink-actors."""


class UserError(FlinkActorsError):
    """The caller misused the API; the message says what to change."""


class ConfigError(UserError):
    """A configuration value is invalid; the message names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"config {key!r}: {problem}; {fix}")


class SerializationError(FlinkActorsError):
    """Bytes could not be encoded or decoded."""


class AgentRunError(FlinkActorsError):
    """A failure while an agent runs."""

    retryable: bool = False


class ModelError(AgentRunError):
    """A model call failed."""


class ModelRetryableError(ModelError):
    """A model call failed in a way worth retrying (429, 5xx, timeout)."""

    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelNonRetryableError(ModelError):
    """A model call failed in a way that retrying cannot fix."""


class ToolError(AgentRunError):
    """A tool call failed or was given invalid arguments."""


class ContextError(AgentRunError):
    """A context lookup (vector, SQL, REST) failed."""


class DeliveryError(AgentRunError):
    """An envelope could not be delivered."""


class DeadlineExceeded(AgentRunError):
    """A call or an envelope ran past its deadline."""
