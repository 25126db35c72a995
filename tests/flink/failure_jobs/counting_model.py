"""The scripted Chat Completions server, with every call numbered and its times kept.

Why not the plain scripted server: a failure test must tell *which* call a committed output
used. Each answer here is ``"echo: <last user message> #call=<n>"``, where ``n`` is the
server's call number, and ``GET /calls`` lists every call as
``{"n": n, "text": <last user message>, "start": t0, "end": t1}`` (wall clock, seconds). A
test groups calls by their text: more than one call for the same text is a repeat, and the
``#call=`` numbers in the outputs say which call's answer was kept.

Run: python -m tests.flink.failure_jobs.counting_model --port 0 --latency-ms 20
(prints ``SCRIPTED_OPENAI_URL http://127.0.0.1:PORT/v1`` once it listens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from typing import Any

from tests.servers.scripted_openai import Scripted, ScriptedOpenAIServer, _serve_forever

__all__ = ["CountingModelServer", "main"]


class CountingModelServer(ScriptedOpenAIServer):
    """Echo answers tagged with the call number; `/calls` lists every call with its times."""

    __test__ = False

    def __init__(self, *, latency_s: float = 0.0, port: int = 0) -> None:
        super().__init__(mode="echo", latency_s=latency_s, port=port)
        self.record_requests = False
        self._calls_lock = threading.Lock()
        self._log: dict[int, dict[str, Any]] = {}

    def _next_answer(self, body: dict[str, Any], call_number: int) -> Scripted | dict[str, Any]:
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        text = str(users[-1].get("content") or "") if users else ""
        with self._calls_lock:
            self._log[call_number] = {"n": call_number, "text": text, "start": time.time()}
        return Scripted.text(f"echo: {text} #call={call_number}")

    async def _answer_chat(self, request: Any, api: Any) -> Any:
        response = await super()._answer_chat(request, api)
        try:
            number = int(json.loads(response.body)["id"].removeprefix("chatcmpl-"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return response
        with self._calls_lock:
            if number in self._log:
                self._log[number]["end"] = time.time()
        return response

    def call_log(self) -> list[dict[str, Any]]:
        with self._calls_lock:
            return [dict(v) for _, v in sorted(self._log.items())]

    def app(self) -> Any:
        from starlette.responses import JSONResponse

        app = super().app()

        async def calls(request: Any) -> Any:
            return JSONResponse(self.call_log())

        app.add_route("/calls", calls, methods=["GET"])
        return app


def main(argv: list[str] | None = None) -> None:
    """Serve until terminated."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    server = CountingModelServer(latency_s=args.latency_ms / 1000.0, port=args.port)
    asyncio.run(_serve_forever(server))


if __name__ == "__main__":
    main()
