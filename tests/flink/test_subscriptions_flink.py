"""Publish/subscribe on a real Flink job over the session's Kafka (one job).

`Publisher`s publish news (a broadcast subscription of `Subscriber`) and fills (a keyed
subscription, key chosen by a pickled function; one fill for nobody) after every Subscriber
key is in the committed key registry. Checked on the committed outputs, record by record:
each subscriber gets every news item of every publisher exactly once and in order, each fill
reaches exactly the subscriber it names, the fill for nobody reaches no one and is not a dead
letter; the registry holds each key once, the published topics hold each publish once, keyed by
the publisher and marked ``fa.kind=publish``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from flink_bridge.subscriptions import registry_topic
from flink_bridge.topics import create_agent_topics
from protocols import AgentAddress, DeadLetter, Envelope, decode_envelope, encode_envelope
from tests.flink.jobs_envelopes.pubsub_job import FILLS, NEWS, Hello, expected_outputs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

SUBSCRIBERS = 6
ROUNDS = 3
PUBLISHERS = 2


def test_keyed_and_broadcast_subscriptions_exactly_once(kafka) -> None:
    hello, go, out, dlq = "ps-hello", "ps-go", "ps-out", "ps-dlq"
    create_agent_topics(
        kafka.bootstrap_servers, ["Subscriber", "Publisher"], extra_topics=[hello, go, out, dlq]
    )
    hellos = [
        Envelope.wrap(Hello(), recipient=AgentAddress("Subscriber", f"s{i}"))
        for i in range(SUBSCRIBERS)
    ]
    kafka.produce(hello, [(str(e.recipient), encode_envelope(e)) for e in hellos])
    expected = expected_outputs(SUBSCRIBERS, ROUNDS, PUBLISHERS)

    code = "from tests.flink.jobs_envelopes.pubsub_job import main; main()"
    args = [kafka.bootstrap_servers, hello, go, out, dlq]
    args += [str(SUBSCRIBERS), str(ROUNDS), str(PUBLISHERS)]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("PUBSUB ")]
    print(summary[-1] if summary else proc.stdout[-500:])
    assert json.loads(summary[-1][len("PUBSUB ") :])["outputs"] == expected

    records = kafka.consume(out, expected + 5, timeout=8, read_committed=True)
    outputs = [decode_envelope(r.value).payload.output for r in records]  # type: ignore[union-attr]
    assert len(outputs) == expected, outputs
    subs = [f"s{i}" for i in range(SUBSCRIBERS)]
    pubs = [f"Publisher/p{i}" for i in range(PUBLISHERS)]
    assert Counter(o["sub"] for o in outputs if o["kind"] == "hello") == Counter(subs)
    news: dict[tuple[str, str], list[int]] = defaultdict(list)
    fills: list[tuple[str, str, int, str]] = []
    for o in outputs:
        if o["kind"] == "news":
            news[(o["sub"], o["from"])].append(o["n"])
            assert o["in_order"], o
        elif o["kind"] == "fill":
            fills.append((o["sub"], o["target"], o["n"], o["from"]))
        else:
            assert o["kind"] == "hello", o
    # Broadcast: every subscriber, every publisher's news, once each, in publish order.
    assert news == {(s, p): list(range(ROUNDS)) for s in subs for p in pubs}
    # Keyed: each fill at the subscriber it names, once; the fill for nobody nowhere.
    assert Counter(fills) == Counter(
        {
            (f"s{(i + int(p[-1])) % SUBSCRIBERS}", f"s{(i + int(p[-1])) % SUBSCRIBERS}", i, p): 1
            for p in pubs
            for i in range(ROUNDS)
        }
    )

    # The registry holds each live Subscriber once, keyed by address (exactly-once sink).
    registry = kafka.consume(registry_topic("Subscriber"), SUBSCRIBERS + 5, timeout=5)
    assert sorted((r.key, r.value) for r in registry) == sorted(
        (f"Subscriber/{s}".encode(), s.encode()) for s in subs
    )
    # The published topics hold each publish once, keyed by the publisher, marked publish.
    news_records = kafka.consume(NEWS, PUBLISHERS * ROUNDS + 5, timeout=5)
    fill_records = kafka.consume(FILLS, PUBLISHERS * (ROUNDS + 1) + 5, timeout=5)
    assert len(news_records) == PUBLISHERS * ROUNDS
    assert len(fill_records) == PUBLISHERS * (ROUNDS + 1)
    for record in news_records + fill_records:
        env = decode_envelope(record.value)
        assert isinstance(env, Envelope) and record.key == str(env.sender).encode()
        assert env.headers["fa.kind"] == "publish", env.headers

    letters = [DeadLetter.decode(r.value) for r in kafka.consume(dlq, 5, timeout=3)]
    assert letters == []
