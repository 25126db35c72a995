"""Publish/subscribe between two agent types in one job: keyed and broadcast subscriptions.

`Subscriber` declares ``Subscription(FILLS, key=<function>)`` (one instance per fill, chosen by
``fill.sub``; None skips) and ``Subscription(NEWS)`` (broadcast: every live instance).
Subscribers come alive with a `Hello` each; once their keys are in the committed registry
topic (``agents.Subscriber.keys``) the job sends `Go` to each `Publisher`, which publishes
``rounds`` news and fills with ``ctx.publish`` plus one fill for nobody. Every message a
Subscriber receives is one output. The job stops once it has seen ``expected`` committed
outputs, waits a few checkpoints for duplicates, and cancels.

Run: python -c "from tests.flink.jobs_envelopes.pubsub_job import main; main()" \\
        BOOTSTRAP HELLO_TOPIC GO_TOPIC OUT DLQ SUBSCRIBERS ROUNDS PUBLISHERS
(imported, not run as __main__: the message classes must have one importable home).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any

from pydantic import BaseModel, Field

from actors import InputEvent, OutputEvent, Workflow, step
from actors.messaging import Subscription
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime
from flink_bridge.stack.kafka_client import KafkaClient
from flink_bridge.subscriptions import registry_topic, wait_until_registered
from flink_bridge.topics import inbox_topic
from protocols import AgentAddress, Envelope, encode_envelope, message
from protocols.events import Event

NEWS = "ps-news"
FILLS = "ps-fills"


@message("pstest.Hello")
class Hello(Event):
    """To a `Subscriber`: come alive (its first turn registers the key)."""


@message("pstest.Go")
class Go(Event):
    """To a `Publisher`: publish `rounds` news and fills over `subscribers` keys."""

    rounds: int
    subscribers: int


@message("pstest.News")
class News(Event):
    """Broadcast: every live Subscriber gets each one."""

    n: int


@message("pstest.Fill")
class Fill(BaseModel):
    """Keyed: the Subscriber ``sub`` gets it (a plain model: arrives as InputEvent)."""

    sub: str | None
    n: int


def fill_key(fill: Fill) -> str | None:
    return fill.sub


class SubscriberState(BaseModel):
    last_news: dict[str, int] = Field(default_factory=dict)


class Subscriber(Workflow):
    state_type = SubscriberState
    subscriptions = [
        Subscription(FILLS, key=lambda m: fill_key(m)),  # a function: travels pickled
        Subscription(NEWS),
    ]

    @step(Hello)
    def on_hello(event, state, ctx):  # noqa: N805 - the proposal's step form
        ctx.send_event(OutputEvent({"sub": ctx.address.key, "kind": "hello"}))

    @step(News)
    def on_news(event, state, ctx):  # noqa: N805
        sender = str(ctx.sender)
        in_order = state.last_news.get(sender, -1) + 1 == event.n
        state.last_news[sender] = event.n
        body = {"sub": ctx.address.key, "kind": "news", "n": event.n, "from": sender}
        ctx.send_event(OutputEvent({**body, "in_order": in_order}))

    @step(InputEvent)
    def on_fill(event, state, ctx):  # noqa: N805
        fill = event.input
        body = {"sub": ctx.address.key, "kind": "fill", "n": fill["n"], "target": fill["sub"]}
        ctx.send_event(OutputEvent({**body, "from": str(ctx.sender)}))


class Publisher(Workflow):
    @step(Go)
    def on_go(event, state, ctx):  # noqa: N805
        offset = int(ctx.address.key[1:])
        for i in range(event.rounds):
            ctx.publish(NEWS, News(n=i))
            ctx.publish(FILLS, Fill(sub=f"s{(i + offset) % event.subscribers}", n=i))
        ctx.publish(FILLS, Fill(sub=None, n=-1))  # for nobody: skipped, not a dead letter


def expected_outputs(subscribers: int, rounds: int, publishers: int) -> int:
    return subscribers + publishers * rounds * (subscribers + 1)


def _check_running(client: Any) -> None:
    """Stop waiting, with the job's failure, once the job has ended."""
    if client.get_job_status().result().is_globally_terminal_state():
        client.get_job_execution_result().result()  # raises the job's failure
        raise RuntimeError("the job ended early")


def main() -> None:
    bootstrap, hello_topic, go_topic, out, dlq = sys.argv[1:6]
    subscribers, rounds, publishers = (int(x) for x in sys.argv[6:9])
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=500))
    common = {"bootstrap_servers": bootstrap, "format": "envelope", "dead_letter_topic": dlq}
    subs = AgentRuntime.from_kafka(
        env, [hello_topic, inbox_topic("Subscriber")], group_id="subscriber", **common
    ).apply(Subscriber(), effects="in-process")
    subs.to_kafka(out, bootstrap_servers=bootstrap, format="envelope")
    pubs = AgentRuntime.from_kafka(
        env, [go_topic, inbox_topic("Publisher")], group_id="publisher", **common
    ).apply(Publisher(), effects="in-process")
    pubs.to_agents(bootstrap_servers=bootstrap)
    started = time.monotonic()
    client = env.execute_async("pub-sub")
    kafka = KafkaClient(bootstrap)
    expected = expected_outputs(subscribers, rounds, publishers)
    seen = 0
    marks: dict[str, float] = {}
    try:
        # Broadcasts reach registered keys only: wait until the fan-out has read every one.
        keys = [f"s{i}" for i in range(subscribers)]
        if not wait_until_registered(
            kafka, "Subscriber", "subscriber", keys, timeout_s=300,
            still_running=lambda: _check_running(client),
        ):  # fmt: skip
            raise TimeoutError(f"{subscribers} keys not read from {registry_topic('Subscriber')!r}")
        marks["registered_s"] = time.monotonic() - started
        gos = [
            Envelope.wrap(
                Go(rounds=rounds, subscribers=subscribers),
                recipient=AgentAddress("Publisher", f"p{i}"),
            )
            for i in range(publishers)
        ]
        kafka.produce(go_topic, [(str(e.recipient), encode_envelope(e)) for e in gos])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            _check_running(client)
            seen = len(kafka.consume(out, expected + 5, timeout=3, read_committed=True))
            if seen >= expected:
                time.sleep(3.0)  # a few more checkpoints: duplicates would show up now
                break
        marks["outputs_s"] = time.monotonic() - started
    finally:
        with contextlib.suppress(Exception):  # already ended when it failed
            client.cancel().result()
    print("PUBSUB " + json.dumps({"outputs": seen, "expected": expected, **marks}), flush=True)
    sys.exit(0 if seen >= expected else 1)


if __name__ == "__main__":
    main()
