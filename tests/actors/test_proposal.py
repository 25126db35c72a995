"""The proposal's Python examples (../shared/proposal.txt), run as written there.

Only imports and the elided bodies (``...``) differ: the model is a test model, the tool has a
body. The MCP-server variant runs against a real FastMCP stdio server in test_react_mcp.py.
"""

from __future__ import annotations

from actors import (
    AgentWorkflow,
    ChatMessage,
    ChatModelEvent,
    ChatModelResponseEvent,
    Event,
    InputEvent,
    LocalRunner,
    OutputEvent,
    RunnerContext,
    State,
    Workflow,
    model,
    step,
    tool,
)
from actors.testing import TestModel


class PythonClass:
    @tool
    @staticmethod
    def my_tool(city: str) -> str:
        """Look up the weather of a city.

        Args:
            city: the city's name.
        """
        return f"sunny in {city}"


class MyWorkflow(Workflow):
    # Define a tool as a python function
    @tool
    @staticmethod
    def my_tool(args):
        """Google style description of the tool."""
        return f"tool saw {args!r}"

    # Define a model, with system prompts, available tools and MCP servers
    @model
    @staticmethod
    def my_llm():
        return TestModel(
            prompt="You are a helpful agent.",
            tools=["my_tool"],
        )

    # Define a workflow step, which subscribes to InputEvent and ChatModelResponseEvent
    @step(InputEvent, ChatModelResponseEvent)
    def my_step(event: Event, state: State, ctx: RunnerContext):
        if isinstance(event, InputEvent):  # Built-in InputEvent will be received for each input
            input = event.input
            state.messages.append(input)
            ctx.send_event(ChatModelEvent(model="my_llm", messages=state.messages))
        elif isinstance(event, ChatModelResponseEvent):  # Built-in: each model response
            state.messages.append(event.response)
            ctx.send_event(OutputEvent(event.response))  # send OutputEvent to emit outputs


async def test_custom_workflow_runs_as_written() -> None:
    my_workflow = MyWorkflow()
    runner = LocalRunner(my_workflow)
    outputs = await runner.send("user-1", "What is the weather?")
    assert len(outputs) == 1
    answer = outputs[0]
    assert isinstance(answer, ChatMessage) and answer.role == "assistant"
    # TestModel called my_tool once (args made up from its schema), then answered with it.
    assert answer.content == '{"my_tool": "tool saw \'a\'"}'
    llm = my_workflow.compiled().models["my_llm"].model
    assert llm.calls == 2
    first_messages, first_tools = llm.requests[0]
    assert first_messages[0] == ChatMessage.system("You are a helpful agent.")
    assert [t.name for t in first_tools] == ["my_tool"]
    state = runner.state("user-1")
    assert state.messages == ["What is the weather?", answer]
    assert runner.errors == []


async def test_custom_workflow_state_accumulates_per_key() -> None:
    runner = LocalRunner(MyWorkflow())
    await runner.run([("a", "one"), ("b", "other"), ("a", "two")])
    assert [m for m in runner.state("a").messages if isinstance(m, str)] == ["one", "two"]
    assert len(runner.state("a").messages) == 4
    assert len(runner.state("b").messages) == 2


async def test_agent_workflow_example_runs_as_written() -> None:
    my_agent = AgentWorkflow(  # AgentWorkflow is a built-in subclass of Workflow
        model=TestModel(),
        prompt="You answer questions about the weather.",
        local_tools=[PythonClass.my_tool],
    )
    runner = LocalRunner(my_agent)
    outputs = await runner.send("k", "Weather in Paris?")
    assert outputs == ['{"my_tool": "sunny in a"}']
    assert runner.errors == []
