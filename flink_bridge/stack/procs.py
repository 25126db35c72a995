"""Pid files and the start/stop of the stack's background processes.

Why pid files with a start time: `down` must stop exactly the processes `up` started, never
another user's, and a pid can be reused after a reboot or a crash. A pid file records the pid
and the process's start time; a file whose process is gone (or is a different process with
the same pid) is stale and is removed, with a log line, instead of being trusted.

Each service runs in its own session (process group), so `stop_process` can reach the helper
processes it forks (Ray's raylet and GCS, the JVMs under Flink's scripts) without touching
anything else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "PidFile",
    "PidRecord",
    "is_alive",
    "start_process",
    "stop_process",
]

_log = logging.getLogger("flink_actors.flink_bridge.stack")

# Popen objects of processes started by this interpreter, kept so they can be reaped:
# an exited child that nobody waits for stays a zombie and looks alive to psutil.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds."""

    pid: int
    create_time: float
    name: str


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def is_alive(pid: int, create_time: float | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when given, started at `create_time`."""
    _reap(pid)
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True


class PidFile:
    """A JSON pid file under the stack's ``run/`` folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, pid: int, name: str) -> PidRecord:
        """Record `pid` (with its start time) for the service `name`."""
        record = PidRecord(pid=pid, create_time=psutil.Process(pid).create_time(), name=name)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record.__dict__), encoding="utf-8")
        tmp.replace(self.path)
        return record

    def read(self) -> PidRecord | None:
        """The record, or None if there is no file (an unreadable file counts as none)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return PidRecord(int(data["pid"]), float(data["create_time"]), str(data["name"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            _log.warning("unreadable pid file %s; treating it as stale", self.path)
            return PidRecord(pid=-1, create_time=0.0, name="?")

    def live(self) -> PidRecord | None:
        """The record if its process still runs; a stale file is deleted and None returned."""
        record = self.read()
        if record is None:
            return None
        if record.pid > 0 and is_alive(record.pid, record.create_time):
            return record
        self.remove()
        _log.warning("removed stale pid file %s (pid %d is not running)", self.path, record.pid)
        return None

    def is_stale(self) -> bool:
        """True if the file exists but its process is gone (does not delete it)."""
        record = self.read()
        return record is not None and not (
            record.pid > 0 and is_alive(record.pid, record.create_time)
        )

    def remove(self) -> None:
        """Delete the file if present."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def start_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session with stdout+stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by `pid` (our services are session leaders)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_process(record: PidRecord, *, timeout_s: float) -> bool:
    """SIGTERM the service and its descendants, wait up to `timeout_s`, then SIGKILL.

    Returns True if it stopped on SIGTERM, False if it needed SIGKILL (or was already gone).
    """
    if not is_alive(record.pid, record.create_time):
        return False
    family = [psutil.Process(record.pid), *_descendants(record.pid)]
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not any(_running(p) for p in family):
            return True
        time.sleep(0.2)
    _log.warning(
        "%s (pid %d) ignored SIGTERM for %.0fs; killing", record.name, record.pid, timeout_s
    )
    _signal_group(record.pid, signal.SIGKILL)
    for proc in family:
        if _running(proc):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
    psutil.wait_procs([p for p in family if _running(p)], timeout=5)
    _reap(record.pid)
    return False


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_recorded(pid_file: PidFile, *, timeout_s: float) -> bool:
    """Stop the process a pid file records (SIGTERM, then SIGKILL after `timeout_s`) and remove
    the file; False if it was not running."""
    record = pid_file.live()
    if record is None:
        return False
    stop_process(record, timeout_s=timeout_s)
    pid_file.remove()
    return True
