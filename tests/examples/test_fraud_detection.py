"""examples/fraud_detection.py: rules, enrichment and the analyst model, in-process and as a
real Flink job (Kafka in and out, lookups and model calls in the Ray pool, a scripted
OpenAI-compatible server as the model).

The sample scenario covers every outcome; the expected alerts are written out here, not
computed with the example's own code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors import ChatMessage, LocalRunner, ToolCall
from actors.testing import FunctionModel
from examples import fraud_detection as fd
from tests.servers.scripted_openai import Scripted, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]

# txn id -> (decided by, verdict, a phrase every reason list must contain)
EXPECTED_ALERTS = {
    "t02": ("rules", "fraud", "above the account's max 300.00"),
    "t07": ("model", "fraud", "velocity: 5 transactions within 600 s"),
    "t09": ("rules", "fraud", "country changed US -> BR"),
    "t12": ("model", "review", "abroad: ES (home GB)"),
    "t13": ("rules", "fraud", "unknown account 'acc-9'"),
}
BORDERLINE = {"t06", "t07", "t12"}  # the transactions the model is asked about


def _merchant(text: str) -> str:
    found = re.search(r"at merchant (\S+)", text)
    assert found, text
    return found.group(1)


def _verdict_for(tool_result: str) -> str:
    if "high" in tool_result:
        return f"FRAUD: {tool_result}"
    if "low" in tool_result:
        return f"LEGIT: {tool_result}"
    return "I am not sure about this one."


def analyst_answer(body: dict[str, Any]) -> Scripted:
    """The scripted analyst over HTTP (JSON tool protocol): merchant_risk first, then a
    verdict from the tool's result."""
    messages = body["messages"]
    assert "card fraud analyst" in messages[0]["content"]
    results = [m["content"] for m in messages if "Result of merchant_risk:" in str(m["content"])]
    if not results:
        merchant = _merchant(messages[1]["content"])
        return Scripted.text(
            json.dumps({"tool": "merchant_risk", "arguments": {"merchant": merchant}})
        )
    result = results[-1].split("Result of merchant_risk:", 1)[1].split("\n", 1)[0].strip()
    return Scripted.text(json.dumps({"final": _verdict_for(result)}))


def check_alerts(alerts: list[dict[str, Any]]) -> None:
    assert sorted(a["txn_id"] for a in alerts) == sorted(EXPECTED_ALERTS), alerts
    for alert in alerts:
        decided_by, verdict, phrase = EXPECTED_ALERTS[alert["txn_id"]]
        assert (alert["decided_by"], alert["verdict"]) == (decided_by, verdict), alert
        assert any(phrase in reason for reason in alert["reasons"]), alert
    by_id = {a["txn_id"]: a for a in alerts}
    assert by_id["t02"]["holder"] == "Ada" and by_id["t13"]["holder"] is None  # the SQL lookup
    assert "gift-card resellers" in by_id["t07"]["analyst_note"]  # the tool result, via the model
    assert by_id["t07"]["account_seen"] == 5 and by_id["t12"]["account_seen"] == 3  # the window
    assert by_id["t02"]["analyst_note"] is None and by_id["t09"]["score"] == 3


def test_rules_and_model_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workflow under LocalRunner: same alerts, the model asked only when borderline."""
    monkeypatch.setenv("FLINK_ACTORS_MODEL_URL", "http://127.0.0.1:9/v1")  # never called
    monkeypatch.setenv("FLINK_ACTORS_MODEL_NAME", "unused")
    asked: list[str] = []

    def model(messages: list[ChatMessage], tools: Any) -> Any:
        tool_results = [m.content for m in messages if m.role == "tool"]
        if not tool_results:
            asked.append(re.search(r"Transaction (\S+):", messages[-1].content).group(1))
            merchant = _merchant(messages[-1].content)
            args = json.dumps({"merchant": merchant})
            return ChatMessage.assistant(
                None, [ToolCall(id="c", name="merchant_risk", arguments=args)]
            )
        return _verdict_for(tool_results[-1])

    db = fd.create_profiles_db(tmp_path / "profiles.db")
    runner = LocalRunner(fd.FraudAnalyst(db).override(analyst=FunctionModel(model)))
    txns = fd.sample_transactions(len(fd.SCENARIO))
    outputs = runner.run_sync([(t["account"], t) for t in txns])
    check_alerts([a for per_key in outputs.values() for a in per_key])
    assert sorted(asked) == sorted(BORDERLINE)
    assert runner.errors == []


def test_sample_cycles_with_fresh_ids() -> None:
    txns = fd.sample_transactions(len(fd.SCENARIO) + 2)
    assert [t["txn_id"] for t in txns[-2:]] == ["t01-r1", "t02-r1"]
    assert txns[-1]["ts"] - txns[1]["ts"] == 2 * 86400
    assert fd.parse_verdict("legit, small purchase") == "legit"
    assert fd.parse_verdict("FRAUD or LEGIT? hard to say") == "review"


@pytest.mark.integration
def test_fraud_job_on_kafka_flink_ray(local_stack, tmp_path: Path) -> None:
    """One bounded Flink job: every transaction read once, alerts committed exactly once."""
    kafka = local_stack.kafka
    source, sink = "ex-fraud-txns", "ex-fraud-alerts"
    with ScriptedOpenAIServer(handler=analyst_answer) as server:
        env = {
            **os.environ,
            "FLINK_ACTORS_MODEL_URL": server.base_url,
            "FLINK_ACTORS_MODEL_NAME": "scripted",
        }
        cmd = [
            sys.executable,
            str(ROOT / "examples" / "fraud_detection.py"),
            "--bootstrap",
            kafka.bootstrap_servers,
            "--transactions",
            source,
            "--alerts",
            sink,
            "--profiles-db",
            str(tmp_path / "profiles.db"),
            "--produce",
            str(len(fd.SCENARIO)),
            "--group",
            "ex-fraud",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "FRAUD_DONE alerts=5" in proc.stdout, proc.stdout[-3000:]
        requests = server.requests

    records = kafka.consume(sink, 20, timeout=20, read_committed=True)
    check_alerts([json.loads(r.value) for r in records])
    # The model was asked about the borderline transactions only, twice each (tool, verdict):
    # completed calls are journaled, never made again.
    asked = [
        re.search(r"Transaction (\S+):", r.body["messages"][1]["content"]).group(1)
        for r in requests
    ]
    assert sorted(asked) == sorted([t for t in BORDERLINE for _ in range(2)]), asked
