"""MCP servers as picklable definitions: list and call their tools, list and get their prompts.

`MCPServerStdio` launches a command and speaks MCP over its stdin/stdout; `MCPServerHTTP` talks
streamable HTTP to a URL. Both wrap the `mcp` SDK's `Client`. A definition holds only its
configuration: the session opens on the first call, in the process and event loop that make it,
and is dropped when the definition is pickled (to a Ray worker, into a workflow spec).

Why a background task owns each session: the SDK's sessions live in anyio task groups, which
must be exited by the task that entered them. Calls come from many tasks (one per agent key),
so one long-lived task enters the session, parks until `aclose`, and exits it; callers only
send requests through it.

Failure handling, so one bad server cannot wedge an agent:

- Every request has a deadline (`timeout_s`); a hung call raises `ToolError` saying it
  timed out, and the session stays usable.
- A stdio server that dies is noticed (its stdout reaches end of file) and is started again on
  the next call. A call in flight when it died fails with `ToolError`; listing calls, which
  have no side effects, are retried once on the fresh process.
- A tool that reports an error (``isError``) or a protocol error becomes a `ToolError` with
  the server's message.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from actors.models.base import ToolSchema
from protocols.errors import ConfigError, ToolError

__all__ = ["MCPServer", "MCPServerHTTP", "MCPServerStdio"]

logger = logging.getLogger("flink_actors.actors")

T = TypeVar("T")

# JSON-RPC / MCP error codes (mcp_types constants, repeated so importing this module stays cheap).
_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = -32001
_METHOD_NOT_FOUND = -32601
_INVALID_PARAMS = -32602


class _EofFlag:
    """Set when the server's message stream ends: the session cannot be used any more."""

    def __init__(self) -> None:
        self.closed = False


class _WatchedReadStream:
    """A read stream that flags `_EofFlag` when it ends; forwards everything else."""

    def __init__(self, inner: Any, flag: _EofFlag) -> None:
        self._inner = inner
        self._flag = flag

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except BaseException:
            self._flag.closed = True
            raise

    async def aclose(self) -> None:
        self._flag.closed = True
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except BaseException:
            self._flag.closed = True
            raise

    async def __aenter__(self) -> _WatchedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._flag.closed = True
        result: bool | None = await self._inner.__aexit__(*exc_info)
        return result

    def __getattr__(self, name: str) -> Any:  # e.g. `last_context`, read by the dispatcher
        return getattr(self._inner, name)


class _WatchedTransport:
    """An `mcp.client.Transport` around another one, watching its read stream for the end."""

    def __init__(self, inner: contextlib.AbstractAsyncContextManager[Any], flag: _EofFlag) -> None:
        self._inner = inner
        self._flag = flag

    async def __aenter__(self) -> tuple[Any, Any]:
        read_stream, write_stream = await self._inner.__aenter__()
        return _WatchedReadStream(read_stream, self._flag), write_stream

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._flag.closed = True
        result: bool | None = await self._inner.__aexit__(*exc_info)
        return result


@dataclass
class _Session:
    """One open MCP session and the task that owns it."""

    loop: asyncio.AbstractEventLoop
    client: Any
    task: asyncio.Task[None]
    stop: asyncio.Event
    flag: _EofFlag

    @property
    def alive(self) -> bool:
        return not self.task.done() and not self.flag.closed


class MCPServer(abc.ABC):
    """An MCP server definition. Subclasses say how to reach it; this class runs the session.

    Args:
        timeout_s: Deadline for each request, in seconds.
        start_timeout_s: Deadline for starting the server and opening the session.
    """

    transport_name = "abstract"

    def __init__(self, *, timeout_s: float = 30.0, start_timeout_s: float = 60.0) -> None:
        if timeout_s <= 0:
            raise ConfigError("timeout_s", f"must be positive, got {timeout_s!r}", "pass e.g. 30.0")
        if start_timeout_s <= 0:
            raise ConfigError(
                "start_timeout_s", f"must be positive, got {start_timeout_s!r}", "pass e.g. 60.0"
            )
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self._session: _Session | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.restarts = 0
        self._wrapped_tools: set[str] | None = None

    # -- definition as a value -------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None
        state["_lock"] = None
        state["_lock_loop"] = None
        state["restarts"] = 0
        state["_wrapped_tools"] = None
        return state

    @abc.abstractmethod
    def _open_transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A fresh `mcp.client.Transport` (an async context manager yielding the streams)."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A short, secret-free description for error messages."""

    # -- session lifecycle -----------------------------------------------------------------

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    async def _connect(self) -> _Session:
        """Return an open session, starting (or restarting) the server when needed."""
        loop = asyncio.get_running_loop()
        async with self._loop_lock():
            session = self._session
            if session is not None and session.loop is loop and session.alive:
                return session
            if session is not None:
                if session.loop is loop:
                    await self._close_session(session)
                    self.restarts += 1
                    logger.info("restarting MCP server %s", self.label)
                self._session = None
            session = await self._open_session(loop)
            self._session = session
            return session

    async def _open_session(self, loop: asyncio.AbstractEventLoop) -> _Session:
        from mcp.client import Client

        flag = _EofFlag()
        stop = asyncio.Event()
        ready: asyncio.Future[Any] = loop.create_future()

        async def own() -> None:
            try:
                transport = _WatchedTransport(self._open_transport(), flag)
                async with Client(
                    transport, read_timeout_seconds=self.timeout_s, cache=None
                ) as client:
                    if not ready.done():
                        ready.set_result(client)
                    await stop.wait()
            except asyncio.CancelledError:
                if not ready.done():
                    ready.cancel()
                raise
            except BaseException as exc:  # noqa: BLE001 - reported to the waiting caller
                if not ready.done():
                    ready.set_exception(exc)
                else:
                    logger.debug("MCP session %s ended with %r", self.label, exc)
            finally:
                flag.closed = True

        task = loop.create_task(own(), name=f"mcp-session {self.label}")
        try:
            client = await asyncio.wait_for(asyncio.shield(ready), self.start_timeout_s)
        except TimeoutError as exc:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ToolError(
                f"MCP server {self.label} did not finish starting within "
                f"{self.start_timeout_s}s (timed out); check the command or URL, or raise "
                "start_timeout_s"
            ) from exc
        except asyncio.CancelledError:
            task.cancel()
            raise
        except BaseException as exc:
            await asyncio.gather(task, return_exceptions=True)
            raise ToolError(
                f"cannot connect to MCP server {self.label}: {_describe(exc)}; "
                "check that the server starts and speaks MCP"
            ) from exc
        return _Session(loop=loop, client=client, task=task, stop=stop, flag=flag)

    async def _close_session(self, session: _Session) -> None:
        session.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(session.task), 5.0)
        except (TimeoutError, Exception):  # noqa: BLE001 - closing must not fail the caller
            session.task.cancel()
            await asyncio.gather(session.task, return_exceptions=True)

    async def aclose(self) -> None:
        """Close the session (and stop a stdio server). The definition stays usable."""
        session = self._session
        self._session = None
        if session is None:
            return
        try:
            same_loop = session.loop is asyncio.get_running_loop()
        except RuntimeError:
            same_loop = False
        if same_loop:
            await self._close_session(session)

    # -- requests --------------------------------------------------------------------------

    async def _request(
        self, what: str, send: Callable[[Any], Awaitable[T]], *, retry_on_closed: bool
    ) -> tuple[T, _Session]:
        """Send one request on a live session, mapping every failure to `ToolError`."""
        from mcp.shared.exceptions import MCPError

        attempts = 2 if retry_on_closed else 1
        for attempt in range(attempts):
            session = await self._connect()
            try:
                # The SDK enforces the per-request read timeout; this also bounds the write.
                result = await asyncio.wait_for(send(session.client), self.timeout_s + 1.0)
                return result, session
            except MCPError as exc:
                if exc.code == _REQUEST_TIMEOUT:
                    raise ToolError(
                        f"MCP {what} on {self.label} timed out after {self.timeout_s}s; "
                        "raise timeout_s or check the server"
                    ) from exc
                if self._breaks_session(exc.code):
                    session.flag.closed = True
                    if exc.code == _CONNECTION_CLOSED and attempt + 1 < attempts:
                        continue
                    raise ToolError(
                        f"MCP {what} on {self.label} failed: the connection was lost "
                        f"({exc.message}); the server is restarted on the next call"
                    ) from exc
                raise ToolError(
                    f"MCP {what} on {self.label} failed with error {exc.code}: {exc.message}"
                ) from exc
            except TimeoutError as exc:
                raise ToolError(
                    f"MCP {what} on {self.label} timed out after {self.timeout_s}s; "
                    "raise timeout_s or check the server"
                ) from exc
            except ToolError:
                raise
            except Exception as exc:
                session.flag.closed = True
                raise ToolError(
                    f"MCP {what} on {self.label} failed: {_describe(exc)}; "
                    "the connection is reopened on the next call"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _breaks_session(self, code: int) -> bool:
        """Whether an error with this code means the session is gone."""
        return code == _CONNECTION_CLOSED

    async def list_tools(self, allow: list[str] | None = None) -> list[ToolSchema]:
        """The server's tools as `ToolSchema`s, keeping only the names in `allow` when given.

        Raises:
            ToolError: The server cannot be reached, or a name in `allow` is not offered.
        """
        tools: list[Any] = []

        async def send(client: Any) -> list[Any]:
            cursor: str | None = None
            found: list[Any] = []
            for _ in range(100):  # bounded: a server that pages forever cannot hang us
                page = await client.list_tools(cursor=cursor)
                found.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            return found

        tools, _ = await self._request("list_tools", send, retry_on_closed=True)
        self._wrapped_tools = {t.name for t in tools if _is_wrapped_output(t.output_schema)}
        by_name = {t.name: t for t in tools}
        if allow is not None:
            missing = [name for name in allow if name not in by_name]
            if missing:
                raise ToolError(
                    f"MCP server {self.label} does not offer tool(s) {missing!r}; "
                    f"it offers {sorted(by_name)!r}: fix the allow-list"
                )
            selected = [by_name[name] for name in allow]
        else:
            selected = tools
        return [
            ToolSchema(
                name=t.name,
                description=inspect.cleandoc(t.description or ""),
                parameters=dict(t.input_schema or {"type": "object", "properties": {}}),
            )
            for t in selected
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call a tool; return its structured content when given, else its text joined.

        Raises:
            ToolError: The tool reported an error, the call timed out, or the server failed.
        """

        async def send(client: Any) -> Any:
            return await client.call_tool(name, dict(arguments or {}))

        result, _ = await self._request(f"call of tool {name!r}", send, retry_on_closed=False)
        if result.is_error:
            raise ToolError(
                f"MCP tool {name!r} on {self.label} failed: {_content_text(result.content)}"
            )
        structured = result.structured_content
        if structured is None:
            return _content_text(result.content)
        if isinstance(structured, dict) and set(structured) == {"result"}:
            # The SDK wraps primitive results as {"result": value}; its output schema says so.
            if self._wrapped_tools is None:
                with contextlib.suppress(ToolError):
                    await self.list_tools()
            if name in (self._wrapped_tools or set()):
                return structured["result"]
        return structured

    async def list_prompts(self) -> list[str]:
        """The names of the server's prompts."""

        async def send(client: Any) -> list[str]:
            cursor: str | None = None
            names: list[str] = []
            for _ in range(100):
                page = await client.list_prompts(cursor=cursor)
                names.extend(p.name for p in page.prompts)
                cursor = page.next_cursor
                if not cursor:
                    break
            return names

        names, _ = await self._request("list_prompts", send, retry_on_closed=True)
        return names

    async def get_prompt(self, name: str, arguments: dict[str, str] | None = None) -> str:
        """A prompt's text (its messages' text joined by blank lines), e.g. for a system prompt.

        Raises:
            ToolError: Unknown prompt, bad arguments, or the server failed.
        """

        async def send(client: Any) -> Any:
            return await client.get_prompt(
                name, {k: str(v) for k, v in (arguments or {}).items()} or None
            )

        try:
            result, _ = await self._request(f"get_prompt {name!r}", send, retry_on_closed=True)
        except ToolError as exc:
            # Servers often answer an unknown name with a bare internal error: say what exists.
            try:
                offered = await self.list_prompts()
            except ToolError:
                raise exc from None
            if name not in offered:
                raise ToolError(
                    f"MCP server {self.label} has no prompt {name!r}; it offers {sorted(offered)!r}"
                ) from exc
            raise
        return "\n\n".join(_content_text([m.content]) for m in result.messages)

    async def __aenter__(self) -> MCPServer:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


class MCPServerStdio(MCPServer):
    """An MCP server started as a subprocess, spoken to over its stdin/stdout.

    Args:
        command: The executable, e.g. ``"python"`` or ``"npx"``.
        args: Its arguments.
        env: Extra environment variables (merged over a minimal safe environment).
        cwd: Working directory of the process.
        timeout_s: Deadline for each request.
        start_timeout_s: Deadline for starting the process and opening the session.
    """

    transport_name = "stdio"

    def __init__(
        self,
        command: str,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        *,
        cwd: str | None = None,
        timeout_s: float = 30.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s, start_timeout_s=start_timeout_s)
        if not command:
            raise ConfigError("command", "is empty", "pass the executable that starts the server")
        self.command = command
        self.args = list(args or [])
        self.env = dict(env) if env is not None else None
        self.cwd = cwd

    @property
    def label(self) -> str:
        # Base names only: paths are long, and later arguments may carry tokens.
        shown = " ".join(os.path.basename(p) for p in [self.command, *self.args[:1]])
        return f"stdio:{shown!r}"

    def _open_transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=self.command, args=self.args, env=self.env, cwd=self.cwd
        )
        return stdio_client(params, errlog=_errlog())

    def _breaks_session(self, code: int) -> bool:
        return code == _CONNECTION_CLOSED

    def __repr__(self) -> str:
        # env values may hold secrets: show the names only
        env = f", env={sorted(self.env)!r}" if self.env else ""
        return f"MCPServerStdio(command={self.command!r}, args={self.args!r}{env})"


class MCPServerHTTP(MCPServer):
    """An MCP server reached over streamable HTTP.

    Args:
        url: The endpoint, e.g. ``"http://127.0.0.1:8000/mcp"``.
        headers: HTTP headers sent with every request (e.g. ``Authorization``). They travel
            with the definition when it is pickled; their values never appear in its repr.
        timeout_s: Deadline for each request.
        start_timeout_s: Deadline for opening the session.
    """

    transport_name = "streamable-http"

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        timeout_s: float = 30.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s, start_timeout_s=start_timeout_s)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                "url", f"{url!r} is not an http(s) URL", "pass e.g. 'http://127.0.0.1:8000/mcp'"
            )
        self.url = url
        self.headers = dict(headers or {})

    @property
    def label(self) -> str:
        return f"http:{self.url!r}"

    def _open_transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return _http_transport(self.url, self.headers, self.timeout_s)

    def _breaks_session(self, code: int) -> bool:
        # A reconnect is one HTTP handshake: start over on anything but a caller mistake.
        return code not in (_METHOD_NOT_FOUND, _INVALID_PARAMS, _REQUEST_TIMEOUT)

    def __repr__(self) -> str:
        headers = f", headers={sorted(self.headers)!r}" if self.headers else ""
        return f"MCPServerHTTP(url={self.url!r}{headers})"


@contextlib.asynccontextmanager
async def _http_transport(
    url: str, headers: dict[str, str], timeout_s: float
) -> AsyncIterator[Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    timeout = httpx2.Timeout(timeout_s, read=max(300.0, timeout_s))
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def _errlog() -> TextIO:
    """Where a stdio server's stderr goes: ours when it is a real file, else /dev/null.

    Inside PyFlink's thread mode `sys.stderr` has no file descriptor, which a subprocess needs.
    """
    global _devnull
    try:
        sys.stderr.fileno()
        return sys.stderr
    except (AttributeError, OSError, ValueError):
        if _devnull is None:
            _devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        return _devnull


_devnull: TextIO | None = None


def _is_wrapped_output(schema: dict[str, Any] | None) -> bool:
    """Whether the SDK wrapped a primitive tool result as ``{"result": value}``."""
    if not isinstance(schema, dict):
        return False
    props = schema.get("properties")
    return (
        isinstance(props, dict)
        and set(props) == {"result"}
        and schema.get("required") == ["result"]
    )


def _content_text(blocks: list[Any]) -> str:
    """Text of MCP content blocks joined by newlines; non-text blocks as their type."""
    parts: list[str] = []
    for block in blocks:
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        else:
            resource = getattr(block, "resource", None)
            inner = getattr(resource, "text", None)
            parts.append(
                inner if isinstance(inner, str) else f"[{getattr(block, 'type', 'content')}]"
            )
    return "\n".join(parts)


def _describe(exc: BaseException) -> str:
    """A one-line description of an exception, flattening exception groups."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
