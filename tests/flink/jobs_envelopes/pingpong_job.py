"""Two agent types in one job talking through their Kafka inbox topics.

`Pinger` (fed `Start` envelopes) sends `Ping(seq)` to a `Ponger` with ctx.send; the Ponger
checks the order per sender and answers with ctx.reply; each `Pong` reaching the Pinger becomes
an output. The job is unbounded (the inboxes are a loop), so it stops itself once it has seen
`expected` committed outputs, then waits `settle_s` more for duplicates to show up, and cancels.

Run: python -m tests.flink.jobs_envelopes.pingpong_job BOOTSTRAP START_TOPIC OUT DLQ EXPECTED
"""

from __future__ import annotations

import sys
import time

from pydantic import BaseModel, Field

from actors import OutputEvent, Workflow, step
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime
from flink_bridge.stack.kafka_client import KafkaClient
from flink_bridge.topics import inbox_topic
from protocols import AgentAddress
from tests.flink.jobs_envelopes.messages import Ping, Pong, Start


class PingerState(BaseModel):
    next_seq: int = 0
    pongs: list[int] = Field(default_factory=list)


class Pinger(Workflow):
    state_type = PingerState

    @step(Start)
    def on_start(event, state, ctx):  # noqa: N805 - the proposal's step form
        for _ in range(event.pings):
            ctx.send(AgentAddress("Ponger", event.ponger), Ping(seq=state.next_seq))
            state.next_seq += 1

    @step(Pong)
    def on_pong(event, state, ctx):  # noqa: N805
        ordered = not state.pongs or state.pongs[-1] + 1 == event.seq
        state.pongs.append(event.seq)
        ctx.send_event(
            OutputEvent(
                {
                    "pinger": ctx.address.key,
                    "seq": event.seq,
                    "ponger_saw_order": event.in_order,
                    "pongs_in_order": ordered,
                    "from": str(ctx.sender),
                }
            )
        )


class PongerState(BaseModel):
    last_seq: dict[str, int] = Field(default_factory=dict)


class Ponger(Workflow):
    state_type = PongerState

    @step(Ping)
    def on_ping(event, state, ctx):  # noqa: N805
        sender = str(ctx.sender)
        in_order = state.last_seq.get(sender, -1) + 1 == event.seq
        state.last_seq[sender] = event.seq
        ctx.reply(Pong(seq=event.seq, in_order=in_order))


def main() -> None:
    bootstrap, start_topic, out, dlq, expected = sys.argv[1:6]
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=500))
    common = {"bootstrap_servers": bootstrap, "format": "envelope", "dead_letter_topic": dlq}
    pinger = AgentRuntime.from_kafka(
        env, [start_topic, inbox_topic("Pinger")], group_id="pinger", **common
    ).apply(Pinger(), effects="in-process")
    pinger.to_kafka(out, bootstrap_servers=bootstrap, format="envelope")
    ponger = AgentRuntime.from_kafka(env, inbox_topic("Ponger"), group_id="ponger", **common)
    ponger.apply(Ponger(), effects="in-process").to_agents(bootstrap_servers=bootstrap)
    client = env.execute_async("ping-pong")
    kafka = KafkaClient(bootstrap)
    deadline = time.monotonic() + 300
    seen = 0
    try:
        while time.monotonic() < deadline:
            seen = len(kafka.consume(out, int(expected) + 5, timeout=3, read_committed=True))
            if seen >= int(expected):
                time.sleep(3.0)  # a few more checkpoints: duplicates would show up now
                break
    finally:
        client.cancel().result()
    print(f"PINGPONG outputs seen: {seen}", flush=True)
    sys.exit(0 if seen >= int(expected) else 1)


if __name__ == "__main__":
    main()
