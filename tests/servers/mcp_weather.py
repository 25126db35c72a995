"""A real MCP server (the `mcp` SDK's MCPServer, formerly FastMCP) for tests and examples.

Tools: ``get_weather(city)``, ``list_user_orders(user_id)``, ``fail(message)`` (always raises),
``hang(seconds)`` (sleeps, for timeout tests), ``crash(code)`` (kills the process, for restart
tests), ``server_pid()`` and ``calls_served()`` (to tell a restarted process from the old one).
Prompt: ``weather_assistant(style)``, usable as a remote system prompt.

Run it::

    python -m tests.servers.mcp_weather                                  # stdio
    python -m tests.servers.mcp_weather --transport http --port 0        # streamable HTTP

Over HTTP it binds 127.0.0.1 only and prints ``MCP_URL http://127.0.0.1:PORT/mcp`` on stdout once
it listens (``--port 0`` picks a free port), so a parent process can read the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["build_server", "main"]

WEATHER = {
    "paris": "Sunny, 21 C",
    "london": "Rain, 14 C",
    "tokyo": "Cloudy, 18 C",
}

ORDERS: dict[int, list[dict[str, Any]]] = {
    1: [{"order_id": "A-100", "item": "umbrella", "qty": 1}],
    2: [
        {"order_id": "B-200", "item": "sunglasses", "qty": 2},
        {"order_id": "B-201", "item": "hat", "qty": 1},
    ],
}


def build_server() -> MCPServer:
    """The weather server with its tools and prompt."""
    server = MCPServer(
        "weather", instructions="Weather and order lookups for tests.", log_level="WARNING"
    )
    served = {"calls": 0}

    @server.tool()
    def get_weather(city: str) -> str:
        """Get the current weather for a city.

        Args:
            city: City name, e.g. "Paris".
        """
        served["calls"] += 1
        return f"{city}: {WEATHER.get(city.lower(), 'Clear, 20 C')}"

    @server.tool()
    def list_user_orders(user_id: int) -> list[dict[str, Any]]:
        """List the orders of a user.

        Args:
            user_id: The user's numeric id.
        """
        served["calls"] += 1
        return ORDERS.get(user_id, [])

    @server.tool()
    def fail(message: str = "boom") -> str:
        """Always raise, to test tool errors.

        Args:
            message: The error message to raise with.
        """
        served["calls"] += 1
        raise ToolError(message)

    @server.tool()
    async def hang(seconds: float = 3600.0) -> str:
        """Sleep, to test call timeouts.

        Args:
            seconds: How long to sleep.
        """
        served["calls"] += 1
        await asyncio.sleep(seconds)
        return "woke up"

    @server.tool()
    def crash(code: int = 3) -> str:
        """Kill this server process at once, to test restarts.

        Args:
            code: The exit code.
        """
        sys.stdout.flush()
        os._exit(code)

    @server.tool()
    def server_pid() -> int:
        """The process id of this server."""
        return os.getpid()

    @server.tool()
    def calls_served() -> int:
        """How many tool calls this process has served (0 after a restart)."""
        return served["calls"]

    @server.prompt()
    def weather_assistant(style: str = "brief") -> str:
        """System prompt for a weather assistant.

        Args:
            style: "brief" or "detailed".
        """
        return (
            f"You are a weather assistant. Answer in a {style} style. "
            "Use get_weather for current conditions and list_user_orders for orders."
        )

    return server


async def _serve_http(server: MCPServer, port: int) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.set_inheritable(False)
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def announce() -> None:
        while not uv.started:
            await asyncio.sleep(0.01)
        print(f"MCP_URL http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)

    announcer = asyncio.create_task(announce())
    try:
        await uv.serve(sockets=[sock])
    finally:
        announcer.cancel()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: any)")
    args = parser.parse_args(argv)
    server = build_server()
    if args.transport == "stdio":
        server.run("stdio")
    else:
        asyncio.run(_serve_http(server, args.port))


if __name__ == "__main__":
    main()
