"""MCP through the `mcp` SDK against a real server (tests/servers/mcp_weather.py), over stdio and
streamable HTTP: allow-listed tool listing, calls, prompts, tool errors, crash restart, timeouts.

Starting a Python MCP server takes seconds on a loaded machine, so each test covers several
behaviours on one process.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
import time

import pytest

from actors.mcp import MCPServer, MCPServerHTTP, MCPServerStdio
from actors.models import ToolSchema
from protocols.errors import ConfigError, ToolError
from tests.servers import fixtures
from tests.servers.fixtures import mcp_weather_command, mcp_weather_http_process

mcp_weather_stdio = fixtures.mcp_weather_stdio
mcp_weather_http_url = fixtures.mcp_weather_http_url


async def _check_listing_calls_and_prompts(server: MCPServer) -> None:
    tools = await server.list_tools(allow=["list_user_orders", "get_weather"])
    assert [t.name for t in tools] == ["list_user_orders", "get_weather"]
    assert all(isinstance(t, ToolSchema) for t in tools)
    weather = tools[1]
    assert weather.description.startswith("Get the current weather for a city.\n\nArgs:\n")
    assert weather.parameters["properties"]["city"]["type"] == "string"
    assert weather.parameters["required"] == ["city"]

    everything = {t.name for t in await server.list_tools()}
    assert {"get_weather", "list_user_orders", "fail", "hang", "crash"} <= everything

    with pytest.raises(ToolError, match=r"does not offer tool\(s\) \['nope'\]"):
        await server.list_tools(allow=["get_weather", "nope"])

    assert await server.call_tool("get_weather", {"city": "Paris"}) == "Paris: Sunny, 21 C"
    orders = await server.call_tool("list_user_orders", {"user_id": 2})
    assert orders == [
        {"order_id": "B-200", "item": "sunglasses", "qty": 2},
        {"order_id": "B-201", "item": "hat", "qty": 1},
    ]
    assert await server.call_tool("list_user_orders", {"user_id": 99}) == []

    assert await server.list_prompts() == ["weather_assistant"]
    prompt = await server.get_prompt("weather_assistant", {"style": "detailed"})
    assert prompt.startswith("You are a weather assistant. Answer in a detailed style.")

    with pytest.raises(ToolError, match=r"MCP tool 'fail' .* failed: .*disk on fire"):
        await server.call_tool("fail", {"message": "disk on fire"})
    with pytest.raises(ToolError, match=r"(?s)'get_weather'.*city"):
        await server.call_tool("get_weather", {})
    with pytest.raises(ToolError, match="Unknown tool"):
        await server.call_tool("no_such_tool", {})
    with pytest.raises(ToolError, match="weather_assistan"):
        await server.get_prompt("no_such_prompt")
    # Errors do not poison the session.
    assert await server.call_tool("get_weather", {"city": "London"}) == "London: Rain, 14 C"

    # One session serves many concurrent callers (one task per agent key in the runtime).
    cities = [f"City{i}" for i in range(25)]
    answers = await asyncio.gather(*(server.call_tool("get_weather", {"city": c}) for c in cities))
    assert answers == [f"{c}: Clear, 20 C" for c in cities]


async def _check_hang_times_out(server: MCPServer) -> None:
    await server.list_prompts()  # started and connected: time only the hung call
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        await server.call_tool("hang", {"seconds": 60})
    assert time.monotonic() - started < server.timeout_s + 10  # far below the 60 s hang
    assert await server.call_tool("get_weather", {"city": "Tokyo"}) == "Tokyo: Cloudy, 18 C"


@pytest.mark.integration
async def test_stdio_tools_prompts_and_errors(mcp_weather_stdio: MCPServerStdio) -> None:
    await _check_listing_calls_and_prompts(mcp_weather_stdio)


@pytest.mark.integration
async def test_stdio_hang_times_out_and_crash_restarts() -> None:
    command, args = mcp_weather_command()
    server = MCPServerStdio(command, args, timeout_s=5.0, start_timeout_s=120.0)
    try:
        await _check_hang_times_out(server)

        pid = await server.call_tool("server_pid", {})
        assert isinstance(pid, int) and pid != os.getpid()
        assert await server.call_tool("calls_served", {}) >= 2

        # A call that kills the server fails; the next call starts a fresh process.
        with pytest.raises(ToolError, match="connection was lost"):
            await server.call_tool("crash", {"code": 3})
        new_pid = await server.call_tool("server_pid", {})
        assert new_pid != pid
        assert await server.call_tool("calls_served", {}) == 0
        assert server.restarts == 1

        # A server killed between calls is noticed and restarted before the next call.
        os.kill(new_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server._session is not None and server._session.alive:
            assert time.monotonic() < deadline, "EOF of the killed server was not noticed"
            await asyncio.sleep(0.05)
        assert await server.call_tool("get_weather", {"city": "Paris"}) == "Paris: Sunny, 21 C"
        assert server.restarts == 2
    finally:
        await server.aclose()


@pytest.mark.integration
async def test_stdio_bad_command_is_a_tool_error() -> None:
    server = MCPServerStdio(sys.executable, ["-c", "import sys; sys.exit(2)"], start_timeout_s=60)
    with pytest.raises(ToolError, match="cannot connect to MCP server"):
        await server.list_tools()
    missing = MCPServerStdio("/nonexistent/mcp-server-binary")
    with pytest.raises(ToolError, match="cannot connect"):
        await missing.list_tools()
    await server.aclose()


@pytest.mark.integration
async def test_http_tools_prompts_errors_and_timeout(mcp_weather_http_url: str) -> None:
    assert mcp_weather_http_url.startswith("http://127.0.0.1:")
    server = MCPServerHTTP(mcp_weather_http_url, headers={"X-Test": "1"}, timeout_s=5.0)
    try:
        await _check_listing_calls_and_prompts(server)
        await _check_hang_times_out(server)
    finally:
        await server.aclose()


@pytest.mark.integration
async def test_http_server_restart_reconnects() -> None:
    with mcp_weather_http_process() as url:
        server = MCPServerHTTP(url, timeout_s=5.0)
        first_pid = await server.call_tool("server_pid", {})
    # The server is gone: the call fails, quickly and typed.
    with pytest.raises(ToolError):
        await server.call_tool("get_weather", {"city": "Paris"})
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with mcp_weather_http_process(port=port) as url2:
        assert url2 == url
        assert await server.call_tool("get_weather", {"city": "Paris"}) == "Paris: Sunny, 21 C"
        assert await server.call_tool("server_pid", {}) != first_pid
        await server.aclose()


@pytest.mark.integration
async def test_definitions_pickle_without_sessions(mcp_weather_stdio: MCPServerStdio) -> None:
    assert (await mcp_weather_stdio.call_tool("get_weather", {"city": "Oslo"})).startswith("Oslo")
    clone = pickle.loads(pickle.dumps(mcp_weather_stdio))
    assert clone._session is None and clone.command == mcp_weather_stdio.command
    try:
        assert await clone.call_tool("get_weather", {"city": "Rome"}) == "Rome: Clear, 20 C"
    finally:
        await clone.aclose()


def test_reprs_hide_secret_values() -> None:
    http = MCPServerHTTP("http://127.0.0.1:1/mcp", headers={"Authorization": "Bearer s3cr3t"})
    stdio = MCPServerStdio("server", ["--x"], env={"API_TOKEN": "t0ken"})
    assert "s3cr3t" not in repr(http) and "Authorization" in repr(http)
    assert "t0ken" not in repr(stdio) and "API_TOKEN" in repr(stdio)
    with pytest.raises(ConfigError, match="'url'"):
        MCPServerHTTP("127.0.0.1:8000/mcp")
    with pytest.raises(ConfigError, match="'timeout_s'"):
        MCPServerStdio("x", timeout_s=0)
