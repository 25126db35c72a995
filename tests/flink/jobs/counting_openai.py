"""The scripted Chat Completions server in echo mode, with the size of each conversation.

Answers ``"echo: <last user message> [messages=<n>]"``, where n counts the request's non-system
messages: a test reads from an agent's outputs how much conversation state the agent kept.

Run: python -m tests.flink.jobs.counting_openai  (prints ``SCRIPTED_OPENAI_URL <base url>``)
"""

from __future__ import annotations

import threading
from typing import Any

from tests.servers.scripted_openai import ScriptedOpenAIServer

MARKER = "SCRIPTED_OPENAI_URL "


def counting_echo(body: dict[str, Any]) -> str:
    """Echo the last user message and the number of non-system messages in the request."""
    messages = [m for m in body.get("messages") or [] if m.get("role") != "system"]
    users = [m for m in messages if m.get("role") == "user"]
    last = str(users[-1].get("content") or "") if users else ""
    return f"echo: {last} [messages={len(messages)}]"


def main() -> None:
    server = ScriptedOpenAIServer(handler=counting_echo)
    server.record_requests = False
    server.start()
    print(f"{MARKER}{server.base_url}", flush=True)
    threading.Event().wait()  # until terminated


if __name__ == "__main__":
    main()
