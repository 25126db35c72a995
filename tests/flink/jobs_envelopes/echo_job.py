"""Kafka envelopes -> `Echo` agent -> envelope outputs; undeliverable input -> dead letters.

Run: python -m tests.flink.jobs_envelopes.echo_job BOOTSTRAP SOURCE SINK DLQ
"""

from __future__ import annotations

import sys

from actors import InputEvent, OutputEvent, Workflow, step
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime
from tests.flink.jobs_envelopes.messages import Greeting


class Echo(Workflow):
    @step(Greeting)
    def on_greeting(event, state, ctx):  # noqa: N805 - the proposal's step form
        sender = None if ctx.sender is None else str(ctx.sender)
        out = {"key": ctx.address.key, "text": event.text.upper(), "n": event.n, "sender": sender}
        ctx.send_event(OutputEvent(out))

    @step(InputEvent)
    def on_note(event, state, ctx):  # noqa: N805
        ctx.send_event(OutputEvent({"key": ctx.address.key, "note": event.input}))


def main() -> None:
    bootstrap, source, sink, dlq = sys.argv[1:5]
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=500))
    runtime = AgentRuntime.from_kafka(
        env,
        source,
        bootstrap_servers=bootstrap,
        group_id=f"g-{source}",
        bounded=True,
        format="envelope",
        dead_letter_topic=dlq,
    )
    runtime.apply(Echo(), agent_type="Echo", effects="in-process")
    runtime.to_kafka(sink, bootstrap_servers=bootstrap, format="envelope")
    env.execute("echo-envelopes")


if __name__ == "__main__":
    main()
