from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from actors.context_sources import Endpoint, RestLookup
from protocols.errors import ContextError

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        path = self.path
        _Handler.hits[path.split("?")[0]] = _Handler.hits.get(path.split("?")[0], 0) + 1
        if path.startswith("/accounts/"):
            account = path.removeprefix("/accounts/")
            self._send(200, json.dumps({"id": account, "plan": "pro"}).encode())
        elif path.startswith("/flaky"):
            if _Handler.hits["/flaky"] < 3:
                self._send(503, b"busy")
            else:
                self._send(200, b"fine", "text/plain")
        elif path.startswith("/slow"):
            time.sleep(1.0)
            self._send(200, b"{}")
        elif path.startswith("/big"):
            self._send(200, b"x" * 50_000, "text/plain")
        elif path.startswith("/down"):
            self._send(500, b"broken")
        else:
            self._send(404, b'{"error": "not found"}')


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def source(base: str) -> RestLookup:
    fast = {"retries": 0, "backoff_s": 0.01}
    return RestLookup(
        "crm",
        {
            "profile": Endpoint(url=base + "/accounts/{account_id}"),
            "flaky": Endpoint(url=base + "/flaky", retries=3, backoff_s=0.01),
            "slow": Endpoint(url=base + "/slow", timeout_s=0.2, retries=1, backoff_s=0.01),
            "big": Endpoint(url=base + "/big", max_bytes=10_000, **fast),
            "down": Endpoint(url=base + "/down", retries=1, backoff_s=0.01),
            "missing": Endpoint(url=base + "/missing", retries=3),
        },
    )


async def test_template_fill_and_json(server: str) -> None:
    rest = source(server)
    assert await rest.query({"query": "profile", "params": {"account_id": "42"}}) == {
        "id": "42",
        "plan": "pro",
    }
    # Values are URL-quoted: a slash cannot walk to another path.
    got = await rest.query({"query": "profile", "params": {"account_id": "a/../b"}})
    assert got["id"] == "a%2F..%2Fb"
    await rest.aclose()


async def test_retries_on_5xx_then_succeeds(server: str) -> None:
    assert await source(server).query({"query": "flaky"}) == "fine"
    assert _Handler.hits["/flaky"] == 3


async def test_timeout_after_retries(server: str) -> None:
    with pytest.raises(ContextError, match="timed out after 2 attempts") as info:
        await source(server).query({"query": "slow"})
    assert isinstance(info.value.__cause__, httpx.TimeoutException)


async def test_5xx_exhausts_retries(server: str) -> None:
    with pytest.raises(ContextError, match="failed after 2 attempts") as info:
        await source(server).query({"query": "down"})
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert _Handler.hits["/down"] == 2


async def test_4xx_fails_at_once(server: str) -> None:
    with pytest.raises(ContextError, match="HTTP 404") as info:
        await source(server).query({"query": "missing"})
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert _Handler.hits["/missing"] == 1


async def test_oversize_response(server: str) -> None:
    with pytest.raises(ContextError, match="max_bytes=10000"):
        await source(server).query({"query": "big"})


async def test_connection_refused() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rest = RestLookup("dead", {"x": Endpoint(url=f"http://127.0.0.1:{port}/", retries=1)})
    with pytest.raises(ContextError, match="failed after 2 attempts") as info:
        await rest.query({"query": "x"})
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"query": "nope"}, "unknown endpoint 'nope'"),
        ({"query": "profile"}, "needs parameters \\['account_id'\\]"),
        ({"query": "profile", "params": {"account_id": [1]}}, "must be a str or a number"),
    ],
)
async def test_bad_payloads(server: str, payload: dict, needle: str) -> None:
    with pytest.raises(ContextError, match=needle):
        await source(server).query(payload)
