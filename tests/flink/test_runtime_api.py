"""The public runtime API through real Flink, Ray and an OpenAI-compatible HTTP server.

One job (tests/flink/jobs/runtime_api_job.py, started with ``flink-actors run``) runs both
proposal examples: ``from_datastream(ds).apply(MyWorkflow()).to_datastream()`` and
``from_table(t).apply(AgentWorkflow(...)).to_table()``; this file checks every output.
The command line's failure messages are checked without Flink.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flink_bridge import jobs
from flink_bridge.cli import app
from flink_bridge.stack.config import StackConfig
from tests.flink.jobs import runtime_api_job as job
from tests.flink.jobs.cli_proc import run_cli
from tests.flink.jobs.counting_openai import MARKER
from tests.servers.fixtures import read_stats, start_line_server

ROOT = Path(__file__).resolve().parents[2]
JOB_FILE = ROOT / "tests" / "flink" / "jobs" / "runtime_api_job.py"


def _result_line(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.integration
@pytest.mark.parametrize("effects", ["in-process", "ray"])
def test_datastream_and_table_api_through_flink(request, effects: str) -> None:
    if effects == "ray":
        request.getfixturevalue("ray_head")
    with start_line_server(["-m", "tests.flink.jobs.counting_openai"], MARKER) as (url, _proc):
        proc = run_cli(
            ["run", str(JOB_FILE), "--model-url", url, "--effects", effects], timeout_s=360
        )
        assert proc.returncode == 0, proc.output[-4000:]
        calls = read_stats(url)["calls"]
    outputs = _result_line(proc.output)["outputs"]

    # DataStream: one answer per input; the k-th input of a key reaches the model with the
    # key's whole conversation so far (k inputs + k-1 answers): state.messages grew per key.
    stream = [o for o in outputs if o["via"] == "datastream"]
    inputs = job.stream_inputs()
    assert len(stream) == len(inputs), proc.output[-6000:]
    pattern = re.compile(r"^echo: (\w+)-(\d+) \[messages=(\d+)\]$")
    seen: dict[str, list[int]] = defaultdict(list)
    for out in stream:
        assert out["role"] == "assistant"
        found = pattern.match(out["content"])
        assert found, out
        key, index, size = found.group(1), int(found.group(2)), int(found.group(3))
        assert size == 2 * index + 1, out  # inputs 0..index and the index answers before it
        seen[key].append(index)
    assert {k: sorted(v) for k, v in seen.items()} == {
        k: list(range(job.PER_KEY)) for k in job.KEYS
    }

    # Table: one row per input row, in the ``output`` column, each the model's answer to it.
    table = [o for o in outputs if o["via"] == "table"]
    assert all(o["columns"] == ["output"] for o in table)
    answers = sorted(json.loads(o["output"]) for o in table)
    expected = sorted(
        f"echo: {json.dumps({'key': k, 'text': t})} [messages=1]" for k, t in job.table_rows()
    )
    assert answers == expected

    # Each input made exactly one model call (no retries, no replays on the happy path).
    assert calls == len(inputs) + len(job.table_rows())


# -- command-line failures: one line each, naming the fix ----------------------------------


def _free_config(tmp_path: Path) -> list[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return ["--state-dir", str(tmp_path / "state"), "--flink-rest-port", str(port)]


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    text = result.output.strip()
    assert text.startswith("error:"), text
    assert "Traceback" not in text
    return " ".join(text.split())  # rich may wrap the line


def test_run_missing_job_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.py")])
    message = _one_line_error(result)
    assert "nope.py" in message and "does not exist" in message


def test_run_remote_without_cluster(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(JOB_FILE), "--remote", *_free_config(tmp_path)])
    message = _one_line_error(result)
    assert "no Flink cluster is running" in message
    assert "flink-actors up --flink-cluster" in message


def test_run_from_missing_savepoint(tmp_path: Path) -> None:
    missing = tmp_path / "savepoint-123"
    result = CliRunner().invoke(app, ["run", str(JOB_FILE), "--from-savepoint", str(missing)])
    message = _one_line_error(result)
    assert "savepoint-123" in message and "does not exist" in message


def test_run_from_incomplete_savepoint(tmp_path: Path) -> None:
    (tmp_path / "savepoint-1").mkdir()
    result = CliRunner().invoke(
        app, ["run", str(JOB_FILE), "--from-savepoint", str(tmp_path / "savepoint-1")]
    )
    assert "no _metadata" in _one_line_error(result)


def test_stop_and_jobs_without_cluster(tmp_path: Path) -> None:
    for argv in (["stop", "0" * 32, "--savepoint"], ["jobs"]):
        result = CliRunner().invoke(app, [*argv, *_free_config(tmp_path)])
        assert "flink-actors up --flink-cluster" in _one_line_error(result)


def test_job_environment(tmp_path: Path) -> None:
    """The job gets the project root and its own folder on PYTHONPATH, the restore path, and
    the Ray env from the environment when it names a head."""
    config = StackConfig(state_dir=tmp_path)
    app_file = tmp_path / "app.py"
    app_file.write_text("print('hi')\n")
    environ = {"RAY_ADDRESS": "127.0.0.1:1234", "PYTHONPATH": "/somewhere"}
    env = jobs.job_environ(config, app_file, restore_from="file:///sp/1", environ=environ)
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert str(tmp_path) in paths and str(ROOT) in paths and paths[-1] == "/somewhere"
    assert env["RAY_ADDRESS"] == "127.0.0.1:1234"
    assert env[jobs.RESTORE_ENV] == "file:///sp/1"
    assert jobs.restore_settings(env) == {"execution.state-recovery.path": "file:///sp/1"}
    assert jobs.restore_settings({}) == {}
    cmd = jobs.remote_command(config, app_file, ["--x", "1"], restore_from="file:///sp/1")
    assert cmd[cmd.index("-s") + 1] == "file:///sp/1"
    assert cmd[cmd.index("-m") + 1] == config.flink_rest_address
    assert cmd[-3:] == [str(app_file), "--x", "1"]
    assert jobs.parse_job_id("Job has been submitted with JobID 0123456789abcdef0123456789abcdef")
