"""`ResultTable` and the per-run counters a simulation keeps.

Counters per agent live in flat arrays indexed by the agent's index in its type (8 bytes a
counter), not in a dict per agent, so 100,000 idle agents stay cheap; rows are built only when
the result is read. A `ResultTable` is a list of rows (dicts with the same columns) that
converts to a `pyarrow.Table` for analysis (pandas, DuckDB, Parquet).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["AGENT_COUNTERS", "AgentCounters", "ResultTable"]

AGENT_COUNTERS = (
    "turns",
    "received",
    "sent",
    "outputs",
    "errors",
    "model_calls",
    "input_tokens",
    "output_tokens",
)
"""The per-agent counters, in their column order."""


class AgentCounters:
    """One agent type's counters: one ``array('q')`` per counter, indexed by agent index."""

    __slots__ = ("columns",)

    def __init__(self) -> None:
        self.columns: dict[str, array[int]] = {name: array("q") for name in AGENT_COUNTERS}

    def grow(self, size: int) -> None:
        """Make room for agents ``0 .. size - 1``."""
        for column in self.columns.values():
            missing = size - len(column)
            if missing > 0:
                column.frombytes(bytes(8 * missing))

    def add(self, name: str, index: int, amount: int = 1) -> None:
        self.columns[name][index] += amount

    def row(self, index: int) -> dict[str, int]:
        return {name: column[index] for name, column in self.columns.items()}


class ResultTable(Sequence[dict[str, Any]]):
    """Rows with the same columns, in a deterministic order; `to_arrow` for analysis."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        return self.rows[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultTable):
            return self.rows == other.rows
        return NotImplemented

    def __repr__(self) -> str:
        return f"ResultTable({len(self.rows)} rows, columns={self.columns!r})"

    @property
    def columns(self) -> list[str]:
        """The column names (of the first row; every row has them)."""
        return list(self.rows[0]) if self.rows else []

    def to_pylist(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def to_arrow(self) -> Any:
        """A `pyarrow.Table` of the rows (pyarrow is imported here, only when asked)."""
        import pyarrow as pa

        return pa.Table.from_pylist(self.rows)
