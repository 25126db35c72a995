"""The model clients against real HTTP servers on 127.0.0.1 with scripted answers.

`OpenAIChatModel` goes through the official `openai` SDK; `OllamaChatModel` through httpx to
Ollama's native /api/chat. The servers are `tests.servers.scripted_openai`.
"""

from __future__ import annotations

import json
import pickle
import socket
import time

import pytest

import actors.models as models_pkg
from actors.models import ChatResult, OllamaChatModel, OpenAIChatModel, ToolSchema
from actors.models.tool_strategy import (
    NativeToolStrategy,
    ToolStrategy,
    register_tool_strategy,
    resolve_tool_strategy,
)
from protocols.errors import ConfigError, ModelNonRetryableError, ModelRetryableError
from protocols.events import ChatMessage, ToolCall
from tests.servers import fixtures
from tests.servers.fixtures import read_stats
from tests.servers.scripted_openai import Scripted, ScriptedOpenAIServer, content_hash

scripted_openai = fixtures.scripted_openai
scripted_ollama = fixtures.scripted_ollama

WEATHER_TOOL = ToolSchema(
    name="get_weather",
    description="Get the weather.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)

SECRET = "sk-test-SECRET-value-1234567890"


def _model(server: ScriptedOpenAIServer, **kwargs: object) -> OpenAIChatModel:
    kwargs.setdefault("api_key", "sk-local")
    return OpenAIChatModel(model="scripted-model", base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def test_package_exports_are_sorted_and_public() -> None:
    assert models_pkg.__all__ == sorted(models_pkg.__all__)
    assert set(models_pkg.__all__) == {
        "ChatModel",
        "ChatResult",
        "OllamaChatModel",
        "OpenAIChatModel",
        "ToolSchema",
    }


# -- OpenAI-compatible ---------------------------------------------------------------------


@pytest.mark.integration
async def test_openai_plain_answer_usage_and_cost(scripted_openai: ScriptedOpenAIServer) -> None:
    scripted_openai.push(Scripted.text("Hello there", usage=(120, 30)))
    model = _model(
        scripted_openai, prompt="Be brief.", price_per_mtok_in=2.0, price_per_mtok_out=10.0
    )

    result = await model.chat([ChatMessage.user("Hi")])

    assert isinstance(result, ChatResult)
    assert result.message == ChatMessage.assistant("Hello there")
    assert result.usage.input_tokens == 120 and result.usage.output_tokens == 30
    assert result.usage.cost_usd == pytest.approx((120 * 2.0 + 30 * 10.0) / 1e6)
    assert result.provider == "openai" and result.model == "scripted-model"
    sent = scripted_openai.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "scripted-model"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert "tools" not in sent.body
    assert sent.headers["authorization"] == "Bearer sk-local"
    await model.aclose()


@pytest.mark.integration
async def test_openai_prompt_not_duplicated_when_conversation_has_system(
    scripted_openai: ScriptedOpenAIServer,
) -> None:
    model = _model(scripted_openai, prompt="Be brief.")
    await model.chat([ChatMessage.system("Custom."), ChatMessage.user("x")])
    roles = [m["role"] for m in scripted_openai.requests[0].body["messages"]]
    assert roles == ["system", "user"]
    assert scripted_openai.requests[0].body["messages"][0]["content"] == "Custom."


@pytest.mark.integration
async def test_openai_tool_calls_round_trip(scripted_openai: ScriptedOpenAIServer) -> None:
    scripted_openai.push(
        Scripted.tool_calls_of(
            [
                ("get_weather", {"city": "Paris"}, "call_a"),
                ("get_weather", '{"city": "Oslo"}', "call_b"),
            ]
        ),
        Scripted.text("Paris is sunny, Oslo is cold."),
    )
    model = _model(scripted_openai)

    first = await model.chat([ChatMessage.user("Weather?")], tools=[WEATHER_TOOL])

    assert first.message.content is None
    assert first.message.tool_calls == [
        ToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCall(id="call_b", name="get_weather", arguments='{"city": "Oslo"}'),
    ]
    offered = scripted_openai.requests[0].body["tools"]
    assert offered == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the weather.",
                "parameters": WEATHER_TOOL.parameters,
            },
        }
    ]

    conversation = [
        ChatMessage.user("Weather?"),
        first.message,
        ChatMessage.tool("call_a", "Sunny", name="get_weather"),
        ChatMessage.tool("call_b", "Cold", name="get_weather"),
    ]
    second = await model.chat(conversation, tools=[WEATHER_TOOL])
    assert second.message.content == "Paris is sunny, Oslo is cold."
    sent = scripted_openai.requests[1].body["messages"]
    assert sent[1]["tool_calls"][0] == {
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert sent[2] == {"role": "tool", "content": "Sunny", "tool_call_id": "call_a"}


@pytest.mark.integration
async def test_openai_429_is_retryable_with_retry_after(
    scripted_openai: ScriptedOpenAIServer,
) -> None:
    scripted_openai.push(Scripted.rate_limited(retry_after_s=7, message="slow down"))
    model = _model(scripted_openai)

    with pytest.raises(ModelRetryableError) as info:
        await model.chat([ChatMessage.user("x")])

    assert info.value.retry_after_s == pytest.approx(7.0)
    assert info.value.retryable is True
    assert "429" in str(info.value) and "slow down" in str(info.value)
    assert "'scripted-model'" in str(info.value)
    assert scripted_openai.calls == 1  # the SDK's own retries are off


@pytest.mark.integration
async def test_openai_429_retry_after_http_date(scripted_openai: ScriptedOpenAIServer) -> None:
    from email.utils import formatdate

    scripted_openai.push(
        Scripted(
            status=429,
            error_message="later",
            headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)},
        )
    )
    with pytest.raises(ModelRetryableError) as info:
        await _model(scripted_openai).chat([ChatMessage.user("x")])
    assert info.value.retry_after_s is not None and 25 <= info.value.retry_after_s <= 31


@pytest.mark.integration
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_openai_5xx_is_retryable(scripted_openai: ScriptedOpenAIServer, status: int) -> None:
    scripted_openai.push(Scripted.server_error(status=status, message="upstream broke"))
    with pytest.raises(ModelRetryableError, match=f"HTTP {status}"):
        await _model(scripted_openai).chat([ChatMessage.user("x")])
    assert scripted_openai.calls == 1


@pytest.mark.integration
@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_openai_other_4xx_is_not_retryable(
    scripted_openai: ScriptedOpenAIServer, status: int
) -> None:
    scripted_openai.push(Scripted.bad_request(message="no such thing", status=status))
    with pytest.raises(ModelNonRetryableError, match=f"HTTP {status}.*no such thing"):
        await _model(scripted_openai).chat([ChatMessage.user("x")])


@pytest.mark.integration
async def test_openai_malformed_answer_is_not_retryable(
    scripted_openai: ScriptedOpenAIServer,
) -> None:
    scripted_openai.push(Scripted.malformed({"id": "x", "choices": []}))
    with pytest.raises(ModelNonRetryableError, match="no choices"):
        await _model(scripted_openai).chat([ChatMessage.user("x")])


@pytest.mark.integration
async def test_openai_timeout_is_retryable(scripted_openai: ScriptedOpenAIServer) -> None:
    scripted_openai.push(Scripted.slow(5.0))
    model = _model(scripted_openai, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ModelRetryableError, match="timed out"):
        await model.chat([ChatMessage.user("x")])
    assert time.monotonic() - started < 4.0


@pytest.mark.integration
async def test_openai_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIChatModel(model="m", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=5)
    with pytest.raises(ModelRetryableError, match="could not reach"):
        await model.chat([ChatMessage.user("x")])


@pytest.mark.integration
async def test_openai_extra_body_is_sent(scripted_openai: ScriptedOpenAIServer) -> None:
    model = _model(scripted_openai, extra_body={"temperature": 0, "top_k": 5})
    result = await model.chat([ChatMessage.user("ping")])
    assert result.message.content == "echo: ping"
    body = scripted_openai.requests[0].body
    assert body["temperature"] == 0 and body["top_k"] == 5


@pytest.mark.integration
async def test_scripted_server_handler_and_per_content_counts(
    scripted_openai: ScriptedOpenAIServer,
) -> None:
    scripted_openai.handler = lambda body: f"len={len(body['messages'])}"
    model = _model(scripted_openai)
    a = await model.chat([ChatMessage.user("one")])
    b = await model.chat([ChatMessage.user("one")])
    c = await model.chat([ChatMessage.user("one"), ChatMessage.user("two")])
    assert (a.message.content, b.message.content, c.message.content) == ("len=1", "len=1", "len=2")
    first_body = scripted_openai.requests[0].body
    assert scripted_openai.calls_for(first_body) == 2
    assert scripted_openai.calls_for(content_hash(scripted_openai.requests[2].body)) == 1
    stats = read_stats(scripted_openai.base_url)
    assert stats["calls"] == 3 and stats["by_status"] == {"200": 3}


@pytest.mark.integration
async def test_scripted_server_tool_mode(scripted_openai: ScriptedOpenAIServer) -> None:
    scripted_openai.mode = "tool"
    model = _model(scripted_openai)
    first = await model.chat([ChatMessage.user("Lima")], tools=[WEATHER_TOOL])
    assert first.message.tool_calls[0].name == "get_weather"
    assert json.loads(first.message.tool_calls[0].arguments) == {"city": "Lima"}
    call = first.message.tool_calls[0]
    second = await model.chat(
        [ChatMessage.user("Lima"), first.message, ChatMessage.tool(call.id, "Sunny")],
        tools=[WEATHER_TOOL],
    )
    assert second.message.content == "done: Sunny"


@pytest.mark.integration
async def test_scripted_server_serves_concurrent_slow_requests() -> None:
    import asyncio

    with ScriptedOpenAIServer(latency_s=0.3) as server:
        model = _model(server)
        started = time.monotonic()
        results = await asyncio.gather(
            *(model.chat([ChatMessage.user(f"q{i}")]) for i in range(20))
        )
        elapsed = time.monotonic() - started
        await model.aclose()
    assert [r.message.content for r in results] == [f"echo: q{i}" for i in range(20)]
    assert server.calls == 20
    assert server.max_in_flight > 1
    assert elapsed < 20 * 0.3  # overlapped, not serial


# -- secrets -------------------------------------------------------------------------------


@pytest.mark.integration
async def test_api_key_never_in_repr_or_pickle(
    scripted_openai: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = _model(scripted_openai, api_key=SECRET)
    await model.chat([ChatMessage.user("x")])  # opens a client holding the key
    assert scripted_openai.requests[-1].headers["authorization"] == f"Bearer {SECRET}"

    assert SECRET not in repr(model) and SECRET not in str(model)
    data = pickle.dumps(model)
    assert SECRET.encode() not in data
    assert b"SECRET" not in data

    clone = pickle.loads(data)
    assert clone.model == "scripted-model" and clone.base_url == scripted_openai.base_url
    # Where it lands, the key comes from the environment (or a placeholder for local servers).
    await clone.chat([ChatMessage.user("x")])
    assert scripted_openai.requests[-1].headers["authorization"] == "Bearer sk-no-key-required"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    await pickle.loads(data).chat([ChatMessage.user("x")])
    assert scripted_openai.requests[-1].headers["authorization"] == "Bearer sk-from-env"


async def test_missing_key_for_openai_itself_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = OpenAIChatModel(model="gpt-4o-mini")
    with pytest.raises(ModelNonRetryableError, match="'OPENAI_API_KEY'"):
        await model.chat([ChatMessage.user("x")])


def test_openai_config_errors() -> None:
    with pytest.raises(ConfigError, match="'timeout_s'"):
        OpenAIChatModel(model="m", timeout_s=0)
    with pytest.raises(ConfigError, match="'tool_strategy'.*'json-nope'"):
        OpenAIChatModel(model="m", tool_strategy="json-nope")
    assert isinstance(OpenAIChatModel(model="m").tool_strategy, NativeToolStrategy)
    assert OpenAIChatModel(model="m").rate_key == "openai/m"


# -- tool strategy hook --------------------------------------------------------------------


class _UpperStrategy(NativeToolStrategy):
    """A stand-in plug-in: rewrites the request and the answer so both hooks are visible."""

    name = "upper-test"

    def build_request(
        self, request: dict[str, object], tools: list[ToolSchema]
    ) -> dict[str, object]:
        request = super().build_request(request, tools)
        return {**request, "extra_body": {"strategy": self.name}}

    def parse_response(self, message: dict[str, object]) -> ChatMessage:
        parsed = super().parse_response(message)
        return ChatMessage.assistant((parsed.content or "").upper(), parsed.tool_calls)


@pytest.mark.integration
async def test_tool_strategy_hook_is_used(scripted_openai: ScriptedOpenAIServer) -> None:
    register_tool_strategy("upper-test", _UpperStrategy)
    assert isinstance(resolve_tool_strategy("upper-test"), ToolStrategy)
    model = _model(scripted_openai, tool_strategy="upper-test")
    result = await model.chat([ChatMessage.user("hi")], tools=[WEATHER_TOOL])
    assert result.message.content == "ECHO: HI"
    assert scripted_openai.requests[0].body["strategy"] == "upper-test"
    clone = pickle.loads(pickle.dumps(model))
    assert isinstance(clone.tool_strategy, _UpperStrategy)


# -- Ollama native -------------------------------------------------------------------------


@pytest.mark.integration
async def test_ollama_plain_answer_and_usage(scripted_ollama: ScriptedOpenAIServer) -> None:
    scripted_ollama.push(Scripted.text("Bonjour", usage=(11, 3)))
    model = OllamaChatModel(host=scripted_ollama.host, model="qwen2.5:7b", prompt="Be nice.")

    result = await model.chat([ChatMessage.user("Salut")])

    assert result.message == ChatMessage.assistant("Bonjour")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (11, 3)
    assert result.provider == "ollama" and result.model == "qwen2.5:7b"
    sent = scripted_ollama.requests[0]
    assert sent.path == "/api/chat"
    assert sent.body["stream"] is False
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Salut"},
    ]
    await model.aclose()


@pytest.mark.integration
async def test_ollama_tool_calls(scripted_ollama: ScriptedOpenAIServer) -> None:
    scripted_ollama.push(
        Scripted.tool_call("get_weather", {"city": "Paris"}), Scripted.text("Sunny")
    )
    model = OllamaChatModel(host=scripted_ollama.host, model="m", options={"temperature": 0})

    first = await model.chat([ChatMessage.user("Weather?")], tools=[WEATHER_TOOL])
    assert first.message.content is None
    assert first.message.tool_calls == [
        ToolCall(id="call_0", name="get_weather", arguments='{"city": "Paris"}')
    ]
    assert scripted_ollama.requests[0].body["tools"][0]["function"]["name"] == "get_weather"
    assert scripted_ollama.requests[0].body["options"] == {"temperature": 0}

    call = first.message.tool_calls[0]
    await model.chat(
        [
            ChatMessage.user("Weather?"),
            first.message,
            ChatMessage.tool(call.id, "Sunny", name="get_weather"),
        ]
    )
    sent = scripted_ollama.requests[1].body["messages"]
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert sent[2] == {"role": "tool", "content": "Sunny", "tool_name": "get_weather"}


@pytest.mark.integration
async def test_ollama_error_mapping(scripted_ollama: ScriptedOpenAIServer) -> None:
    model = OllamaChatModel(host=scripted_ollama.host, model="m", timeout_s=0.5)
    scripted_ollama.push(
        Scripted.rate_limited(retry_after_s=3),
        Scripted.server_error(message="model crashed"),
        Scripted.bad_request(message="model 'm' not found", status=404),
        Scripted.malformed({"nothing": "here"}),
        Scripted.slow(5.0),
    )
    with pytest.raises(ModelRetryableError) as info:
        await model.chat([ChatMessage.user("x")])
    assert info.value.retry_after_s == 3.0
    with pytest.raises(ModelRetryableError, match="HTTP 500.*model crashed"):
        await model.chat([ChatMessage.user("x")])
    with pytest.raises(ModelNonRetryableError, match="HTTP 404.*ollama pull"):
        await model.chat([ChatMessage.user("x")])
    with pytest.raises(ModelNonRetryableError, match="no 'message'"):
        await model.chat([ChatMessage.user("x")])
    with pytest.raises(ModelRetryableError, match="timed out"):
        await model.chat([ChatMessage.user("x")])


def test_ollama_pickles_and_validates_host() -> None:
    model = OllamaChatModel(host="http://127.0.0.1:11434/", model="m", tools=["t"])
    clone = pickle.loads(pickle.dumps(model))
    assert clone.host == "http://127.0.0.1:11434" and clone.tools == ["t"]
    assert repr(clone) == "OllamaChatModel(model='m', host='http://127.0.0.1:11434')"
    with pytest.raises(ConfigError, match="'host'"):
        OllamaChatModel(host="127.0.0.1:11434", model="m")


# -- the scripted server as a separate process ---------------------------------------------


@pytest.mark.integration
async def test_scripted_server_cli_process() -> None:
    from tests.servers.fixtures import scripted_openai_process

    with scripted_openai_process(latency_ms=20, mode="echo", fail_every=3) as base_url:
        model = OpenAIChatModel(model="m", base_url=base_url)
        assert (await model.chat([ChatMessage.user("a")])).message.content == "echo: a"
        assert (await model.chat([ChatMessage.user("b")])).message.content == "echo: b"
        with pytest.raises(ModelRetryableError, match="HTTP 500"):
            await model.chat([ChatMessage.user("c")])
        stats = read_stats(base_url)
        assert stats["calls"] == 3
        assert stats["by_status"] == {"200": 2, "500": 1}
        await model.aclose()
