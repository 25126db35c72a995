"""Port checks and the status record every component reports.

Why check ports before starting: a JVM that cannot bind prints a long stack trace to its log
and exits later; checking first gives the one-line error that names the config key to change.
"""

from __future__ import annotations

import enum
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from flink_bridge.stack.errors import PortInUseError
from flink_bridge.stack.procs import PidFile, is_alive

__all__ = [
    "LOOPBACK",
    "ComponentStatus",
    "Health",
    "check_port_free",
    "free_port",
    "port_open",
    "wait_until",
]

LOOPBACK = "127.0.0.1"


class Health(enum.Enum):
    """Lifecycle state of one component as `status` sees it."""

    UP = "up"
    """Running and answering."""
    STARTING = "starting"
    """Running but not answering yet."""
    DOWN = "down"
    """Not running."""
    STALE = "stale"
    """A pid file named a process that is gone (the file was cleaned)."""
    NOT_INSTALLED = "not installed"
    """The component's code or jars are not present."""


@dataclass(frozen=True, kw_only=True)
class ComponentStatus:
    """One row of `flink-actors status`."""

    name: str
    health: Health
    address: str | None = None
    pid: int | None = None
    detail: str = ""


def port_open(port: int, host: str = LOOPBACK, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def check_port_free(port: int, *, key: str, component: str) -> None:
    """Raise PortInUseError (naming `key`) unless 127.0.0.1:`port` can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            raise PortInUseError(port, key, component) from None
    # A listener on 0.0.0.0 or on another address family can still hold it.
    if port_open(port):
        raise PortInUseError(port, key, component)


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for tests and fixtures)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.5,
    abort: Callable[[], bool] | None = None,
) -> bool:
    """Poll `predicate` until it is true (True), `abort` is true or time runs out (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if abort is not None and abort():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def recorded_status(
    name: str,
    pid_file: PidFile,
    *,
    address: str,
    answers: Callable[[], bool],
    detail: str = "",
) -> ComponentStatus:
    """Status of a component started with a pid file: stale (file removed), down, starting
    (alive, not answering yet) or up."""
    if pid_file.is_stale():
        pid_file.remove()
        return ComponentStatus(
            name=name,
            health=Health.STALE,
            address=address,
            detail=f"removed stale pid file {str(pid_file.path)!r}",
        )
    record = pid_file.read()
    if record is None or not is_alive(record.pid, record.create_time):
        return ComponentStatus(name=name, health=Health.DOWN, address=address)
    health = Health.UP if answers() else Health.STARTING
    return ComponentStatus(name=name, health=health, address=address, pid=record.pid, detail=detail)
