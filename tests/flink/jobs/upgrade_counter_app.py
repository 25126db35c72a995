"""A Kafka -> counting agent -> Kafka job whose state model gains a field in ``--upgraded``.

Each input ``{"key": k, "n": n}`` bumps the key's counter and calls the ``double`` tool; the
output carries the count, so a test can check that counters continue across a savepoint. The
upgraded state model adds ``note`` with a default: old state loads with the default filled in.

Run: flink-actors run tests/flink/jobs/upgrade_counter_app.py [--remote] -- --bootstrap ...
"""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from actors import InputEvent, OutputEvent, ToolCallEvent, ToolResultEvent, Workflow, step, tool
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.jobs import restore_settings
from flink_bridge.runtime import AgentRuntime

NOTE_DEFAULT = "added-in-v2"


class CounterState(BaseModel):
    count: int = 0
    last_n: int = -1


class CounterStateV2(CounterState):
    note: str = NOTE_DEFAULT


def make_agent(state_model: type[BaseModel], version: int) -> Workflow:
    class Counter(Workflow):
        state_type = state_model

        @tool
        @staticmethod
        def double(x: int) -> int:
            """Double a number.

            Args:
                x: the number to double.
            """
            return 2 * x

        @step(InputEvent)
        def on_input(event, state, ctx):  # noqa: N805 - the proposal's step form
            state.count += 1
            state.last_n = event.input["n"]
            ctx.send_event(ToolCallEvent(tool_name="double", arguments={"x": event.input["n"]}))

        @step(ToolResultEvent)
        def on_result(event, state, ctx):  # noqa: N805
            out = {
                "key": str(ctx.address.key),
                "n": state.last_n,
                "count": state.count,
                "double": event.result,
                "version": version,
            }
            if hasattr(state, "note"):
                out["note"] = state.note
            ctx.send_event(OutputEvent(out))

    return Counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", default="upgrade-counter")
    parser.add_argument("--effects", default="in-process", choices=["ray", "in-process"])
    parser.add_argument("--upgraded", action="store_true")
    parser.add_argument("--bounded", action="store_true")
    args = parser.parse_args()
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=1000, extra=restore_settings()))
    agent = make_agent(CounterStateV2, 2) if args.upgraded else make_agent(CounterState, 1)
    runtime = AgentRuntime.from_kafka(
        env,
        args.source,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        bounded=args.bounded,
    )
    runtime.apply(agent, agent_type="counter", effects=args.effects).to_kafka(
        args.sink, bootstrap_servers=args.bootstrap
    )
    env.execute("upgrade-counter")


if __name__ == "__main__":
    main()
