"""Kafka -> keyed agent (state + a tool call in the Ray pool) -> transactional Kafka sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def run_counter_job(bootstrap: str, source: str, sink: str, *, effects: str = "ray") -> None:
    cmd = [
        sys.executable,
        "-m",
        "tests.flink.counter_job",
        "--bootstrap",
        bootstrap,
        "--source",
        source,
        "--sink",
        sink,
        "--effects",
        effects,
        "--group",
        f"g-{source}",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=420
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def check_outputs(inputs: list[dict], outputs: list[dict]) -> None:
    """Exactly one output per input, counts exact per key, tool answers right."""
    assert len(outputs) == len(inputs)
    seen = {(o["key"], o["n"]) for o in outputs}
    assert seen == {(i["key"], i["n"]) for i in inputs}
    by_key: dict[str, list[dict]] = defaultdict(list)
    for o in outputs:
        assert o["double"] == 2 * o["n"]
        by_key[o["key"]].append(o)
    expected_rank = {}
    ranks: dict[str, int] = defaultdict(int)
    for i in inputs:  # one partition: per-key order is input order
        ranks[i["key"]] += 1
        expected_rank[(i["key"], i["n"])] = ranks[i["key"]]
    for o in outputs:
        assert o["count"] == expected_rank[(o["key"], o["n"])], o


@pytest.mark.parametrize("effects", ["ray", "in-process"])
def test_every_input_has_one_committed_output(local_stack, effects: str) -> None:
    kafka = local_stack.kafka
    source, sink = f"e2e-in-{effects}", f"e2e-out-{effects}"
    kafka.create_topics([source, sink], partitions=1)
    inputs = [{"key": f"k{i % 17}", "n": i} for i in range(300)]
    kafka.produce(source, [json.dumps(r) for r in inputs])
    run_counter_job(kafka.bootstrap_servers, source, sink, effects=effects)
    records = kafka.consume(sink, len(inputs) + 10, timeout=30, read_committed=True)
    outputs = [json.loads(r.value) for r in records]
    check_outputs(inputs, outputs)
