"""Every ``python`` block of docs/context.md runs, in order, in one namespace; the ``#>`` lines
of a block are what it must print."""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "context.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[int, str]]:
    text = DOC.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_doc_has_blocks() -> None:
    assert len(_blocks()) >= 8


@pytest.mark.integration  # one block starts an HTTP server on 127.0.0.1
async def test_every_python_block_runs_and_prints_what_it_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    namespace: dict[str, object] = {"__name__": "docs_context"}
    for line, source in _blocks():
        expected = [
            ln.strip()[2:].strip() for ln in source.splitlines() if ln.strip().startswith("#>")
        ]
        code = compile(source, f"{DOC}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = eval(code, namespace)  # noqa: S307 - our own documentation
            if inspect.iscoroutine(result):
                await result
        printed = [ln.strip() for ln in out.getvalue().splitlines()]
        assert printed == expected, f"block at docs/context.md:{line}"
