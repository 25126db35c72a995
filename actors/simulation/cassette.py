"""`ModelCassette`: record a model's answers once, replay them in every later run.

A simulation is deterministic given its seeds and its model answers. Real models do not answer
the same way twice, so the cassette stands between the engine and the workflow's executor: in
``record`` mode it lets model calls through and appends each answer to a JSONL file; in
``replay`` mode it answers from the file and never calls the model. Tools, MCP and context calls
always run for real (they are part of what is simulated).

An answer is keyed by a hash of the request (model name, messages and tools, not the call id)
and by how many times that same request was seen before in the run, so a model that answered
one prompt differently on its 1st and 2nd call replays both in order. A request the file does
not hold, in replay mode, stops the run with `CassetteMiss`: silently calling the model would
make the run unreproducible.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from actors.effects import EffectExecutor, EffectKind, EffectRequest, EffectResult
from protocols.errors import UserError

__all__ = ["CassetteExecutor", "CassetteMiss", "ModelCassette", "request_hash"]

CassetteMode = Literal["record", "replay", "auto"]


class CassetteMiss(UserError):
    """A model request that a cassette in replay mode has no recorded answer for."""


def request_hash(request: EffectRequest) -> str:
    """A stable hash of what a model call asks (target and payload; not the call id)."""
    text = json.dumps(
        {"target": request.target, "payload": request.payload},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ModelCassette:
    """Model answers in a JSONL file, one ``{"key", "n", "target", "result"}`` object a line.

    ``mode``: ``"record"`` starts a new file and records every answer; ``"replay"`` answers from
    the file only (a miss raises `CassetteMiss`); ``"auto"`` replays what the file holds and
    records the rest.
    """

    def __init__(self, path: str | Path, *, mode: CassetteMode = "replay") -> None:
        if mode not in ("record", "replay", "auto"):
            raise UserError(f"cassette mode must be 'record', 'replay' or 'auto', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self._answers: dict[tuple[str, int], dict[str, Any]] = {}
        self._seen: dict[str, int] = {}
        self.hits = 0
        self.recorded = 0
        if mode == "replay" and not self.path.exists():
            raise UserError(
                f"cassette {str(self.path)!r} does not exist; record it first with "
                "ModelCassette(path, mode='record')"
            )
        if mode == "record":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._answers[(row["key"], int(row["n"]))] = row["result"]

    def __len__(self) -> int:
        return len(self._answers)

    def wrap(self, executor: EffectExecutor) -> CassetteExecutor:
        """An executor answering model calls from this cassette and the rest with ``executor``."""
        return CassetteExecutor(executor, self)

    def reset(self) -> None:
        """Forget how often each request was seen (a new run replays from the first answers)."""
        self._seen.clear()

    def _next(self, request: EffectRequest) -> tuple[str, int]:
        key = request_hash(request)
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        return key, n

    def _lookup(self, key: str, n: int, request: EffectRequest) -> EffectResult | None:
        found = self._answers.get((key, n))
        if found is None:
            if self.mode == "replay":
                raise CassetteMiss(
                    f"cassette {str(self.path)!r} has no answer for model {request.target!r} "
                    f"request {key} (occurrence {n}, call {request.call_id!r}); the prompt or "
                    "the seeds changed since it was recorded: record it again with "
                    "mode='record' (or 'auto' to add the missing answers)"
                )
            return None
        self.hits += 1
        return EffectResult.model_validate({**found, "call_id": request.call_id})

    def _record(self, key: str, n: int, request: EffectRequest, result: EffectResult) -> None:
        body = result.model_dump(mode="json", exclude={"call_id", "latency_ms"})
        self._answers[(key, n)] = body
        line = json.dumps({"key": key, "n": n, "target": request.target, "result": body})
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        self.recorded += 1


class CassetteExecutor:
    """An `EffectExecutor` that answers model calls from a `ModelCassette`."""

    def __init__(self, inner: EffectExecutor, cassette: ModelCassette) -> None:
        self.inner = inner
        self.cassette = cassette

    async def execute(self, request: EffectRequest) -> EffectResult:
        if request.kind is not EffectKind.MODEL:
            return await self.inner.execute(request)
        key, n = self.cassette._next(request)  # counted before any await: order is the call order
        found = self.cassette._lookup(key, n, request)
        if found is not None:
            return found
        result = await self.inner.execute(request)
        self.cassette._record(key, n, request, result)  # failures too: a replay repeats them
        return result

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
