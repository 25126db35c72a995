"""The promised one-line errors: port in use, no Java, missing jars, stale pid file, no model.

None of these start a service: `up` checks ports, Java and jars before it starts anything.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flink_bridge.cli import app
from flink_bridge.stack import stack as stack_mod
from flink_bridge.stack.errors import JavaNotFoundError
from flink_bridge.stack.health import free_port
from flink_bridge.stack.java import find_java
from flink_bridge.stack.procs import PidFile


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, args, env=env)
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines


def _ports_args(tmp_path: Path) -> list[str]:
    ports = [free_port() for _ in range(4)]
    return [
        "--project-dir", str(tmp_path),
        "--kafka-port", str(ports[0]),
        "--kafka-controller-port", str(ports[1]),
        "--ray-port", str(ports[2]),
        "--ray-client-port", str(ports[3]),
    ]  # fmt: skip


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_port_in_use_names_port_key_and_flag(tmp_path: Path, busy_port: int) -> None:
    args = ["up", "--no-fetch-jars", *_ports_args(tmp_path)]
    args[args.index("--ray-port") + 1] = str(busy_port)
    code, lines = _invoke(args)
    assert code == 1
    assert len(lines) == 1, lines
    assert f"port {busy_port} for Ray GCS ('ray_port') is already in use" in lines[0]
    assert "--ray-port" in lines[0] and "FLINK_ACTORS_RAY_PORT" in lines[0]
    assert not (tmp_path / ".flink-actors" / "run").exists()  # nothing was started


def test_no_java_on_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(JavaNotFoundError, match="install a JDK 17"):
        find_java({"PATH": str(empty)})
    env = {"PATH": str(empty), "JAVA_HOME": ""}
    code, lines = _invoke(["up", "--no-fetch-jars", *_ports_args(tmp_path)], env=env)
    assert code == 1
    assert len(lines) == 1, lines
    assert "Java not found" in lines[0]
    assert "install a JDK 17" in lines[0] and "JAVA_HOME" in lines[0]


def test_java_home_pointing_nowhere(tmp_path: Path) -> None:
    env = {"JAVA_HOME": str(tmp_path / "no-jdk")}
    code, lines = _invoke(["up", "--no-fetch-jars", *_ports_args(tmp_path)], env=env)
    assert code == 1
    assert len(lines) == 1, lines
    assert f"JAVA_HOME={str(tmp_path / 'no-jdk')!r} has no bin/java" in lines[0]
    assert "set JAVA_HOME" in lines[0]


def test_missing_jars_names_the_fetch_command(tmp_path: Path) -> None:
    env = {"FLINK_ACTORS_JARS_DIR": str(tmp_path / "jars")}
    code, lines = _invoke(["up", "--no-fetch-jars", *_ports_args(tmp_path)], env=env)
    assert code == 1
    assert len(lines) == 1, lines
    assert "jars are missing from" in lines[0]
    assert "fetch them with 'flink-actors jars'" in lines[0]


def test_model_flag_without_model_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_mod, "MODEL_MODULE", "flink_bridge.no_such_model_module")
    code, lines = _invoke(["up", "--model", "--no-fetch-jars", *_ports_args(tmp_path)])
    assert code == 1
    assert len(lines) == 1, lines
    assert "local model server is not installed" in lines[0]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_pid_file_is_reported_and_cleaned(tmp_path: Path) -> None:
    state = tmp_path / "state"
    kafka_pid = state / "run" / "kafka.pid"
    kafka_pid.parent.mkdir(parents=True)
    kafka_pid.write_text(json.dumps({"pid": _dead_pid(), "create_time": 1.0, "name": "kafka"}))
    # A live pid with another start time: a reused pid, also stale (and never signalled).
    ray_pid = state / "run" / "ray.pid"
    ray_pid.write_text(json.dumps({"pid": os.getpid(), "create_time": 1.0, "name": "ray"}))

    code, lines = _invoke(["status", "--json", "--state-dir", str(state)])
    assert code == 0
    rows = {row["name"]: row for row in json.loads(lines[-1])}
    assert rows["kafka"]["health"] == "stale"
    assert "removed stale pid file" in rows["kafka"]["detail"]
    assert rows["ray"]["health"] == "stale"
    assert not kafka_pid.exists() and not ray_pid.exists()

    # `down` with a stale file: a one-line warning, the file is removed, nothing is killed.
    kafka_pid.write_text(json.dumps({"pid": _dead_pid(), "create_time": 1.0, "name": "kafka"}))
    code, lines = _invoke(["down", "--state-dir", str(state)])
    assert code == 0
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "removed stale pid file" in warnings[0], lines
    assert "kafka: not running" in lines
    assert not kafka_pid.exists()


def test_unreadable_pid_file_counts_as_stale(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "x.pid")
    pid_file.path.write_text("not json")
    assert pid_file.is_stale()
    assert pid_file.live() is None
    assert not pid_file.path.exists()
