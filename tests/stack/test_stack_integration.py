"""The real stack through the real CLI: up, status, Kafka data across a restart, Ray token
auth, loopback-only sockets, the optional standalone Flink cluster, down.

One stack per module (started by `flink-actors up` in a temp project with free ports), since
each start costs tens of seconds on a small machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka import Producer

from flink_bridge.stack import flink_cluster, kafka_broker, ray_head
from flink_bridge.stack.config import StackConfig, load_config
from flink_bridge.stack.health import port_open
from flink_bridge.stack.kafka_client import KafkaClient
from flink_bridge.stack.loopback import non_loopback_sockets
from flink_bridge.stack.procs import PidFile

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "flink_bridge.cli"]
PROBE = Path(__file__).with_name("ray_client_probe.py")
REPO = Path(__file__).resolve().parents[2]


def _free_ports(count: int) -> list[int]:
    import socket

    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


def _cli(project: Path, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--project-dir", str(project)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def _stack_pids(config: StackConfig) -> list[int]:
    pids = []
    for path in sorted((config.state_dir / "run").glob("*.pid")):
        record = PidFile(path).read()
        if record is not None and record.pid > 0:
            pids.append(record.pid)
    return pids


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    # Short: Ray keeps its unix sockets under <state_dir>/ray/tmp only if that path is short.
    root = Path(tempfile.mkdtemp(prefix="fa-c-", dir="/tmp"))
    ports = _free_ports(6)
    (root / "flink-actors.toml").write_text(
        "\n".join(
            [
                f"kafka_port = {ports[0]}",
                f"kafka_controller_port = {ports[1]}",
                f"ray_port = {ports[2]}",
                f"ray_client_port = {ports[3]}",
                f"flink_rest_port = {ports[4]}",
                f"flink_rpc_port = {ports[5]}",
                "ray_num_cpus = 1",
                "startup_timeout_s = 300",
                "",
            ]
        )
    )
    result = _cli(root, "up")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield root
    finally:
        _cli(root, "down")
        if os.environ.get("FLINK_ACTORS_KEEP_TEST_STATE") != "1":
            import shutil

            shutil.rmtree(ray_head.ray_temp_dir(load_config(root, environ={})), ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def config(project: Path) -> StackConfig:
    return load_config(project, environ={})


def test_status_shows_each_component(project: Path, config: StackConfig) -> None:
    result = _cli(project, "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout.strip().splitlines()[-1])}
    assert set(rows) == {"kafka", "ray", "flink cluster", "model"}
    assert rows["kafka"]["health"] == "up"
    assert rows["kafka"]["address"] == config.kafka_bootstrap
    assert rows["ray"]["health"] == "up"
    assert rows["ray"]["address"] == config.ray_address
    assert rows["kafka"]["pid"] and rows["ray"]["pid"]
    assert rows["flink cluster"]["health"] == "down"  # the mini-cluster needs nothing

    table = _cli(project, "status")
    assert "kafka" in table.stdout and config.kafka_bootstrap in table.stdout


def test_up_again_is_idempotent(project: Path, config: StackConfig) -> None:
    before = _stack_pids(config)
    result = _cli(project, "up")
    assert result.returncode == 0, result.stderr
    assert _stack_pids(config) == before


def test_kafka_data_survives_down_and_up(project: Path, config: StackConfig) -> None:
    client = KafkaClient(config.kafka_bootstrap)
    topic = f"survive-{uuid.uuid4().hex[:8]}"
    client.create_topics([topic], partitions=2)
    records = [(f"k{i % 5}", f"v{i}") for i in range(200)]
    assert client.produce(topic, records) == 200
    first = client.consume(topic, 200, timeout=60)
    assert sorted(r.value for r in first) == sorted(v.encode() for _, v in records)

    old_pid = kafka_broker.kafka_pid_file(config).read()
    assert old_pid is not None
    assert kafka_broker.stop_kafka(config) is True
    assert not port_open(config.kafka_port)
    assert kafka_broker.kafka_pid_file(config).read() is None

    result = _cli(project, "up")  # restarts Kafka only; Ray keeps running
    assert result.returncode == 0, result.stderr
    new_pid = kafka_broker.kafka_pid_file(config).read()
    assert new_pid is not None and new_pid.pid != old_pid.pid

    assert topic in client.list_topics()
    again = client.consume(topic, 200, timeout=60)
    assert [
        (r.partition, r.offset, r.key, r.value)
        for r in sorted(again, key=lambda r: (r.partition, r.offset))
    ] == [
        (r.partition, r.offset, r.key, r.value)
        for r in sorted(first, key=lambda r: (r.partition, r.offset))
    ]


def test_consume_read_committed_hides_aborted_transactions(config: StackConfig) -> None:
    client = KafkaClient(config.kafka_bootstrap)
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    client.create_topics([topic])
    producer = Producer(
        {"bootstrap.servers": config.kafka_bootstrap, "transactional.id": f"t-{topic}"}
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(60)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(60)

    committed = client.consume(topic, 2, timeout=10)
    assert [r.value for r in committed] == [b"committed"]
    everything = client.consume(topic, 2, timeout=30, read_committed=False)
    assert sorted(r.value for r in everything) == [b"aborted", b"committed"]


def _probe(env: dict[str, str], address: str, pids: list[int]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(PROBE), address, *map(str, pids)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=REPO,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1])


def _client_env(extra: dict[str, str], home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAY_") and k not in {"HOME", "PYTHONPATH"}
    }
    env["HOME"] = str(home)  # no ~/.ray/auth_token of the user to fall back to
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def test_ray_client_with_token_works_and_without_is_refused(
    config: StackConfig, tmp_path: Path
) -> None:
    pids = _stack_pids(config)
    good = _client_env(ray_head.connect_env(config), tmp_path)
    no_token = _client_env({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, tmp_path)
    wrong_token = _client_env(
        {**ray_head.connect_env(config), "RAY_AUTH_TOKEN": "0" * 64}, tmp_path
    )
    wrong_token.pop("RAY_AUTH_TOKEN_PATH")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(_probe, env, config.ray_address, pids)
            for env in (good, no_token, wrong_token)
        ]
        ok, refused_none, refused_wrong = (f.result() for f in futures)

    assert ok == {"ok": True, "value": 42, "non_loopback": []}
    assert refused_none["ok"] is False and "ConnectionError" in str(refused_none["error"])
    assert refused_wrong["ok"] is False and "ConnectionError" in str(refused_wrong["error"])


def test_nothing_listens_or_connects_off_loopback(config: StackConfig) -> None:
    pids = _stack_pids(config)
    assert len(pids) >= 2
    # Traffic first, so client connections and Ray workers exist while we look.
    client = KafkaClient(config.kafka_bootstrap)
    topic = f"loop-{uuid.uuid4().hex[:8]}"
    client.create_topics([topic])
    client.produce(topic, [b"x"])
    assert non_loopback_sockets(pids) == []
    ss = subprocess.run(["ss", "-tnlpH"], capture_output=True, text=True, check=False).stdout
    ours = {str(pid) for pid in pids}
    for line in ss.splitlines():
        if any(f"pid={pid}," in line for pid in ours):
            local = line.split()[3]
            assert local.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")), line


def test_flink_cluster_up_on_loopback_and_down(project: Path, config: StackConfig) -> None:
    result = _cli(project, "up", "--flink-cluster")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        status = flink_cluster.status_flink_cluster(config)
        assert status.health.value == "up", status
        overview = flink_cluster.rest_overview(config)
        assert overview is not None and overview["taskmanagers"] == 1
        pids = [
            r.pid
            for r in (
                PidFile(config.state_dir / "run" / f"flink-{role}.pid").read()
                for role in ("jobmanager", "taskmanager")
            )
            if r is not None
        ]
        assert len(pids) == 2
        assert non_loopback_sockets(pids) == []
    finally:
        assert flink_cluster.stop_flink_cluster(config) is True
    assert not port_open(config.flink_rest_port)


def test_down_stops_everything(project: Path, config: StackConfig) -> None:
    pids = _stack_pids(config)
    result = _cli(project, "down")
    assert result.returncode == 0, result.stderr
    assert "kafka: stopped" in result.stdout and "ray: stopped" in result.stdout
    import psutil

    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not port_open(config.kafka_port) and not port_open(config.ray_port)
    assert list((config.state_dir / "run").glob("*.pid")) == []
