"""The constrained-JSON tool strategy: parsing, validation, retry with feedback, modes.

Model calls go over real HTTP to a scripted OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from actors.models.base import ToolSchema
from actors.models.json_tools import (
    JsonToolStrategy,
    ToolCallFormatError,
    answer_schema,
    parse_answer,
    rewrite_history,
    validate_tool_call,
)
from actors.models.local import LOCAL_MODEL_INFO_FILE, LocalChatModel, default_chat_model
from actors.models.tool_strategy import NativeToolStrategy, resolve_tool_strategy
from protocols.errors import ConfigError, ModelNonRetryableError
from protocols.events import ChatMessage, ToolCall
from tests.local_model.scripted_server import scripted_server

WEATHER = ToolSchema(
    name="get_weather",
    description="Current weather of a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
    },
)


# -- parsing --------------------------------------------------------------------------------


def test_parse_tool_call_and_final() -> None:
    call = parse_answer('{"tool": "get_weather", "arguments": {"city": "Paris"}}')
    assert call.content is None
    assert [(c.name, json.loads(c.arguments)) for c in call.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    final = parse_answer(' {"final": "It is sunny."} ')
    assert final.content == "It is sunny." and final.tool_calls == []
    assert parse_answer("plain text answer").content == "plain text answer"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"tool": "get_weather", "arguments": {"city": ', "not valid JSON"),
        ('["get_weather"]', "not a JSON object"),
        ('{"answer": 1}', 'neither a "tool" name nor a "final"'),
        ('{"tool": "get_weather", "arguments": "Paris"}', "is not a JSON object"),
        ('{"final": "..."}', "placeholder"),
        ('{"final": " <your answer> "}', "placeholder"),
    ],
)
def test_parse_rejects_protocol_violations(raw: str, problem: str) -> None:
    with pytest.raises(ToolCallFormatError) as info:
        parse_answer(raw)
    assert problem in info.value.feedback
    assert info.value.raw == raw
    assert isinstance(info.value, ModelNonRetryableError)


def test_validate_unknown_tool_and_bad_arguments() -> None:
    validate_tool_call(
        ToolCall(id="c", name="get_weather", arguments='{"city": "Oslo"}'), [WEATHER], raw=""
    )
    with pytest.raises(ToolCallFormatError, match="unknown tool 'get_time'"):
        validate_tool_call(ToolCall(id="c", name="get_time"), [WEATHER], raw="")
    with pytest.raises(ToolCallFormatError) as info:
        validate_tool_call(
            ToolCall(id="c", name="get_weather", arguments='{"city": "Oslo", "days": 0}'),
            [WEATHER],
            raw="",
        )
    assert "days" in info.value.feedback and "minimum" in info.value.feedback
    with pytest.raises(ToolCallFormatError, match="'city' is a required property"):
        validate_tool_call(ToolCall(id="c", name="get_weather", arguments="{}"), [WEATHER], raw="")


def test_format_error_survives_pickling() -> None:
    exc = ToolCallFormatError("msg", raw="{bad", feedback="not JSON")
    back = pickle.loads(pickle.dumps(exc))
    assert (str(back), back.raw, back.feedback) == ("msg", "{bad", "not JSON")


# -- request building -----------------------------------------------------------------------


def test_build_request_constrains_answer_and_rewrites_history() -> None:
    strategy = JsonToolStrategy("json_object")
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21C"},
    ]
    request = strategy.build_request({"model": "m", "messages": history, "tools": ["x"]}, [WEATHER])
    assert "tools" not in request
    assert request["response_format"] == {"type": "json_object", "schema": answer_schema([WEATHER])}
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    system = request["messages"][0]["content"]
    assert system.startswith("Be brief.") and "get_weather" in system and '"final"' in system
    assert json.loads(request["messages"][2]["content"]) == {
        "tool": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert "Result of get_weather: sunny, 21C" in request["messages"][3]["content"]

    openai_style = JsonToolStrategy().build_request({"model": "m", "messages": []}, [WEATHER])
    fmt = openai_style["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["anyOf"][0]["properties"][
        "tool"
    ] == {"type": "string", "const": "get_weather"}
    assert openai_style["messages"][0]["role"] == "system"


def test_no_tools_means_no_constraint() -> None:
    request = JsonToolStrategy().build_request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, []
    )
    assert "response_format" not in request
    assert request["messages"] == [{"role": "user", "content": "hi"}]


def _schema_variants(request: dict[str, object]) -> list[str]:
    fmt = request["response_format"]
    assert isinstance(fmt, dict)
    variants = fmt["json_schema"]["schema"]["anyOf"]
    return sorted(next(iter(v["required"])) for v in variants)


def test_turn_policy_narrows_the_schema() -> None:
    strategy = JsonToolStrategy(first_turn_tool=True, max_tool_rounds=1)
    user = {"role": "user", "content": "Weather in Paris?"}
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    first = strategy.build_request({"model": "m", "messages": [user]}, [WEATHER])
    assert _schema_variants(first) == ["tool"]  # a tool call is required
    after = strategy.build_request({"model": "m", "messages": [user, call, result]}, [WEATHER])
    assert _schema_variants(after) == ["final"]  # one round done: answer now
    assert after["messages"][-1]["content"].endswith("a final answer that uses this result.")
    free = JsonToolStrategy().build_request(
        {"model": "m", "messages": [user, call, result]}, [WEATHER]
    )
    assert _schema_variants(free) == ["final", "tool"]
    assert free["messages"][-1]["content"].endswith("or call another tool.")
    # A new user message starts a new exchange: a tool call is required again.
    again = strategy.build_request(
        {
            "model": "m",
            "messages": [user, call, result, {"role": "assistant", "content": "x"}, user],
        },
        [WEATHER],
    )
    assert _schema_variants(again) == ["tool"]
    with pytest.raises(ConfigError, match="max_tool_rounds"):
        JsonToolStrategy(max_tool_rounds=0)


def test_rewrite_history_keeps_plain_turns() -> None:
    plain = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert rewrite_history(plain) == plain


def test_json_strategy_is_registered() -> None:
    assert resolve_tool_strategy("json") == JsonToolStrategy()
    with pytest.raises(ConfigError, match="schema_style"):
        JsonToolStrategy("grammar")  # type: ignore[arg-type]


# -- modes ----------------------------------------------------------------------------------


def test_auto_mode_picks_json_on_loopback_and_native_elsewhere() -> None:
    local = LocalChatModel(model="m", base_url="http://127.0.0.1:8765/v1")
    assert isinstance(local.tool_strategy, JsonToolStrategy)
    assert isinstance(
        LocalChatModel(model="m", base_url="http://localhost:1/v1").tool_strategy, JsonToolStrategy
    )
    hosted = LocalChatModel(model="gpt-4o-mini", base_url="https://api.openai.com/v1")
    assert isinstance(hosted.tool_strategy, NativeToolStrategy)
    forced = LocalChatModel(model="m", base_url="https://api.openai.com/v1", tool_mode="json")
    assert isinstance(forced.tool_strategy, JsonToolStrategy)
    native = LocalChatModel(model="m", base_url="http://127.0.0.1:1/v1", tool_mode="native")
    assert isinstance(native.tool_strategy, NativeToolStrategy)
    with pytest.raises(ConfigError, match="tool_mode"):
        LocalChatModel(model="m", tool_mode="grammar")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_attempts"):
        LocalChatModel(model="m", max_attempts=0)


def test_local_model_pickles_with_its_strategy() -> None:
    model = LocalChatModel(model="m", base_url="http://127.0.0.1:9/v1", schema_style="json_object")
    back = pickle.loads(pickle.dumps(model))
    assert back.tool_strategy == JsonToolStrategy("json_object")
    assert back.max_attempts == 3


# -- the retry loop over real HTTP ----------------------------------------------------------


async def test_valid_tool_call_gets_a_stable_id() -> None:
    with scripted_server(['{"tool": "get_weather", "arguments": {"city": "Paris"}}']) as srv:
        model = LocalChatModel(model="m", base_url=srv.base_url)
        result = await model.chat([ChatMessage.user("Weather in Paris?")], tools=[WEATHER])
        await model.aclose()
    (call,) = result.message.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "call_1_0",
        "get_weather",
        {"city": "Paris"},
    )
    assert len(srv.requests) == 1
    assert srv.requests[0]["response_format"]["type"] == "json_schema"
    assert "tools" not in srv.requests[0]


async def test_bad_json_then_unknown_tool_then_valid_is_retried_with_feedback() -> None:
    answers: list[str | dict[str, object]] = [
        '{"tool": "get_weather", "arguments": {"city": ',
        '{"tool": "get_time", "arguments": {}}',
        '{"tool": "get_weather", "arguments": {"city": "Oslo"}}',
    ]
    with scripted_server(answers) as srv:
        model = LocalChatModel(model="m", base_url=srv.base_url)
        result = await model.chat([ChatMessage.user("Weather in Oslo?")], tools=[WEATHER])
        await model.aclose()
    assert result.message.tool_calls[0].arguments == '{"city": "Oslo"}'
    assert len(srv.requests) == 3
    second = srv.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": answers[0]}
    assert second[-1]["role"] == "user" and "not valid JSON" in second[-1]["content"]
    third = srv.requests[2]["messages"]
    assert "there is no tool 'get_time'" in third[-1]["content"]
    assert result.usage.input_tokens == 30 and result.usage.output_tokens == 15


async def test_invalid_arguments_every_time_gives_up_after_max_attempts() -> None:
    bad = '{"tool": "get_weather", "arguments": {"city": "Oslo", "days": 0}}'
    with scripted_server([bad] * 5) as srv:
        model = LocalChatModel(model="m", base_url=srv.base_url, max_attempts=2)
        with pytest.raises(ModelNonRetryableError, match="all 2 attempts") as info:
            await model.chat([ChatMessage.user("Weather?")], tools=[WEATHER])
        await model.aclose()
    assert len(srv.requests) == 2
    assert isinstance(info.value, ToolCallFormatError) and "days" in info.value.feedback


async def test_final_answer_and_tool_result_round_trip() -> None:
    with scripted_server(['{"final": "Sunny in Paris."}']) as srv:
        model = LocalChatModel(model="m", base_url=srv.base_url, schema_style="json_object")
        conversation = [
            ChatMessage.user("Weather in Paris?"),
            ChatMessage.assistant(
                None, [ToolCall(id="call_1_0", name="get_weather", arguments='{"city": "Paris"}')]
            ),
            ChatMessage.tool("call_1_0", "sunny"),
        ]
        result = await model.chat(conversation, tools=[WEATHER])
        await model.aclose()
    assert result.message.content == "Sunny in Paris." and not result.message.tool_calls
    sent = srv.requests[0]
    assert sent["response_format"]["type"] == "json_object"
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]


async def test_native_mode_validates_native_tool_calls_too() -> None:
    native_bad = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    }
    native_ok = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "srv1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            }
        ],
    }
    with scripted_server([native_bad, native_ok]) as srv:
        model = LocalChatModel(model="m", base_url=srv.base_url, tool_mode="native")
        result = await model.chat([ChatMessage.user("Weather?")], tools=[WEATHER])
        await model.aclose()
    assert result.message.tool_calls[0].id == "srv1"
    assert srv.requests[0]["tools"][0]["function"]["name"] == "get_weather"
    assert "'city' is a required property" in srv.requests[1]["messages"][-1]["content"]


# -- default_chat_model ---------------------------------------------------------------------


def test_default_chat_model_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("FLINK_ACTORS_TOOL_MODE", raising=False)
    monkeypatch.setenv("FLINK_ACTORS_MODEL_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.delenv("FLINK_ACTORS_MODEL_NAME", raising=False)
    with pytest.raises(ConfigError, match="FLINK_ACTORS_MODEL_NAME"):
        default_chat_model()
    monkeypatch.setenv("FLINK_ACTORS_MODEL_NAME", "llama3.2")
    model = default_chat_model()
    assert (model.model, model.base_url) == ("llama3.2", "http://127.0.0.1:11434/v1")
    assert isinstance(model.tool_strategy, JsonToolStrategy)
    monkeypatch.setenv("FLINK_ACTORS_TOOL_MODE", "native")
    assert isinstance(default_chat_model().tool_strategy, NativeToolStrategy)
    monkeypatch.delenv("FLINK_ACTORS_MODEL_URL")
    monkeypatch.delenv("FLINK_ACTORS_MODEL_NAME")
    monkeypatch.delenv("FLINK_ACTORS_TOOL_MODE")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    hosted = default_chat_model()
    assert hosted.model == "gpt-4o-mini" and isinstance(hosted.tool_strategy, NativeToolStrategy)


def test_default_chat_model_finds_the_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("FLINK_ACTORS_MODEL_URL", "OPENAI_BASE_URL", "FLINK_ACTORS_TOOL_MODE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="flink-actors up --model"):
        default_chat_model(state_dir=tmp_path)
    info = tmp_path / LOCAL_MODEL_INFO_FILE
    info.parent.mkdir(parents=True)
    info.write_text(
        json.dumps(
            {
                "base_url": "http://127.0.0.1:8765/v1",
                "model": "smollm2-135m-instruct",
                "schema_style": "json_object",
            }
        )
    )
    model = default_chat_model(state_dir=tmp_path)
    assert model.base_url == "http://127.0.0.1:8765/v1"
    assert model.tool_strategy == JsonToolStrategy(
        "json_object", first_turn_tool=True, max_tool_rounds=1
    )
    monkeypatch.setenv("FLINK_ACTORS_STATE_DIR", str(tmp_path))
    assert default_chat_model().model == "smollm2-135m-instruct"
