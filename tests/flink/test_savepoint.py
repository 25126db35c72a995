"""Savepoints across an agent upgrade, on the standalone cluster, through `flink-actors`.

Run 1 (``run --remote --detached``, unbounded Kafka source) counts per key; ``stop --savepoint``
takes a savepoint and stops it; run 2 (``run --remote --from-savepoint``) is the same job with
a state model that gained a field with a default. Every input must have exactly one committed
output, and each key's counter must continue where run 1 left it.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

from flink_bridge import jobs
from flink_bridge.stack.config import StackConfig
from tests.flink.jobs.cli_proc import ROOT, run_cli
from tests.flink.jobs.upgrade_counter_app import NOTE_DEFAULT

pytestmark = pytest.mark.integration

APP = ROOT / "tests" / "flink" / "jobs" / "upgrade_counter_app.py"
KEYS = 7


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture
def flink_cluster():
    """A standalone cluster of our own (state dir, free ports), stopped afterwards."""
    from flink_bridge.stack.flink_cluster import start_flink_cluster, stop_flink_cluster

    ports = _free_ports(7)
    config = StackConfig(
        state_dir=Path(tempfile.mkdtemp(prefix="fa-sp-", dir="/tmp")),
        kafka_port=ports[0],
        kafka_controller_port=ports[1],
        ray_port=ports[2],
        ray_client_port=ports[3],
        flink_rest_port=ports[4],
        flink_rpc_port=ports[5],
        model_port=ports[6],
        startup_timeout_s=240.0,
        stop_timeout_s=20.0,
    )
    start_flink_cluster(config)
    try:
        yield config
    finally:
        stop_flink_cluster(config)
        shutil.rmtree(config.state_dir, ignore_errors=True)


def _inputs(start: int, count: int) -> list[dict]:
    return [{"key": f"k{i % KEYS}", "n": i} for i in range(start, start + count)]


def _flags(config: StackConfig) -> list[str]:
    return ["--state-dir", str(config.state_dir), "--flink-rest-port", str(config.flink_rest_port)]


def test_counters_continue_across_savepoint_and_upgrade(kafka, flink_cluster) -> None:
    config = flink_cluster
    source, sink = "sp-in", "sp-out"
    kafka.create_topics([source, sink], partitions=1)
    app_args = ["--bootstrap", kafka.bootstrap_servers, "--source", source, "--sink", sink]

    first = _inputs(0, 70)
    kafka.produce(source, [json.dumps(r) for r in first])
    run1 = run_cli(
        ["run", str(APP), "--remote", "--detached", *_flags(config), "--", *app_args], timeout_s=240
    )
    assert run1.returncode == 0, run1.output[-4000:]
    job1 = jobs.parse_job_id(run1.output)
    assert job1, run1.output[-2000:]
    got = kafka.consume(sink, len(first), timeout=240, read_committed=True)
    assert len(got) == len(first)

    stop = run_cli(
        ["stop", job1, "--savepoint", str(config.state_dir / "sp"), *_flags(config)], timeout_s=240
    )
    assert stop.returncode == 0, stop.output[-4000:]
    savepoint = stop.output.strip().splitlines()[-1]
    assert "savepoint-" in savepoint, stop.output
    assert jobs.job_state(config, job1) == "FINISHED"
    assert jobs.check_savepoint(savepoint)

    # A second thread-mode job on the same TaskManager fails: pemja (in the job's flink-python
    # jar) cannot load libpython again in a new user-code class loader on Java 17
    # ("NoSuchFieldException: loadedLibraryNames"). Until the cluster puts flink-python on its
    # own class path, redeploy the cluster for the upgrade, as an upgrade often does anyway.
    from flink_bridge.stack.flink_cluster import start_flink_cluster, stop_flink_cluster

    stop_flink_cluster(config)
    start_flink_cluster(config)

    second = _inputs(len(first), 70)
    kafka.produce(source, [json.dumps(r) for r in second])
    run2 = run_cli(
        [
            "run",
            str(APP),
            "--remote",
            "--detached",
            "--from-savepoint",
            savepoint,
            *_flags(config),
            "--",
            *app_args,
            "--upgraded",
        ],
        timeout_s=240,
    )
    assert run2.returncode == 0, run2.output[-4000:]
    job2 = jobs.parse_job_id(run2.output)
    assert job2
    try:
        # Exactly the expected count: a duplicate would push out another output and fail the
        # check of every n below.
        records = kafka.consume(sink, len(first) + len(second), timeout=240, read_committed=True)
    finally:
        jobs.cancel_job(config, job2)
    outputs = [json.loads(r.value) for r in records]

    assert len(outputs) == len(first) + len(second)
    assert sorted(o["n"] for o in outputs) == list(range(len(first) + len(second)))
    rank: dict[str, int] = defaultdict(int)
    expected = {}
    for record in first + second:
        rank[record["key"]] += 1
        expected[record["n"]] = rank[record["key"]]
    for out in outputs:
        assert out["count"] == expected[out["n"]], out
        assert out["double"] == 2 * out["n"]
        if out["n"] < len(first):
            assert out["version"] == 1 and "note" not in out
        else:
            assert out["version"] == 2 and out["note"] == NOTE_DEFAULT, out
