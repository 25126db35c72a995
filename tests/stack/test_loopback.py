"""The loopback checker: what counts as loopback, and a loopback-only child passes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flink_bridge.stack.loopback import is_loopback, non_loopback_sockets, process_tree


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("10.0.0.1", False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_loopback_listener_and_its_child_pass() -> None:
    script = (
        "import socket, subprocess, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "c = socket.create_connection(s.getsockname())\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        child_pid = int(proc.stdout.readline())
        assert {p.pid for p in process_tree([proc.pid])} >= {proc.pid, child_pid}
        assert non_loopback_sockets([proc.pid]) == []
    finally:
        for p in process_tree([proc.pid])[::-1]:
            p.kill()
        proc.wait()


def test_gone_pids_are_ignored() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert non_loopback_sockets([proc.pid]) == []
