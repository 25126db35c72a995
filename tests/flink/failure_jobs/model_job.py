"""Kafka -> agent (two journaled model calls per input, a per-key counter) -> Kafka, unbounded.

The job of the failure tests. Each input ``{"key": k, "n": n}`` runs one turn that
1. bumps the key's counter in agent state,
2. asks the model ``"plan <k> <n>"`` and, with that answer, ``"answer <k> <n> | <plan answer>"``,
3. emits ``{"key", "n", "count", "plan", "answer", "ballast"}``.

An input may carry ``"ballast": B``: the turn then grows the key's state by B characters, and
the output says how large it is, so a scenario can check large per-key state across a restore
(e.g. on the RocksDB backend, ``--state-backend rocksdb``).

Two calls in sequence, not one, so that a checkpoint taken mid-turn holds a journaled result
(the plan) next to a call still in flight (the answer): after a restore the plan must be
replayed from the journal, never asked again; with one call per turn the journal would be
empty at every checkpoint and that claim could not be tested.

The source is unbounded (the test ends the job once it has read every output). Checkpoints are
externalized and retained, so a killed job can be restarted from the last one with
``--restore <chk-dir>``; the sink's transactional id prefix is fixed, so the restarted job
owns (and aborts) the transactions the killed one left open.

Run: python -m tests.flink.failure_jobs.model_job --bootstrap 127.0.0.1:9092 --source in \
    --sink out --model-url http://127.0.0.1:PORT/v1 --checkpoint-dir /tmp/chk
"""

from __future__ import annotations

import argparse
import base64
import random
from pathlib import Path

from pydantic import BaseModel

from actors import (
    ChatModelEvent,
    ChatModelResponseEvent,
    InputEvent,
    OutputEvent,
    Workflow,
    model,
    step,
)
from actors.models.openai import OpenAIChatModel
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime

PLACEHOLDER_URL = "http://127.0.0.1:9/v1"  # replaced with --model-url by override()


def _ballast(key: str, n: int, size: int) -> str:
    """`size` characters that do not compress (state backends compress their files)."""
    if size <= 0:
        return ""
    raw = random.Random(f"{key}:{n}").randbytes(size)
    return base64.b64encode(raw).decode()[:size]


class CountState(BaseModel):
    count: int = 0
    key: str = ""
    n: int = -1
    plan: str = ""
    ballast: str = ""
    """Grows by ``input["ballast"]`` characters per input: large per-key state on demand."""


class TwoCallAgent(Workflow):
    """Counts inputs per key; asks the model twice per input (plan, then answer)."""

    state_type = CountState

    @model
    @staticmethod
    def llm():
        return OpenAIChatModel(model="scripted", base_url=PLACEHOLDER_URL)

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805 - the proposal's step form, no self
        state.count += 1
        state.key = str(event.input["key"])
        state.n = int(event.input["n"])
        state.ballast += _ballast(state.key, state.n, int(event.input.get("ballast", 0)))
        ctx.send_event(
            ChatModelEvent(model="llm", messages=[f"plan {state.key} {state.n}"])  # type: ignore[list-item]
        )

    @step(ChatModelResponseEvent)
    def on_answer(event, state, ctx):  # noqa: N805
        text = event.response.content or ""
        if not state.plan:
            state.plan = text
            prompt = f"answer {state.key} {state.n} | {text}"
            ctx.send_event(ChatModelEvent(model="llm", messages=[prompt]))  # type: ignore[list-item]
            return
        ctx.send_event(
            OutputEvent(
                {
                    "key": state.key,
                    "n": state.n,
                    "count": state.count,
                    "plan": state.plan,
                    "answer": text,
                    "ballast": len(state.ballast),
                }
            )
        )
        state.plan = ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--checkpoint-ms", type=int, default=500)
    parser.add_argument("--restore", default=None, help="a chk-N directory to start from")
    parser.add_argument("--group", default="failure-job")
    parser.add_argument("--txn-prefix", default="failure-job")
    parser.add_argument("--restart-attempts", type=int, default=30)
    parser.add_argument("--effects", default="ray", choices=["ray", "in-process"])
    parser.add_argument("--state-backend", default="hashmap", choices=["hashmap", "rocksdb"])
    args = parser.parse_args()

    extra = {"execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION"}
    if args.restore:
        extra["execution.state-recovery.path"] = Path(args.restore).resolve().as_uri()
    config = RuntimeConfig(
        checkpoint_interval_ms=args.checkpoint_ms,
        checkpoint_dir=Path(args.checkpoint_dir).resolve().as_uri(),
        restart_attempts=args.restart_attempts,
        state_backend=args.state_backend,
        extra=extra,
    )
    env = create_environment(config)
    runtime = AgentRuntime.from_kafka(
        env, args.source, bootstrap_servers=args.bootstrap, group_id=args.group, config=config
    )
    agent = TwoCallAgent().override(
        llm=OpenAIChatModel(model="scripted", base_url=args.model_url, timeout_s=30.0)
    )
    runtime.apply(agent, effects=args.effects).to_kafka(
        args.sink, bootstrap_servers=args.bootstrap, transactional_id_prefix=args.txn_prefix
    )
    print("FAILURE_JOB_SUBMITTING", flush=True)
    env.execute("failure-job")


if __name__ == "__main__":
    main()
