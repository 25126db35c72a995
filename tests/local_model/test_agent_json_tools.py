"""AgentWorkflow on `LocalChatModel` with the constrained-JSON strategy, over real HTTP to a
scripted OpenAI-compatible server: a full tool loop, and bad tool calls ending as an
`ErrorEvent` (never a crash)."""

from __future__ import annotations

import json

from actors import AgentWorkflow, LocalRunner
from actors.models.local import LocalChatModel
from tests.local_model.scripted_server import scripted_server

CITIES: list[str] = []


def get_weather(city: str) -> str:
    """Get the current weather of a city.

    Args:
        city: the city name.
    """
    CITIES.append(city)
    return f"sunny in {city}"


async def test_tool_loop_through_agent_workflow() -> None:
    CITIES.clear()
    answers: list[str | dict[str, object]] = [
        '{"tool": "get_weather", "arguments": {"city": "Paris"}}',
        '{"final": "It is sunny in Paris."}',
    ]
    with scripted_server(answers) as srv:
        agent = AgentWorkflow(
            model=LocalChatModel(model="m", base_url=srv.base_url),
            prompt="You answer weather questions.",
            local_tools=[get_weather],
        )
        runner = LocalRunner(agent)
        outputs = await runner.send("k", "Weather in Paris?")
        await runner.aclose()
    assert outputs == ["It is sunny in Paris."]
    assert CITIES == ["Paris"]
    assert runner.errors == []
    first, second = srv.requests
    assert (
        first["response_format"]["json_schema"]["schema"]["anyOf"][0]["properties"]["tool"]["const"]
        == "get_weather"
    )
    # The tool result comes back as a user turn the model can follow, after its own JSON call.
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert json.loads(second["messages"][2]["content"])["arguments"] == {"city": "Paris"}
    assert "Result of get_weather: sunny in Paris" in second["messages"][3]["content"]


async def test_persistently_bad_tool_calls_become_an_error_event() -> None:
    CITIES.clear()
    bad = ['{"tool": "get_weather", "arguments": {}}', "{not json", '{"tool": "nope"}']
    with scripted_server(bad) as srv:
        agent = AgentWorkflow(
            model=LocalChatModel(model="m", base_url=srv.base_url, max_attempts=3),
            prompt="You answer weather questions.",
            local_tools=[get_weather],
        )
        runner = LocalRunner(agent)
        outputs = await runner.send("k", "Weather?")
        await runner.aclose()
    assert outputs == []
    assert CITIES == []
    assert len(srv.requests) == 3
    (error,) = runner.errors
    assert error.error_type == "ToolCallFormatError"
    assert error.retryable is False
    assert "all 3 attempts" in error.message
