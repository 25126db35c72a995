"""Run ``flink-actors`` in a subprocess for tests, and stop all it started on a timeout.

The command starts further processes (the job's Python, its JVM); it runs in a session of its
own, so a timeout can stop that whole process group and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    output: str


def run_cli(argv: list[str], *, timeout_s: float, env: dict[str, str] | None = None) -> CliResult:
    """``python -m flink_bridge.cli ARGV`` from the repo root; output is stdout + stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flink_bridge.cli", *argv],
        cwd=ROOT,
        env=dict(os.environ) if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        output, _ = proc.communicate()
        raise AssertionError(
            f"flink-actors {argv!r} ran over {timeout_s}s:\n{output[-4000:]}"
        ) from None
    return CliResult(proc.returncode, output)


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group of `proc` (its own session), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(15)
            os.killpg(proc.pid, 0)  # raises when the whole group is gone
        except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
            if proc.poll() is not None:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    return
