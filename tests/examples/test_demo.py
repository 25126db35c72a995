"""`flink-actors demo` (the README's `make demo`): the default app end to end on the session's
stack, with the scripted OpenAI-compatible server as the model."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from flink_bridge.demo import run_app_demo
from tests.examples.test_fraud_detection import EXPECTED_ALERTS, analyst_answer
from tests.servers.scripted_openai import ScriptedOpenAIServer


@pytest.mark.integration
def test_fraud_demo_prints_each_alert_as_it_commits(local_stack, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    console = Console(record=True, width=240, force_terminal=False)
    with ScriptedOpenAIServer(handler=analyst_answer) as server:
        monkeypatch.setenv("FLINK_ACTORS_MODEL_URL", server.base_url)
        monkeypatch.setenv("FLINK_ACTORS_MODEL_NAME", "scripted")
        shown = run_app_demo("fraud", local_stack.config, console=console, timeout_s=420)
    text = console.export_text()
    assert shown == len(EXPECTED_ALERTS), text[-3000:]
    alert_lines = [line for line in text.splitlines() if " ALERT " in line]
    assert len(alert_lines) == len(EXPECTED_ALERTS), text[-3000:]
    assert re.search(rf"{len(EXPECTED_ALERTS)} alerts for \d+ transactions", text)
    assert "failed with exit code" not in text
    # The job's own output went to a log file in the stack's state dir, not to a pipe.
    logs = list((local_stack.config.state_dir / "logs").glob("demo-fraud-*.log"))
    assert logs and logs[0].stat().st_size > 0
