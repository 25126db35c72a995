"""Our side of the runtime benchmark: Kafka -> flink-actors agent -> Kafka, exactly-once.

The agent makes one model call and one tool call per input, from one step (`ctx.chat`, then
`ctx.call_tool`), both journaled: the model call executed in the Ray pool, the tool (a dict
lookup) inside the turn (``@tool(inline=True)``), or in the Ray pool too with ``--tool pool``
(`PooledToolAgent`). The model is `ScriptedModel`
below: a `ChatModel` that answers from the prompt after ``asyncio.sleep(latency_ms)`` inside
the Ray worker, so no HTTP server is on either side of the comparison.

Runs until it is stopped (the source is unbounded); the bench stops it when it has measured.

Run: python -m bench._runtime.ours_job --bootstrap 127.0.0.1:9092 --source in --sink out
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from actors import ChatMessage, InputEvent, OutputEvent, Workflow, model, step, tool
from actors.models.base import ChatModel, ChatResult, ToolSchema
from bench._runtime import workload as wl
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime

__all__ = ["BenchAgent", "ScriptedModel", "main"]


class ScriptedModel(ChatModel):
    """Answers `workload.answer_for(prompt)` after the latency the prompt names."""

    provider = "scripted"

    async def chat(
        self, messages: list[ChatMessage], *, tools: list[ToolSchema] | None = None
    ) -> ChatResult:
        answer, delay_s = wl.answer_for(str(messages[-1].content))
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return ChatResult(
            message=ChatMessage.assistant(answer), model=self.model, provider=self.provider
        )


class BenchAgent(Workflow):
    """One model call, then one tool call, then one output, per input."""

    @model
    @staticmethod
    def llm() -> ChatModel:
        return ScriptedModel(model="scripted")

    @tool(inline=True)  # a dict lookup: run in the turn, no worker round trip (docs/agents.md)
    @staticmethod
    def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: the agent key.
        """
        return wl.lookup(key)

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805 - the proposal's step form, no self
        record: dict[str, Any] = event.input
        reply = ctx.chat("llm", [wl.prompt_for(record)])
        result = ctx.call_tool("lookup", key=record["key"])
        ctx.send_event(OutputEvent(wl.make_output(record, str(reply.content), result)))


class PooledToolAgent(BenchAgent):
    """`BenchAgent` with its tool on the Ray pool, like the model."""

    @tool(blocking=False)  # on the worker's event loop: no thread hand-off
    @staticmethod
    def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: the agent key.
        """
        return wl.lookup(key)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("--group", default="bench-runtime-ours")
    parser.add_argument("--effects", default="ray", choices=["ray", "in-process"])
    parser.add_argument("--tool", default="inline", choices=["inline", "pool"])
    parser.add_argument(
        "--no-chaining",
        action="store_true",
        help="run every operator in its own task (pipeline.operator-chaining.enabled=false)",
    )
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Flink configuration entry for the job (RuntimeConfig.extra); repeatable",
    )
    args = parser.parse_args()
    extra = {"pipeline.operator-chaining.enabled": "false"} if args.no_chaining else {}
    extra.update(entry.split("=", 1) for entry in args.conf)
    config = RuntimeConfig(
        checkpoint_interval_ms=args.checkpoint_ms, max_in_flight=args.max_in_flight, extra=extra
    )
    env = create_environment(config)
    runtime = AgentRuntime.from_kafka(
        env,
        args.source,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        config=config,
    )
    agent = BenchAgent() if args.tool == "inline" else PooledToolAgent()
    runtime.apply(agent, effects=args.effects).to_kafka(args.sink, bootstrap_servers=args.bootstrap)
    env.execute("bench-runtime-ours")


if __name__ == "__main__":
    main()
