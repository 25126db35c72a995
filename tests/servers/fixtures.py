"""Pytest fixtures and helpers that start the test servers of this package.

Use them from any test module or conftest by importing them::

    from tests.servers.fixtures import scripted_openai, mcp_weather_stdio  # noqa: F401

Fixtures:
    scripted_openai: a started `ScriptedOpenAIServer` (function scope), stopped afterwards.
    scripted_ollama: the same for Ollama's API (`.host`).
    mcp_weather_stdio: an `MCPServerStdio` definition for `mcp_weather`, closed afterwards.
    mcp_weather_http_url: the URL of `mcp_weather` running over streamable HTTP in a
        subprocess (module scope), stopped afterwards.

Helpers for other processes (Flink / Ray tests):
    `scripted_openai_process(...)`: context manager running
        ``python -m tests.servers.scripted_openai`` and yielding its ``/v1`` base URL.
    `mcp_weather_http_process()`: context manager running the weather server over HTTP,
        yielding its URL.
    `mcp_weather_command()`: ``(command, args)`` to start the weather server over stdio.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.scripted_openai import ScriptedOllamaServer, ScriptedOpenAIServer

__all__ = [
    "REPO_ROOT",
    "mcp_weather_command",
    "mcp_weather_http_process",
    "mcp_weather_http_url",
    "mcp_weather_stdio",
    "read_stats",
    "scripted_ollama",
    "scripted_openai",
    "scripted_openai_process",
    "start_line_server",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def mcp_weather_command() -> tuple[str, list[str]]:
    """The command and arguments that start the weather MCP server over stdio."""
    return sys.executable, [str(REPO_ROOT / "tests" / "servers" / "mcp_weather.py")]


@contextlib.contextmanager
def start_line_server(
    args: list[str], marker: str, *, timeout_s: float = 120.0
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``python <args>`` from the repo root, wait for the stdout line starting with
    `marker`, yield (the rest of that line, the process); terminate it on exit."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(marker) and not found:
                found.append(line[len(marker) :].strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline_step = 0.05
        waited = 0.0
        while not found:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{args!r} exited with {proc.returncode} before printing {marker!r}"
                )
            if waited > timeout_s:
                raise RuntimeError(f"{args!r} printed no {marker!r} line within {timeout_s}s")
            threading.Event().wait(deadline_step)
            waited += deadline_step
        yield found[0], proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def scripted_openai_process(
    *,
    latency_ms: float = 0.0,
    mode: str = "echo",
    port: int = 0,
    fail_every: int = 0,
    rate_limit_every: int = 0,
    record: bool = False,
) -> Iterator[str]:
    """Run the scripted server in its own process; yield its base URL (``.../v1``)."""
    args = [
        "-m",
        "tests.servers.scripted_openai",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--mode",
        mode,
        "--fail-every",
        str(fail_every),
        "--rate-limit-every",
        str(rate_limit_every),
    ]
    if record:
        args.append("--record")
    with start_line_server(args, "SCRIPTED_OPENAI_URL ") as (url, _proc):
        yield url


def read_stats(base_url: str) -> dict[str, Any]:
    """``GET /stats`` of a scripted server, given its base URL (with or without ``/v1``)."""
    root = base_url.removesuffix("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as response:
        return dict(json.loads(response.read()))


@contextlib.contextmanager
def mcp_weather_http_process(port: int = 0) -> Iterator[str]:
    """Run the weather MCP server over streamable HTTP; yield its URL (``.../mcp``)."""
    script = str(REPO_ROOT / "tests" / "servers" / "mcp_weather.py")
    with start_line_server([script, "--transport", "http", "--port", str(port)], "MCP_URL ") as (
        url,
        _proc,
    ):
        yield url


@pytest.fixture
def scripted_openai() -> Iterator[ScriptedOpenAIServer]:
    """A started scripted Chat Completions server (echo mode, empty queue)."""
    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture
def scripted_ollama() -> Iterator[ScriptedOllamaServer]:
    """A started scripted Ollama server (echo mode, empty queue)."""
    with ScriptedOllamaServer() as server:
        yield server


@pytest.fixture
async def mcp_weather_stdio() -> Any:
    """An `MCPServerStdio` for the weather server; its process is stopped afterwards."""
    from actors.mcp import MCPServerStdio

    command, args = mcp_weather_command()
    server = MCPServerStdio(command, args, timeout_s=10.0, start_timeout_s=120.0)
    try:
        yield server
    finally:
        await server.aclose()


@pytest.fixture(scope="module")
def mcp_weather_http_url() -> Iterator[str]:
    """The URL of the weather MCP server over streamable HTTP (one process per module)."""
    with mcp_weather_http_process() as url:
        yield url
