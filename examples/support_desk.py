"""Support desk: a ReAct agent per customer answers tickets from a Kafka topic.

Each ticket ``{"key": customer, "ticket": n, "text": ...}`` reaches the customer's agent (one
Flink key per customer, state kept between tickets). The agent's model (the local SmolLM2 by
default; any OpenAI-compatible endpoint via FLINK_ACTORS_MODEL_URL) may call the
`lookup_order` tool, which runs in the Ray pool; the answer goes to the answers topic,
exactly once. `flink-actors demo` runs this file; so can you:

    python examples/support_desk.py --bootstrap 127.0.0.1:9092 --source tickets --sink answers
"""

from __future__ import annotations

import argparse

from pydantic import BaseModel, Field

from actors import (
    ChatModelEvent,
    ChatModelResponseEvent,
    InputEvent,
    OutputEvent,
    Workflow,
    model,
    step,
    tool,
)
from actors.models.local import default_chat_model
from flink_bridge.environment import RuntimeConfig, create_environment
from flink_bridge.runtime import AgentRuntime

ORDERS = {
    "1001": "shipped on 2026-11-20, arriving 2026-11-24",
    "1002": "waiting for stock, ships within 5 days",
    "1003": "delivered on 2026-11-18",
    "1004": "cancelled at the customer's request, refund issued",
}


class DeskState(BaseModel):
    """What the agent remembers about its customer between tickets."""

    tickets: int = 0
    last_ticket: int = -1
    history: list[str] = Field(default_factory=list)


class SupportDesk(Workflow):
    state_type = DeskState

    @tool
    @staticmethod
    def lookup_order(order_id: str) -> str:
        """Look up the status of an order.

        Args:
            order_id: the order number, e.g. "1001".
        """
        return ORDERS.get(order_id.strip(), f"no order {order_id!r} found")

    @model
    @staticmethod
    def desk_model():
        return default_chat_model(
            prompt=(
                "You are a support agent. Use lookup_order to check an order's status, "
                "then answer the customer in one short sentence."
            ),
            tools=["lookup_order"],
        )

    @step(InputEvent)
    def on_ticket(event, state, ctx):  # noqa: N805 - the proposal's step form
        state.tickets += 1
        state.last_ticket = event.input["ticket"]
        state.history.append(event.input["text"])
        ctx.send_event(ChatModelEvent(model="desk_model", messages=[event.input["text"]]))

    @step(ChatModelResponseEvent)
    def on_answer(event, state, ctx):  # noqa: N805
        ctx.send_event(
            OutputEvent(
                {
                    "customer": str(ctx.address.key),
                    "ticket": state.last_ticket,
                    "tickets_so_far": state.tickets,
                    "answer": event.response.content,
                    "tokens": event.usage.total_tokens,
                }
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap, e.g. 127.0.0.1:9092")
    parser.add_argument("--source", required=True, help="topic with the tickets (JSON)")
    parser.add_argument("--sink", required=True, help="topic for the answers (JSON)")
    args = parser.parse_args()
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=1000))
    runtime = AgentRuntime.from_kafka(
        env, args.source, bootstrap_servers=args.bootstrap, group_id="support-desk", bounded=True
    )
    runtime.apply(SupportDesk()).to_kafka(args.sink, bootstrap_servers=args.bootstrap)
    env.execute("support-desk")


if __name__ == "__main__":
    main()
