"""One Flink job exercising the public runtime API, as the proposal writes it.

- DataStream: the proposal's customized ``MyWorkflow`` (state.messages grows with each input and
  each model answer; the model is an `OpenAIChatModel` on the scripted server), via
  ``AgentRuntime.from_datastream(ds).apply(MyWorkflow()).to_datastream()``;
- Table: the proposal's ``AgentWorkflow`` on a table with ``key`` and ``text`` columns, via
  ``AgentRuntime.from_table(t).apply(my_agent).to_table()``.

Both pipelines run in one job (one mini-cluster start); effects go to the Ray pool. The job
prints one line ``RESULT <json>`` with every output, for the test to check.

Run: flink-actors run tests/flink/jobs/runtime_api_job.py -- --model-url URL
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from actors import (
    AgentWorkflow,
    ChatModelEvent,
    ChatModelResponseEvent,
    Event,
    InputEvent,
    OutputEvent,
    RunnerContext,
    State,
    Workflow,
    model,
    step,
)
from actors.models.openai import OpenAIChatModel
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime

KEYS = ("alice", "bob", "carol")
PER_KEY = 4
MODEL_URL_ENV = "RUNTIME_API_MODEL_URL"


def model_url() -> str:
    return os.environ[MODEL_URL_ENV]


class MyWorkflow(Workflow):
    # Define a model (the scripted OpenAI-compatible server stands in for a real endpoint)
    @model
    @staticmethod
    def my_llm():
        return OpenAIChatModel(model="scripted", base_url=model_url())

    # Define a workflow step, which subscribes to InputEvent and ChatModelResponseEvent
    @step(InputEvent, ChatModelResponseEvent)
    def my_step(event: Event, state: State, ctx: RunnerContext):  # noqa: N805 - proposal form
        if isinstance(event, InputEvent):  # Built-in InputEvent will be received for each input
            input = event.input
            state.messages.append(input)
            ctx.send_event(ChatModelEvent(model="my_llm", messages=state.messages))
        elif isinstance(event, ChatModelResponseEvent):  # Built-in: each model response
            state.messages.append(event.response)
            ctx.send_event(OutputEvent(event.response))  # send OutputEvent to emit outputs


def stream_inputs() -> list[str]:
    """``"<key>-<i>"`` texts, keys interleaved."""
    return [f"{key}-{i}" for i in range(PER_KEY) for key in KEYS]


def table_rows() -> list[tuple[str, str]]:
    return [("t1", "first row"), ("t2", "second row"), ("t1", "third row")]


def build(env: Any, only: str = "both", effects: str = "ray") -> Any:
    from pyflink.common import Types
    from pyflink.table import DataTypes, StreamTableEnvironment

    # -- DataStream API --------------------------------------------------------------------
    input_datastream = env.from_collection(stream_inputs(), type_info=Types.STRING())
    my_workflow = MyWorkflow()
    output_datastream = (
        AgentRuntime.from_datastream(input_datastream, key_selector=lambda s: s.split("-")[0])
        .apply(my_workflow, effects=effects)
        .to_datastream()
    )
    from_stream = output_datastream.map(
        lambda m: json.dumps({"via": "datastream", "role": m.role, "content": m.content}),
        output_type=Types.STRING(),
    )

    if only == "datastream":
        return from_stream

    # -- Table API ---------------------------------------------------------------------------
    t_env = StreamTableEnvironment.create(env)
    input_table = t_env.from_elements(
        table_rows(),
        DataTypes.ROW(
            [
                DataTypes.FIELD("key", DataTypes.STRING()),
                DataTypes.FIELD("text", DataTypes.STRING()),
            ]
        ),
    )
    my_agent = AgentWorkflow(
        model=OpenAIChatModel(model="scripted", base_url=model_url()),
        prompt="You answer in one line.",
    )
    output_table = AgentRuntime.from_table(input_table).apply(my_agent, effects=effects).to_table()
    columns = output_table.get_schema().get_field_names()
    from_table = t_env.to_data_stream(output_table).map(
        lambda row: json.dumps({"via": "table", "columns": columns, "output": row[0]}),
        output_type=Types.STRING(),
    )
    if only == "table":
        return from_table
    return from_stream.union(from_table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--only", choices=["both", "datastream", "table"], default="both")
    parser.add_argument("--effects", choices=["ray", "in-process"], default="ray")
    args = parser.parse_args()
    os.environ[MODEL_URL_ENV] = args.model_url
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=None))
    results = build(env, args.only, args.effects)
    with results.execute_and_collect("runtime-api") as records:
        outputs = [json.loads(r) for r in records]
    print("RESULT " + json.dumps({"outputs": outputs}), flush=True)


if __name__ == "__main__":
    main()
