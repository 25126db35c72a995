"""Model cassette: record a real (scripted HTTP) model's answers, replay them without it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from actors import InputEvent, OutputEvent, RunnerContext, State, Workflow, model, step
from actors.models.openai import OpenAIChatModel
from actors.simulation import AgentGroup, CassetteMiss, ModelCassette, Population, Simulation
from protocols.errors import UserError
from tests.servers.scripted_openai import ScriptedOpenAIServer


def _workflow(base_url: str, topic: str = "weather") -> Workflow:
    class Chatty(Workflow):
        @model
        @staticmethod
        def llm() -> OpenAIChatModel:
            return OpenAIChatModel(model="m", base_url=base_url, api_key="test")

        @step
        def ask(event: InputEvent, state: State, ctx: RunnerContext) -> None:
            for i in range(2):  # the same prompt twice: answers replay in order
                answer = ctx.chat("llm", [f"{topic} for {event.input}"]).content
                ctx.send_event(OutputEvent((i, answer)))

    return Chatty()


def _run(workflow: Workflow, cassette: ModelCassette) -> Any:
    group = AgentGroup(workflow=workflow, count=3, start=lambda key, rng: key)
    return Simulation(Population([group], seed=1), cassette=cassette).run_sync()


@pytest.mark.integration
def test_record_then_replay_without_the_model(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    counter = itertools.count()
    with ScriptedOpenAIServer(handler=lambda body: f"answer {next(counter)}") as server:
        recorded = _run(_workflow(server.base_url), ModelCassette(path, mode="record"))
        assert server.calls == 6
    assert len(path.read_text().splitlines()) == 6
    assert {o for _, _, o in recorded.outputs} == {(i % 2, f"answer {i}") for i in range(6)}

    # The server is gone: replay answers every call from the file, identically.
    replay = ModelCassette(path, mode="replay")
    replayed = _run(_workflow("http://127.0.0.1:9/v1"), replay)
    assert replayed == recorded and replay.hits == 6
    assert replayed.summary["output_tokens"] == recorded.summary["output_tokens"] > 0

    with pytest.raises(CassetteMiss, match="no answer for model 'llm'"):
        _run(_workflow("http://127.0.0.1:9/v1", topic="news"), ModelCassette(path))


def test_replay_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="record it first"):
        ModelCassette(tmp_path / "missing.jsonl")
