"""Starting or joining Ray from inside a Flink Python worker, on loopback only.

Two traps this module handles, both measured (see docs/architecture.md / DESIGN.md):

- PyFlink *thread* mode runs Python inside the JVM (Pemja) and replaces `sys.stdout` and
  `sys.stderr` with objects that have no `fileno()`; `ray.init` calls `fileno()` on them and
  fails with "'StdErrCatcher' object has no attribute 'fileno'". `real_std_streams()` swaps in
  real file objects (`os.devnull`, or a log file) while Ray starts, then puts the originals back.
- Ray picks the machine's non-loopback interface unless told otherwise, and
  ``_node_ip_address="127.0.0.1"`` alone does not help (Ray "resolves" a loopback address to the
  machine's interface). Ray's local-only mode does: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
  in the environment (read when ray is imported, inherited by its processes) every Ray process
  binds and talks to 127.0.0.1, and Ray turns token auth on. `connect_ray` sets it for a Ray it
  starts; a remote head is only ever reached at the address given (and token auth is switched
  on for the client when a token is present).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from protocols.errors import ConfigError

__all__ = ["connect_ray", "real_std_streams", "release_ray"]

logger = logging.getLogger("flink_actors.flink_bridge.ray_pool")
# Two agent operators in one TaskManager open their bridges at the same time; two concurrent
# ray.init calls in one process hang (both wait in Node.__init__), so they take turns.
_INIT_LOCK = threading.Lock()

_START_FIX = (
    "start the embedded stack (`flink-actors stack up`) or a head with "
    "`ray start --head --node-ip-address=127.0.0.1 --port=6379`, "
    "or pass ray_address=None to start a local Ray in this process"
)


def _has_fileno(stream: object) -> bool:
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


@contextlib.contextmanager
def real_std_streams(log_path: str | None = None) -> Iterator[None]:
    """Make `sys.stdout`/`sys.stderr` real files for the duration of the block (if they are not).

    Needed around `ray.init` under PyFlink thread mode (see the module docstring).
    """
    if _has_fileno(sys.stdout) and _has_fileno(sys.stderr):
        yield
        return
    saved = sys.stdout, sys.stderr
    sink: IO[str] = open(log_path or os.devnull, "a")  # noqa: SIM115 - closed below
    try:
        if not _has_fileno(sys.stdout):
            sys.stdout = sink
        if not _has_fileno(sys.stderr):
            sys.stderr = sink
        yield
    finally:
        sys.stdout, sys.stderr = saved
        sink.close()


def _split_address(address: str) -> tuple[str, int]:
    addr = address.removeprefix("ray://")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            "ray_address", f"{address!r} is not 'host:port'", "pass e.g. '127.0.0.1:6379'"
        )
    return host, int(port)


def _check_head(address: str, timeout_s: float) -> None:
    """Fail fast, with the fix, when nothing listens at the head's address.

    `ray.init(address=...)` would otherwise retry for a long time and end in a generic error.
    """
    host, port = _split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            "ray_address", f"no Ray head answers at {address!r} ({exc})", _START_FIX
        ) from exc


def _enable_token_auth() -> None:
    """A loopback head runs with token auth; its clients must say so (``RAY_AUTH_MODE=token``)
    and find the token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``).

    Ray reads the mode into a cached config when it is imported, so when ray was imported
    before this runs, the cache is refreshed the way Ray's own token setup does it.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    has_token = (
        bool(os.environ.get("RAY_AUTH_TOKEN"))
        or (Path(token_path) if token_path else Path.home() / ".ray" / "auth_token").exists()
    )
    if not has_token:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray._raylet" in sys.modules:
        from ray._raylet import Config  # type: ignore[attr-defined]  # ray's cached config

        Config.initialize("")


_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _local_only_mode() -> None:
    """Keep a Ray started by this process on 127.0.0.1 (see the module docstring)."""
    os.environ.setdefault(_LOCAL_ONLY_ENV, "0")
    if os.environ[_LOCAL_ONLY_ENV] != "0":
        logger.warning(
            "%s=%r: a Ray started here may bind a non-loopback address",
            _LOCAL_ONLY_ENV,
            os.environ[_LOCAL_ONLY_ENV],
        )
        return
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        # ray was imported before the variable was set: apply what the import would have read.
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


class _Holders:
    """Who holds the Ray connection of this process (guarded by `_INIT_LOCK`).

    Several bridges share one Ray per process (a TaskManager runs every agent operator of a job
    in one interpreter). The one whose `connect_ray` happened to start Ray must not shut it down
    while another still uses it: that kills the other's worker actors (they are owned by this
    driver) and its calls never come back (seen: a bounded job whose Table pipeline ended first
    left its DataStream pipeline's drain waiting for results).
    """

    count = 0
    started = False  # Ray in this process was initialised by connect_ray


def connect_ray(
    *,
    address: str | None,
    namespace: str,
    num_cpus: int | None,
    log_to_driver: bool,
    connect_timeout_s: float,
) -> bool:
    """Initialise Ray in this process unless it already is, and hold it until `release_ray`.

    Returns True if this call initialised it. Every call must be matched by one `release_ray`;
    the last release of a Ray that `connect_ray` started shuts it down.
    """
    if address is None:
        _local_only_mode()
    else:
        _check_head(address, connect_timeout_s)
        _enable_token_auth()
    with _INIT_LOCK:
        started = _init_ray(address, namespace, num_cpus, log_to_driver)
        if started:  # a Ray shut down behind our back leaves no holders
            _Holders.count, _Holders.started = 0, True
        _Holders.count += 1
        return started


def release_ray() -> None:
    """Let go of a `connect_ray` hold. Shuts Ray down when the last holder of a Ray that
    `connect_ray` started lets go; a Ray initialised by someone else is left running."""
    with _INIT_LOCK:
        if _Holders.count == 0:
            return
        _Holders.count -= 1
        if _Holders.count or not _Holders.started:
            return
        _Holders.started = False
        import ray

        ray.shutdown()


def _init_ray(
    address: str | None, namespace: str, num_cpus: int | None, log_to_driver: bool
) -> bool:
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, object] = {
        "namespace": namespace,
        "log_to_driver": log_to_driver,
        "ignore_reinit_error": True,
        "configure_logging": False,
    }
    if address is None:
        kwargs.update(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        kwargs["address"] = address
    with real_std_streams():
        try:
            ray.init(**kwargs)  # type: ignore[arg-type]
        except ConnectionError as exc:
            raise ConfigError(
                "ray_address", f"could not join the Ray head at {address!r}: {exc}", _START_FIX
            ) from exc
    logger.info("ray initialised (address=%r, namespace=%r)", address, namespace)
    return True
