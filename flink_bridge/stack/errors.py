"""Errors of the local stack: each is one line that says what went wrong and how to fix it.

They are `UserError`s because the fix is on the user's side (free a port, install a JDK,
fetch the jars); a service that fails to come up for other reasons is a `StackStartError`
that points at its log file.
"""

from __future__ import annotations

from pathlib import Path

from flink_bridge.stack.config import config_key_hint
from protocols.errors import UserError

__all__ = [
    "JarsMissingError",
    "JavaNotFoundError",
    "MavenNotFoundError",
    "PortInUseError",
    "StackError",
    "StackStartError",
    "StalePidFileError",
]


class StackError(UserError):
    """Root of the local stack's errors; the message is a single line naming the fix."""


class PortInUseError(StackError):
    """A port the stack needs is taken by another process."""

    def __init__(self, port: int, key: str, component: str) -> None:
        self.port = port
        self.key = key
        self.component = component
        super().__init__(
            f"port {port} for {component} ({key!r}) is already in use on 127.0.0.1; "
            f"stop what holds it or pick another port: {config_key_hint(key)}"
        )


class JavaNotFoundError(StackError):
    """No usable `java` executable."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Java not found ({detail}); install a JDK 17 (e.g. apt-get install openjdk-17-jdk) "
            "or set JAVA_HOME to one"
        )


class MavenNotFoundError(StackError):
    """`mvn` is needed to fetch the jars and is not on PATH."""

    def __init__(self) -> None:
        super().__init__(
            "Maven ('mvn') not found on PATH, needed once to fetch the jars; "
            "install Maven 3 (e.g. apt-get install maven) and run 'flink-actors jars'"
        )


class JarsMissingError(StackError):
    """The jars of a component have not been fetched yet."""

    def __init__(self, what: str, folder: Path) -> None:
        self.folder = folder
        super().__init__(
            f"{what} jars are missing from {str(folder)!r}; fetch them with 'flink-actors jars'"
        )


class StalePidFileError(StackError):
    """A pid file names a process that is gone or is not ours (only raised when not cleaned)."""

    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        self.pid = pid
        super().__init__(
            f"stale pid file {str(path)!r} names pid {pid}, which is not running it; "
            "delete the file or run 'flink-actors down' to clean it"
        )


class StackStartError(StackError):
    """A service did not come up in time or exited during start."""

    def __init__(self, component: str, problem: str, log: Path | None) -> None:
        self.component = component
        self.log = log
        where = f"; see {str(log)!r}" if log is not None else ""
        super().__init__(f"{component} {problem}{where}")
