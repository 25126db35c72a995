"""The benchmark's workload, shared by both sides (stdlib only: it is imported in both venvs).

An input is ``{"key", "n", "t", "phase", "latency_ms"}``: `t` is the wall-clock time the
bench produced it, `latency_ms` what the scripted model waits before it answers (one job serves
every phase, so the latency travels with the input rather than with the job). Every input makes
one model call and then one tool call, and ends as one output that echoes `key`, `n`, `t` and
`phase` so the bench can match it to its input and time it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["answer_for", "lookup", "make_input", "make_output", "prompt_for"]


def make_input(n: int, *, keys: int, phase: str, latency_ms: int, t: float) -> dict[str, Any]:
    """The `n`-th input of a run; keys cycle so per-key order is exercised."""
    return {"key": f"k{n % keys}", "n": n, "t": t, "phase": phase, "latency_ms": latency_ms}


def prompt_for(record: dict[str, Any]) -> str:
    """The user message sent to the model: the record itself, as JSON."""
    return json.dumps(record, separators=(",", ":"))


def answer_for(prompt: str) -> tuple[str, float]:
    """The scripted model: its answer to `prompt` and how long it waits first (seconds)."""
    record = json.loads(prompt)
    return f"lookup {record['key']}", record["latency_ms"] / 1000.0


def lookup(key: str) -> str:
    """The tool: a deterministic lookup, no I/O."""
    return f"value-of-{key}"


def make_output(record: dict[str, Any], answer: str, tool_result: str) -> dict[str, Any]:
    """The output of one input: what the bench needs to match and time it, plus both results."""
    return {
        "key": record["key"],
        "n": record["n"],
        "t": record["t"],
        "phase": record["phase"],
        "answer": answer,
        "tool": tool_result,
    }
