"""Agent-to-agent messaging through Kafka inbox topics: a Pinger and a Ponger in one job.

Each Pinger sends numbered pings to a Ponger with ctx.send; the Ponger answers with ctx.reply;
every pong reaching its Pinger is one committed output. Checked: exactly one output per ping,
order kept per (sender, recipient) both ways, and the committed inbox topics hold each message
once, keyed by recipient, with sender, correlation and causation set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from flink_bridge.topics import create_agent_topics, inbox_topic
from protocols import AgentAddress, DeadLetter, Envelope, decode_envelope, encode_envelope
from tests.flink.jobs_envelopes.messages import Ping, Pong, Start

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

PINGERS = 4
PINGS = 5


def test_ping_pong_through_kafka_exactly_once_in_order(kafka) -> None:
    start, out, dlq = "pp-start", "pp-out", "pp-dlq"
    create_agent_topics(
        kafka.bootstrap_servers, ["Pinger", "Ponger"], extra_topics=[start, out, dlq]
    )
    starts = [
        Envelope.wrap(
            Start(pings=PINGS, ponger=f"q{i % 2}"), recipient=AgentAddress("Pinger", f"p{i}")
        )
        for i in range(PINGERS)
    ]
    kafka.produce(start, [(str(e.recipient), encode_envelope(e)) for e in starts])
    expected = PINGERS * PINGS

    cmd = [sys.executable, "-m", "tests.flink.jobs_envelopes.pingpong_job"]
    args = [kafka.bootstrap_servers, start, out, dlq, str(expected)]
    proc = subprocess.run(
        [*cmd, *args], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=540
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Outputs: one per ping, pongs in order per pinger, pings seen in order by the pongers.
    records = kafka.consume(out, expected + 10, timeout=30, read_committed=True)
    outputs = [decode_envelope(r.value).payload.output for r in records]  # type: ignore[union-attr]
    assert len(outputs) == expected, outputs
    assert Counter((o["pinger"], o["seq"]) for o in outputs) == Counter(
        {(f"p{i}", s): 1 for i in range(PINGERS) for s in range(PINGS)}
    )
    by_pinger: dict[str, list[int]] = defaultdict(list)
    for o in outputs:
        by_pinger[o["pinger"]].append(o["seq"])
        assert o["ponger_saw_order"] and o["pongs_in_order"], o
        assert o["from"] == f"Ponger/q{int(o['pinger'][1:]) % 2}"
    assert all(seqs == list(range(PINGS)) for seqs in by_pinger.values()), by_pinger

    # The inboxes hold every message once (committed), keyed by recipient, correlated.
    pings = [
        decode_envelope(r.value)
        for r in kafka.consume(inbox_topic("Ponger"), expected + 10, timeout=30)
    ]
    pongs = kafka.consume(inbox_topic("Pinger"), expected + 10, timeout=30)
    assert len(pings) == expected and len(pongs) == expected
    ping_by_id = {e.message_id: e for e in pings}  # type: ignore[union-attr]
    start_ids = {e.message_id for e in starts}
    for env in pings:
        assert isinstance(env, Envelope) and isinstance(env.payload, Ping)
        assert str(env.sender).startswith("Pinger/p")
        assert env.correlation_id in start_ids and env.causation_id in start_ids
    for record in pongs:
        env = decode_envelope(record.value)
        assert isinstance(env, Envelope) and isinstance(env.payload, Pong)
        assert record.key == str(env.recipient).encode()
        ping = ping_by_id[env.causation_id]  # type: ignore[index]
        assert env.recipient == ping.sender and env.sender == ping.recipient
        assert env.payload.seq == ping.payload.seq
        assert env.correlation_id == ping.correlation_id

    letters = [DeadLetter.decode(r.value) for r in kafka.consume(dlq, 5, timeout=3)]
    assert letters == []
