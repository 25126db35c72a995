"""The flink-agents 0.2.0 agent of the runtime benchmark's baseline side.

flink-agents resolves an agent's actions and resources by module and qualified name inside the
JVM's Python, so they must live in an importable module, not in the ``__main__`` of the job.
The agent has one async action per input making one model call and one tool call through
``ctx.durable_execute_async`` (run on flink-agents' async thread pool, ``num-async-threads``).
The model answers `workload.answer_for(prompt)` after ``time.sleep(latency)``: a blocking call
in a pool thread, as a real blocking client would be; no HTTP, as on our side.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from flink_agents.api.agents.agent import Agent
from flink_agents.api.chat_message import ChatMessage, MessageRole
from flink_agents.api.chat_models.chat_model import BaseChatModelSetup
from flink_agents.api.decorators import action, chat_model_setup, tool
from flink_agents.api.events.event import InputEvent, OutputEvent
from flink_agents.api.resource import ResourceDescriptor, ResourceType
from flink_agents.api.runner_context import RunnerContext

from bench._runtime import workload as wl

__all__ = ["BaselineAgent", "ScriptedChatModel"]


class ScriptedChatModel(BaseChatModelSetup):
    """Answers `workload.answer_for(prompt)` after the latency the prompt names."""

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        answer, delay_s = wl.answer_for(str(messages[-1].content))
        if delay_s > 0:
            time.sleep(delay_s)
        return ChatMessage(role=MessageRole.ASSISTANT, content=answer)


class BaselineAgent(Agent):
    """One model call, then one tool call, then one output, per input."""

    @chat_model_setup
    @staticmethod
    def llm() -> ResourceDescriptor:
        return ResourceDescriptor(
            clazz=f"{ScriptedChatModel.__module__}.{ScriptedChatModel.__name__}",
            connection="none",  # chat() is overridden: no connection resource is used
        )

    @tool
    @staticmethod
    def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: the agent key.
        """
        return wl.lookup(key)

    @action(InputEvent)
    @staticmethod
    async def on_input(event: InputEvent, ctx: RunnerContext) -> None:
        record = event.input
        llm = ctx.get_resource("llm", ResourceType.CHAT_MODEL)
        prompt = ChatMessage(role=MessageRole.USER, content=wl.prompt_for(record))
        reply = await ctx.durable_execute_async(llm.chat, [prompt])
        lookup_tool = ctx.get_resource("lookup", ResourceType.TOOL)
        result = await ctx.durable_execute_async(lookup_tool.call, key=record["key"])
        ctx.send_event(OutputEvent(output=wl.make_output(record, str(reply.content), result)))
