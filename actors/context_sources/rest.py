"""`RestLookup`: declared HTTP endpoints with URL templates, timeouts, retries and a size cap.

Payload: `{"query": <endpoint name>, "params": {name: value}, "body": {...} | None}`.
`params` fill the `{placeholders}` of the endpoint's URL (URL-quoted); the rest go to the query
string. Returns the decoded JSON body, or the text for non-JSON responses.

Only declared endpoints can be called, so a model picks a name and values, never a URL.
Retries (exponential backoff) cover connection errors, timeouts, 429 and 5xx; other 4xx fail at
once. A body over `max_bytes` is refused while streaming, before it is all read.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from actors.context_sources.base import ContextSource, check_source_name
from protocols.errors import UserError

__all__ = ["Endpoint", "RestLookup"]

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One declared HTTP call.

    Args:
        url: A URL template, e.g. `http://127.0.0.1:8080/accounts/{account_id}`.
        method: The HTTP method.
        timeout_s: Per-attempt timeout (connect + read).
        retries: Extra attempts after the first on connection errors, timeouts, 429 and 5xx.
        backoff_s: The first retry's delay; it doubles on each retry.
        max_bytes: The largest response body accepted.
        headers: Sent with every request (e.g. an Authorization header).
        description: What the endpoint returns, shown to models when used as a tool.
    """

    url: str
    method: str = "GET"
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.2
    max_bytes: int = 1_000_000
    headers: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(
            name for _, name, _, _ in string.Formatter().parse(self.url) if name is not None
        )


class RestLookup(ContextSource):
    """Call one of the declared `endpoints` with httpx."""

    _transient = ("_client", "_loop")

    def __init__(
        self, name: str, endpoints: Mapping[str, Endpoint], *, description: str = ""
    ) -> None:
        self.name = check_source_name(name)
        if not endpoints:
            raise UserError(f"RestLookup {name!r} declares no endpoints; pass endpoints={{...}}")
        for ename, endpoint in endpoints.items():
            if not isinstance(endpoint, Endpoint):
                raise UserError(
                    f"RestLookup {name!r}: endpoint {ename!r} is {type(endpoint).__name__!r}; "
                    "declare it with Endpoint(url=...)"
                )
            if endpoint.retries < 0 or endpoint.max_bytes <= 0 or endpoint.timeout_s <= 0:
                raise UserError(
                    f"RestLookup {name!r}: endpoint {ename!r} needs retries >= 0, "
                    "max_bytes > 0 and timeout_s > 0"
                )
        self.endpoints = dict(endpoints)
        self.description = description or f"Look up records through the {name!r} HTTP API."
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(follow_redirects=False)
            self._loop = loop
        return self._client

    def _build(self, ename: str, params: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        endpoint = self.endpoints[ename]
        holes = endpoint.placeholders
        missing = holes - set(params)
        if missing:
            raise self._error(
                f"endpoint {ename!r} needs parameters {sorted(missing)!r} for its URL template"
            )
        for key, value in params.items():
            if not isinstance(value, str | int | float | bool):
                raise self._error(
                    f"endpoint {ename!r}: parameter {key!r}={value!r} must be a str or a number"
                )
        url = endpoint.url.format(**{k: quote(str(params[k]), safe="") for k in holes})
        extra = {k: str(v) for k, v in sorted(params.items()) if k not in holes}
        return url, extra

    async def _attempt(
        self, endpoint: Endpoint, url: str, query: dict[str, str], body: Any
    ) -> tuple[int, bytes, str]:
        import httpx

        client = self._get_client()
        request = client.build_request(
            endpoint.method,
            url,
            params=query or None,
            json=body,
            headers=dict(endpoint.headers),
            timeout=httpx.Timeout(endpoint.timeout_s),
        )
        response = await client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > endpoint.max_bytes:
                    raise self._error(
                        f"response from {url!r} is over max_bytes={endpoint.max_bytes}; "
                        "ask for less or raise max_bytes"
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        return response.status_code, b"".join(chunks), response.headers.get("content-type", "")

    async def query(self, payload: dict[str, Any]) -> Any:
        import httpx

        ename = payload.get("query")
        if not isinstance(ename, str) or ename not in self.endpoints:
            raise self._error(
                f"unknown endpoint {ename!r}; declared endpoints: {sorted(self.endpoints)!r}"
            )
        params = payload.get("params") or {}
        if not isinstance(params, Mapping):
            raise self._error(f"params {params!r} must be a dict of parameter -> value")
        endpoint = self.endpoints[ename]
        url, query = self._build(ename, params)
        body = payload.get("body")
        last: BaseException | None = None
        for attempt in range(endpoint.retries + 1):
            if attempt:
                await asyncio.sleep(endpoint.backoff_s * 2 ** (attempt - 1))
            try:
                status, raw, content_type = await self._attempt(endpoint, url, query, body)
            except httpx.TimeoutException as exc:
                last = exc
                continue
            except httpx.TransportError as exc:
                last = exc
                continue
            if status in _RETRY_STATUS:
                last = _status_error(endpoint.method, url, status, raw)
                continue
            if status >= 400:
                cause = _status_error(endpoint.method, url, status, raw)
                raise self._error(
                    f"endpoint {ename!r} answered HTTP {status}: "
                    f"{raw[:200].decode('utf-8', 'replace')!r}",
                    cause,
                )
            return _decode(raw, content_type)
        kind = "timed out" if isinstance(last, httpx.TimeoutException) else "failed"
        raise self._error(
            f"endpoint {ename!r} {kind} after {endpoint.retries + 1} attempts: "
            f"{type(last).__name__}: {last}",
            last,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def tool_signature(self) -> inspect.Signature:
        kw = inspect.Parameter.KEYWORD_ONLY
        names = tuple(sorted(self.endpoints))
        return inspect.Signature(
            [
                inspect.Parameter("query", kw, annotation=Literal[names]),  # type: ignore[valid-type]
                inspect.Parameter("params", kw, default=None, annotation=dict[str, Any] | None),
            ]
        )

    def tool_doc(self) -> str:
        lines = [
            f"    - {n!r}: parameters {sorted(e.placeholders)!r}. {e.description}".rstrip()
            for n, e in sorted(self.endpoints.items())
        ]
        return (
            f"{self.description}\n\nEndpoints:\n" + "\n".join(lines) + "\n\n"
            "Args:\n"
            "    query: The name of the endpoint to call.\n"
            "    params: Values for the endpoint's URL parameters, by name.\n"
        )

    def payload_from_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"query": arguments.get("query"), "params": arguments.get("params") or {}}


def _decode(raw: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")


def _status_error(method: str, url: str, status: int, raw: bytes) -> Exception:
    """An `httpx.HTTPStatusError` carrying the (capped) response, as the error's cause."""
    import httpx

    request = httpx.Request(method, url)
    response = httpx.Response(status, request=request, content=raw[:1000])
    return httpx.HTTPStatusError(f"HTTP {status} from {url}", request=request, response=response)
