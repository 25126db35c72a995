"""AgentWorkflow: the built-in ReAct agent, with local tools, structured output, and (marked
integration) a real FastMCP server over stdio."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from actors import (
    AgentWorkflow,
    ChatMessage,
    ChatModelEvent,
    ChatModelResponseEvent,
    ErrorEvent,
    Event,
    InputEvent,
    LocalRunner,
    OutputEvent,
    RunnerContext,
    State,
    ToolCall,
    Workflow,
    mcp_server,
    model,
    step,
    tool,
)
from actors.mcp import MCPServerStdio
from actors.models.base import ToolSchema
from actors.testing import FunctionModel, ScriptedModel, TestModel, tool_call
from protocols.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


class Sum(BaseModel):
    total: int
    explanation: str


async def test_react_loop_with_a_local_tool() -> None:
    llm = ScriptedModel([tool_call("add", a=2, b=3), "the sum is 5"])
    agent = AgentWorkflow(model=llm, prompt="You add.", local_tools=[add])
    runner = LocalRunner(agent)
    assert await runner.send("k", "2+3?") == ["the sum is 5"]
    second_messages, tools = llm.requests[1]
    assert [m.role for m in second_messages] == ["system", "user", "assistant", "tool"]
    assert second_messages[0].content == "You add."
    assert second_messages[3].content == "5"
    assert tools[0].name == "add" and tools[0].parameters["required"] == ["a", "b"]
    assert runner.calls_executed == 3
    assert runner.errors == []


async def test_structured_output_is_validated_and_retried_once() -> None:
    answers = iter(["not json", '```json\n{"total": 5, "explanation": "2+3"}\n```'])
    llm = FunctionModel(lambda messages, tools: next(answers))
    agent = AgentWorkflow(model=llm, prompt="You add.", output_type=Sum)
    runner = LocalRunner(agent)
    assert await runner.send("k", "2+3?") == [Sum(total=5, explanation="2+3")]
    system = llm.requests[0][0][0].content
    assert system.startswith("You add.") and '"total"' in system
    retry_prompt = llm.requests[1][0][-1]
    assert retry_prompt.role == "user" and "not valid" in retry_prompt.content
    assert runner.errors == []


async def test_structured_output_that_never_validates_is_an_error() -> None:
    agent = AgentWorkflow(model=ScriptedModel(["nope", "still nope"]), output_type=Sum)
    runner = LocalRunner(agent)
    assert await runner.send("k", "x") == []
    [err] = runner.errors
    assert err.error_type == "ModelNonRetryableError" and err.step == "on_response"
    assert "Sum" in err.message


async def test_a_failing_model_is_reported_not_dropped() -> None:
    agent = AgentWorkflow(model=ScriptedModel([]))
    runner = LocalRunner(agent)
    assert await runner.send("k", "x") == []
    [err] = runner.errors
    assert err.error_type == "ModelNonRetryableError" and "no answers left" in err.message


def test_agent_name_is_its_agent_type() -> None:
    agent = AgentWorkflow(model=TestModel(), name="pricing")
    assert agent.name == "pricing" and str(LocalRunner(agent).address("k")) == "pricing/k"
    assert AgentWorkflow(model=TestModel()).name == "AgentWorkflow"


async def test_override_swaps_the_model_and_keeps_the_prompt() -> None:
    agent = AgentWorkflow(model=ScriptedModel([]), prompt="P", local_tools=[add])
    test_model = TestModel()
    runner = LocalRunner(agent.override(model=test_model))
    assert await runner.send("k", "x") == ['{"add": "0"}']
    assert test_model.requests[0][0][0] == ChatMessage.system("P")
    with pytest.raises(UserError, match="'nope'"):
        agent.override(nope=test_model)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "gpt-4o"}, "takes a ChatModel"),
        ({"model": TestModel(), "tools": "get_weather"}, "list of names"),
        ({"model": TestModel(), "tools": ["get_weather"]}, "no mcp_servers"),
        ({"model": TestModel(), "remote_prompt": "p"}, "needs mcp_servers"),
        ({"model": TestModel(), "local_tools": [add, add]}, "two tools named 'add'"),
    ],
)
def test_bad_agent_definitions_fail_when_defined(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UserError, match=match):
        AgentWorkflow(**kwargs)


def _weather_server() -> MCPServerStdio:
    return MCPServerStdio(sys.executable, ["-m", "tests.servers.mcp_weather"], cwd=str(REPO))


def _react_fn(messages: list[ChatMessage], tools: list[ToolSchema]) -> ChatMessage:
    """Call get_weather for Paris once, then answer with what it returned."""
    results = [m for m in messages if m.role == "tool"]
    if not results:
        return ChatMessage.assistant(
            None, [ToolCall(id="c1", name="get_weather", arguments=json.dumps({"city": "Paris"}))]
        )
    return ChatMessage.assistant(f"It is {results[-1].content}")


@pytest.mark.integration
async def test_react_end_to_end_with_a_real_mcp_server_over_stdio() -> None:
    llm = FunctionModel(_react_fn)
    agent = AgentWorkflow(
        model=llm,
        mcp_servers=[_weather_server()],
        local_tools=[add],
        tools=["get_weather"],
        remote_prompt="weather_assistant",
    )
    async with LocalRunner(agent) as runner:
        assert await runner.send("k", "Weather in Paris?") == ["It is Paris: Sunny, 21 C"]
        assert runner.errors == []
        messages, tools = llm.requests[0]
        assert sorted(t.name for t in tools) == ["add", "get_weather"]  # allow-list applied
        assert messages[0].role == "system" and "weather" in (messages[0].content or "").lower()
        # a second input re-lists tools through the executor's cache: no new server process
        assert await runner.send("k", "again?") == ["It is Paris: Sunny, 21 C"]


class MCPWorkflow(Workflow):
    """The proposal's customized workflow, with its MCP server, as written there."""

    @tool
    @staticmethod
    def my_tool(args):
        """Google style description of the tool."""
        return "local"

    @mcp_server
    @staticmethod
    def my_mcp_server():
        return MCPServerStdio(
            command=sys.executable,
            args=["-m", "tests.servers.mcp_weather"],
            cwd=str(REPO),
        )

    @model
    @staticmethod
    def my_llm():
        return FunctionModel(
            _react_fn,
            prompt="...",
            tools=["my_tool"],
            mcp_servers=["my_mcp_server"],
        )

    @step(InputEvent, ChatModelResponseEvent)
    def my_step(event: Event, state: State, ctx: RunnerContext):
        if isinstance(event, InputEvent):
            input = event.input
            state.messages.append(input)
            ctx.send_event(ChatModelEvent(model="my_llm", messages=state.messages))
        elif isinstance(event, ChatModelResponseEvent):
            state.messages.append(event.response)
            ctx.send_event(OutputEvent(event.response))

    @step(ErrorEvent)
    def on_error(event: ErrorEvent, state: State, ctx: RunnerContext):
        ctx.send_event(OutputEvent(f"error: {event.message}"))


@pytest.mark.integration
async def test_proposal_workflow_with_its_mcp_server() -> None:
    wf = MCPWorkflow()
    async with LocalRunner(wf) as runner:
        [answer] = await runner.send("k", "Weather?")
        assert answer.content == "It is Paris: Sunny, 21 C"
        _, tools = wf.compiled().models["my_llm"].model.requests[0]
        names = {t.name for t in tools}
        assert {"my_tool", "get_weather", "list_user_orders"} <= names


@pytest.mark.integration
async def test_a_failing_mcp_tool_becomes_an_error_event() -> None:
    llm = ScriptedModel([tool_call("fail", message="kaput"), "gave up"])
    agent = AgentWorkflow(model=llm, mcp_servers={"weather": _weather_server()})
    async with LocalRunner(agent) as runner:
        assert await runner.send("k", "x") == ["gave up"]
        [err] = runner.errors
        assert "kaput" in err.message and "'fail'" in err.message
        tool_message = llm.requests[1][0][-1]
        assert tool_message.role == "tool" and "kaput" in (tool_message.content or "")
