"""Pid files and process stop: only our process (pid + start time), SIGKILL after the timeout."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from flink_bridge.stack.procs import PidFile, is_alive, start_process, stop_process

_IGNORES_TERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _wait_for(path: Path, text: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}")


def test_stop_escalates_to_sigkill_and_reaps(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    proc = start_process([sys.executable, "-c", _IGNORES_TERM], log_path=log)
    _wait_for(log, "ready")
    record = PidFile(tmp_path / "p.pid").write(proc.pid, "stubborn")
    began = time.monotonic()
    assert stop_process(record, timeout_s=1.0) is False  # needed SIGKILL
    assert time.monotonic() - began < 10
    assert not is_alive(record.pid, record.create_time)


def test_stop_on_sigterm_includes_children(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = start_process([sys.executable, "-c", script], log_path=log)
    _wait_for(log, "child ")
    child_pid = int(log.read_text().split()[1])
    record = PidFile(tmp_path / "p.pid").write(proc.pid, "parent")
    assert stop_process(record, timeout_s=20.0) is True
    assert not is_alive(proc.pid) and not is_alive(child_pid)


def test_pid_file_round_trip_and_identity(tmp_path: Path) -> None:
    proc = start_process(
        [sys.executable, "-c", "import time; time.sleep(30)"], log_path=tmp_path / "l"
    )
    pid_file = PidFile(tmp_path / "run" / "x.pid")
    record = pid_file.write(proc.pid, "x")
    assert pid_file.read() == record
    assert pid_file.live() == record
    assert not is_alive(proc.pid, record.create_time + 100)  # same pid, other process
    stop_process(record, timeout_s=10)
    assert pid_file.live() is None  # stale now: cleaned
    assert not pid_file.path.exists()
