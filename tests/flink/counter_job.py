"""A Kafka -> agent -> Kafka job used by the runtime's integration tests.

Each input ``{"key": k, "n": n}`` bumps the key's counter in agent state and calls the
``double`` tool (in the Ray pool, or in process); the output carries both, so a test can check
every record: the count must be the record's rank within its key, the tool's answer must be 2n.

Run: python -m tests.flink.counter_job --bootstrap 127.0.0.1:9092 --source in --sink out
"""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from actors import InputEvent, OutputEvent, ToolCallEvent, ToolResultEvent, Workflow, step, tool
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime


class CounterState(BaseModel):
    count: int = 0
    last_n: int = -1


class CounterAgent(Workflow):
    state_type = CounterState

    @tool
    @staticmethod
    def double(x: int) -> int:
        """Double a number.

        Args:
            x: the number to double.
        """
        return 2 * x

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805 - the proposal's step form, no self
        state.count += 1
        state.last_n = event.input["n"]
        ctx.send_event(ToolCallEvent(tool_name="double", arguments={"x": event.input["n"]}))

    @step(ToolResultEvent)
    def on_result(event, state, ctx):  # noqa: N805
        ctx.send_event(
            OutputEvent(
                {
                    "key": str(ctx.address.key),
                    "n": state.last_n,
                    "count": state.count,
                    "double": event.result,
                }
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--effects", default="ray", choices=["ray", "in-process"])
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument("--group", default="counter-job")
    args = parser.parse_args()
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=args.checkpoint_ms))
    runtime = AgentRuntime.from_kafka(
        env, args.source, bootstrap_servers=args.bootstrap, group_id=args.group, bounded=True
    )
    runtime.apply(CounterAgent(), effects=args.effects).to_kafka(
        args.sink, bootstrap_servers=args.bootstrap
    )
    env.execute("counter-job")


if __name__ == "__main__":
    main()
