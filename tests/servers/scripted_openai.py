"""A real HTTP server on 127.0.0.1 that speaks the Chat Completions API (and Ollama's /api/chat)
with scripted answers, for tests and load runs.

In-process (a uvicorn server on its own thread and event loop)::

    with ScriptedOpenAIServer() as server:
        server.push(Scripted.tool_call("get_weather", {"city": "Paris"}), Scripted.text("Sunny"))
        model = OpenAIChatModel(model="m", base_url=server.base_url)
        ...
        assert server.calls == 2

Answers come, in order of precedence, from: the queue (`push`), the `handler` function of the
request body (deterministic per request content), then the server's `mode`: ``"echo"`` answers
``"echo: <last user message>"``; ``"tool"`` calls the first offered tool (arguments filled from
its schema) and, once a tool result is in the conversation, answers ``"done: <result>"``.
`Scripted` answers can be 429 with Retry-After, 500, 400, malformed, or slow.

As a separate process (for Flink / Ray tests)::

    python -m tests.servers.scripted_openai --port 0 --latency-ms 50 --mode echo

prints ``SCRIPTED_OPENAI_URL http://127.0.0.1:PORT/v1`` once it listens. ``GET /stats`` returns
``{"calls": n, "by_hash": {...}, "by_status": {...}}``; ``POST /reset`` clears it.
The same server answers Ollama's ``POST /api/chat`` (see `ScriptedOllamaServer`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "RecordedRequest",
    "Scripted",
    "ScriptedOllamaServer",
    "ScriptedOpenAIServer",
    "content_hash",
    "main",
]

Mode = Literal["echo", "tool"]
Handler = Callable[[dict[str, Any]], "Scripted | dict[str, Any] | str | None"]


def content_hash(body: dict[str, Any]) -> str:
    """A short hash of what a request asks (model, messages, tools): equal requests, equal hash."""
    key = {k: body.get(k) for k in ("model", "messages", "tools")}
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Scripted:
    """One scripted answer: a message (text and/or tool calls) or an HTTP error.

    Build with the class methods: `text`, `tool_call`, `tool_calls`, `rate_limited`,
    `server_error`, `bad_request`, `malformed`, `slow`.
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error_message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    latency_s: float = 0.0
    usage: tuple[int, int] | None = None
    raw_body: Any = None  # sent as-is (JSON) instead of a built answer

    @classmethod
    def text(cls, content: str, *, usage: tuple[int, int] | None = None) -> Scripted:
        return cls(content=content, usage=usage)

    @classmethod
    def tool_call(
        cls, name: str, arguments: dict[str, Any] | str | None = None, *, call_id: str | None = None
    ) -> Scripted:
        return cls.tool_calls_of([(name, arguments or {}, call_id)])

    @classmethod
    def tool_calls_of(
        cls, calls: list[tuple[str, dict[str, Any] | str, str | None]], content: str | None = None
    ) -> Scripted:
        return cls(
            content=content,
            tool_calls=[
                {"name": name, "arguments": args, "id": call_id or f"call_{i}"}
                for i, (name, args, call_id) in enumerate(calls)
            ],
        )

    @classmethod
    def rate_limited(
        cls, retry_after_s: float | None = 1.0, message: str = "rate limited"
    ) -> Scripted:
        headers = {} if retry_after_s is None else {"Retry-After": f"{retry_after_s:g}"}
        return cls(status=429, error_message=message, headers=headers)

    @classmethod
    def server_error(cls, status: int = 500, message: str = "internal error") -> Scripted:
        return cls(status=status, error_message=message)

    @classmethod
    def bad_request(cls, message: str = "bad request", status: int = 400) -> Scripted:
        return cls(status=status, error_message=message)

    @classmethod
    def malformed(cls, body: Any = None) -> Scripted:
        return cls(raw_body={"unexpected": True} if body is None else body)

    @classmethod
    def slow(cls, seconds: float, content: str = "slow answer") -> Scripted:
        return cls(content=content, latency_s=seconds)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    hash: str
    at: float


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for v in value.values())
    return 0


def _fill_arguments(schema: dict[str, Any], seed: str) -> dict[str, Any]:
    """Arguments for a tool schema: required fields filled by type, strings with `seed`."""
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for name in schema.get("required") or list(props):
        kind = (props.get(name) or {}).get("type", "string")
        out[name] = {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(
            kind, seed
        )
    return out


def _last(messages: list[dict[str, Any]], role: str) -> dict[str, Any] | None:
    for message in reversed(messages):
        if message.get("role") == role:
            return message
    return None


class ScriptedOpenAIServer:
    """A scripted Chat Completions (and Ollama /api/chat) server on 127.0.0.1.

    Args:
        responses: Answers served first, in order.
        handler: A function of the request body returning the answer (a `Scripted`, a plain
            string, or a full response dict); None falls through to `mode`.
        mode: What to answer when the queue is empty and no handler answers.
        latency_s: Delay added to every answer.
        port: Port on 127.0.0.1; 0 picks a free one.
        fail_every: Every n-th call answers 500 (0: never); for failure-injection runs.
        rate_limit_every: Every n-th call answers 429 with ``Retry-After`` (0: never).
    """

    __test__ = False

    def __init__(
        self,
        responses: list[Scripted] | None = None,
        *,
        handler: Handler | None = None,
        mode: Mode = "echo",
        latency_s: float = 0.0,
        port: int = 0,
        fail_every: int = 0,
        rate_limit_every: int = 0,
        retry_after_s: float = 0.1,
    ) -> None:
        self.handler = handler
        self.mode: Mode = mode
        self.latency_s = latency_s
        self.fail_every = fail_every
        self.rate_limit_every = rate_limit_every
        self.retry_after_s = retry_after_s
        self._queue: deque[Scripted] = deque(responses or [])
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._by_hash: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._calls = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._uvicorn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.record_requests = True

    # -- scripting and inspection ----------------------------------------------------------

    def push(self, *responses: Scripted | str) -> None:
        """Queue answers (strings are text answers), served before handler and mode."""
        with self._lock:
            for r in responses:
                self._queue.append(Scripted.text(r) if isinstance(r, str) else r)

    @property
    def calls(self) -> int:
        """Chat requests received (both APIs), whatever their answer."""
        with self._lock:
            return self._calls

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests being answered at once so far."""
        with self._lock:
            return self._max_in_flight

    def calls_for(self, body_or_hash: dict[str, Any] | str) -> int:
        """How many requests had this content (a request body or its `content_hash`)."""
        key = body_or_hash if isinstance(body_or_hash, str) else content_hash(body_or_hash)
        with self._lock:
            return self._by_hash[key]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self._calls,
                "by_hash": dict(self._by_hash),
                "by_status": {str(k): v for k, v in self._by_status.items()},
                "max_in_flight": self._max_in_flight,
                "queued": len(self._queue),
            }

    def reset(self) -> None:
        """Forget calls, recorded requests and queued answers."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._by_hash.clear()
            self._by_status.clear()
            self._calls = 0
            self._max_in_flight = 0

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("server not started; call start() or use it as a context manager")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` (``http://127.0.0.1:PORT/v1``)."""
        return f"{self.url}/v1"

    @property
    def host(self) -> str:
        """The Ollama ``host`` (``http://127.0.0.1:PORT``)."""
        return self.url

    # -- answering -------------------------------------------------------------------------

    def _next_answer(self, body: dict[str, Any], call_number: int) -> Scripted | dict[str, Any]:
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
        if queued is not None:
            return queued
        if self.fail_every and call_number % self.fail_every == 0:
            return Scripted.server_error(message=f"injected failure on call {call_number}")
        if self.rate_limit_every and call_number % self.rate_limit_every == 0:
            return Scripted.rate_limited(self.retry_after_s)
        if self.handler is not None:
            answer = self.handler(body)
            if isinstance(answer, str):
                return Scripted.text(answer)
            if answer is not None:
                return answer
        return self._mode_answer(body)

    def _mode_answer(self, body: dict[str, Any]) -> Scripted:
        messages = body.get("messages") or []
        user = _last(messages, "user")
        user_text = str((user or {}).get("content") or "")
        if self.mode == "tool" and body.get("tools"):
            last = messages[-1] if messages else {}
            if last.get("role") == "tool":
                return Scripted.text(f"done: {last.get('content')}")
            tool = body["tools"][0]
            function = tool.get("function", tool)
            params = function.get("parameters") or {}
            return Scripted.tool_call(function["name"], _fill_arguments(params, user_text))
        return Scripted.text(f"echo: {user_text}")

    @staticmethod
    def _openai_body(answer: Scripted, body: dict[str, Any], call_number: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": call["arguments"]
                        if isinstance(call["arguments"], str)
                        else json.dumps(call["arguments"]),
                    },
                }
                for call in answer.tool_calls
            ]
        prompt, completion = answer.usage or (
            _words(body.get("messages")),
            max(1, _words(answer.content)) + len(answer.tool_calls),
        )
        return {
            "id": f"chatcmpl-{call_number}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    @staticmethod
    def _ollama_body(answer: Scripted, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content or ""}
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "function": {
                        "name": call["name"],
                        "arguments": json.loads(call["arguments"])
                        if isinstance(call["arguments"], str)
                        else call["arguments"],
                    }
                }
                for call in answer.tool_calls
            ]
        prompt, completion = answer.usage or (
            _words(body.get("messages")),
            max(1, _words(answer.content)) + len(answer.tool_calls),
        )
        return {
            "model": body.get("model", "scripted"),
            "created_at": "2024-01-01T00:00:00Z",
            "message": message,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt,
            "eval_count": completion,
        }

    async def _answer_chat(self, request: Any, api: Literal["openai", "ollama"]) -> Any:
        from starlette.responses import JSONResponse, Response

        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError:
            return JSONResponse({"error": {"message": "invalid JSON body"}}, status_code=400)
        digest = content_hash(body)
        with self._lock:
            self._calls += 1
            call_number = self._calls
            self._by_hash[digest] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if self.record_requests:
                self._requests.append(
                    RecordedRequest(
                        path=request.url.path,
                        body=body,
                        headers={k.lower(): v for k, v in request.headers.items()},
                        hash=digest,
                        at=time.time(),
                    )
                )
        try:
            answer = self._next_answer(body, call_number)
            latency = self.latency_s + (answer.latency_s if isinstance(answer, Scripted) else 0.0)
            if latency > 0:
                await asyncio.sleep(latency)
            if isinstance(answer, dict):
                status, payload, headers = 200, answer, {}
            elif answer.raw_body is not None:
                status, payload, headers = answer.status, answer.raw_body, answer.headers
            elif answer.status >= 400:
                status, headers = answer.status, answer.headers
                payload = (
                    {"error": answer.error_message}
                    if api == "ollama"
                    else {
                        "error": {
                            "message": answer.error_message,
                            "type": "scripted_error",
                            "code": str(answer.status),
                        }
                    }
                )
            else:
                status, headers = 200, answer.headers
                payload = (
                    self._ollama_body(answer, body)
                    if api == "ollama"
                    else self._openai_body(answer, body, call_number)
                )
            with self._lock:
                self._by_status[status] += 1
            if isinstance(payload, str | bytes):
                return Response(payload, status_code=status, headers=headers)
            return JSONResponse(payload, status_code=status, headers=headers)
        finally:
            with self._lock:
                self._in_flight -= 1

    def app(self) -> Any:
        """The Starlette application (also usable with any ASGI server)."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat_completions(request: Request) -> Any:
            return await self._answer_chat(request, "openai")

        async def ollama_chat(request: Request) -> Any:
            return await self._answer_chat(request, "ollama")

        async def models(request: Request) -> Any:
            return JSONResponse(
                {
                    "object": "list",
                    "data": [{"id": "scripted", "object": "model", "owned_by": "tests"}],
                }
            )

        async def stats(request: Request) -> Any:
            return JSONResponse(self.stats())

        async def reset(request: Request) -> Any:
            self.reset()
            return JSONResponse({"ok": True})

        return Starlette(
            routes=[
                Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                Route("/chat/completions", chat_completions, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"]),
                Route("/api/chat", ollama_chat, methods=["POST"]),
                Route("/stats", stats, methods=["GET"]),
                Route("/reset", reset, methods=["POST"]),
            ]
        )

    # -- lifecycle -------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(1024)
        sock.set_inheritable(False)
        return sock

    def _make_uvicorn(self) -> Any:
        import uvicorn

        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
        )
        return uvicorn.Server(config)

    def start(self, timeout_s: float = 30.0) -> ScriptedOpenAIServer:
        """Start serving on a background thread; returns once it accepts connections."""
        if self._thread is not None:
            return self
        self._sock = self._bind()
        self._uvicorn = self._make_uvicorn()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._uvicorn.serve(sockets=[self._sock]))
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                failure.append(exc)
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="scripted-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._uvicorn.started:
            if failure or not self._thread.is_alive():
                raise RuntimeError(f"scripted server failed to start: {failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"scripted server did not start within {timeout_s}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None:
            return
        self._uvicorn.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._uvicorn.force_exit = True
            self._thread.join(timeout_s)
        self._thread = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class ScriptedOllamaServer(ScriptedOpenAIServer):
    """The same scripted server, named for Ollama tests: use `.host` with `OllamaChatModel`."""

    __test__ = False


async def _serve_forever(server: ScriptedOpenAIServer) -> None:
    server._sock = server._bind()
    uv = server._make_uvicorn()

    async def announce() -> None:
        while not uv.started:
            await asyncio.sleep(0.01)
        print(f"SCRIPTED_OPENAI_URL {server.base_url}", flush=True)

    task = asyncio.create_task(announce())
    try:
        await uv.serve(sockets=[server._sock])
    finally:
        task.cancel()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve until interrupted (SIGINT/SIGTERM)."""
    parser = argparse.ArgumentParser(description="Scripted Chat Completions server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each answer")
    parser.add_argument("--mode", choices=["echo", "tool"], default="echo")
    parser.add_argument("--fail-every", type=int, default=0, help="every n-th call answers 500")
    parser.add_argument(
        "--rate-limit-every", type=int, default=0, help="every n-th call answers 429"
    )
    parser.add_argument("--retry-after-s", type=float, default=0.1)
    parser.add_argument(
        "--record", action="store_true", help="also keep every request body (short runs only)"
    )
    args = parser.parse_args(argv)
    server = ScriptedOpenAIServer(
        mode=args.mode,
        latency_s=args.latency_ms / 1000.0,
        port=args.port,
        fail_every=args.fail_every,
        rate_limit_every=args.rate_limit_every,
        retry_after_s=args.retry_after_s,
    )
    server.record_requests = args.record
    asyncio.run(_serve_forever(server))


if __name__ == "__main__":
    main()
