"""The shared session fixtures of tests/conftest.py work as documented (others depend on them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_kafka_fixture_round_trip(kafka, kafka_bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    assert kafka_bootstrap.startswith("127.0.0.1:")
    topic = f"fx-{uuid.uuid4().hex[:8]}"
    kafka.create_topics([topic], partitions=3)
    kafka.create_topics([topic], partitions=3)  # existing topics are fine
    assert kafka.partitions(topic) == [0, 1, 2]
    sent = [(f"key-{i}", f"value-{i}") for i in range(30)]
    assert kafka.produce(topic, sent) == 30
    got = kafka.consume(topic, 30, timeout=60)
    assert sorted((r.key, r.value) for r in got) == sorted(
        (k.encode(), v.encode()) for k, v in sent
    )
    # Same key, same partition: per-key order is kept.
    by_key: dict[bytes | None, list[int]] = {}
    for record in sorted(got, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(record.key, []).append(record.partition)
    assert all(len(set(parts)) == 1 for parts in by_key.values())
    # Fewer than asked on timeout, never more.
    assert len(kafka.consume(topic, 31, timeout=3)) == 30


def test_ray_head_fixture_joins_with_token(ray_head) -> None:  # type: ignore[no-untyped-def]
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == ray_head.env["RAY_AUTH_TOKEN_PATH"]
    # A fresh process with the fixture's env, the way jobs join: a Ray used earlier in this
    # pytest process keeps its own token cached even after ray.shutdown().
    probe = Path(__file__).with_name("ray_client_probe.py")
    proc = subprocess.run(
        [sys.executable, str(probe), ray_head.address],
        capture_output=True, text=True, timeout=180, env={**os.environ, **ray_head.env},
    )  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    assert result["value"] == 42
    assert result["non_loopback"] == []


def test_local_stack_fixture(local_stack) -> None:  # type: ignore[no-untyped-def]
    assert local_stack.kafka.bootstrap_servers == local_stack.config.kafka_bootstrap
    assert local_stack.ray.address == local_stack.config.ray_address


def test_a_dead_session_head_is_reported_and_replaced(_session_stack, ray_head) -> None:  # type: ignore[no-untyped-def]
    """A Ray process dying takes the whole head down (`ray start --block` kills the rest); the
    next test that asks for the head gets a new one, and the run's warnings say why."""
    import psutil

    from flink_bridge.stack.health import port_open

    head = psutil.Process(ray_head.pid)
    gcs = [p for p in head.children(recursive=True) if "gcs_server" in " ".join(p.cmdline())]
    assert gcs, "no gcs_server under the head"
    gcs[0].kill()
    head.wait(timeout=60)  # `ray start --block` saw it and exited
    assert not port_open(_session_stack.config.ray_port)

    with pytest.warns(UserWarning, match="Ray head died .*exited unexpectedly"):
        again = _session_stack.ray()
    assert again.pid != ray_head.pid
    assert port_open(_session_stack.config.ray_port)
