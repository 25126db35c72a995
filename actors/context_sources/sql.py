"""`SQLLookup`: declared, parameterised SQL queries through SQLAlchemy, read-only by default.

Payload: `{"query": <declared query name>, "params": {name: value}}`; returns the rows as a
list of dicts (column -> value, dates as ISO strings, decimals as strings).

Only the queries declared at definition time can run, and only with bound parameters: the
caller (a model, a step) picks a name and values, never SQL text. Read-only is enforced by the
database, not by parsing: SQLite opens the file with `mode=ro` and sets `PRAGMA query_only`;
PostgreSQL runs every lookup in a `READ ONLY` transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import inspect
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from actors.context_sources.base import ContextSource, check_source_name
from protocols.errors import UserError

__all__ = ["SQLLookup"]


def _plain(value: Any) -> Any:
    """A msgpack-friendly form of a column value."""
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class SQLLookup(ContextSource):
    """Run one of the declared `queries` against the database at `url`.

    Args:
        name: The source name (effect target and tool name).
        url: A SQLAlchemy URL: `sqlite:///path.db` (default dialect) or
            `postgresql+psycopg://user@127.0.0.1/db`.
        queries: Query name -> SQL text with `:name` bind parameters.
        read_only: Enforce read-only access in the database (SQLite and PostgreSQL).
        max_rows: More rows than this is an error; add a LIMIT to the query.
        timeout_s: Per-lookup time limit.
        description: What the database holds, shown to models when used as a tool.
    """

    _transient = ("_engine", "_lock")

    def __init__(
        self,
        name: str,
        url: str,
        queries: Mapping[str, str],
        *,
        read_only: bool = True,
        max_rows: int = 1000,
        timeout_s: float = 10.0,
        description: str = "",
    ) -> None:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        self.name = check_source_name(name)
        if not queries:
            raise UserError(f"SQLLookup {name!r} declares no queries; pass queries={{...}}")
        self.params_of: dict[str, frozenset[str]] = {}
        for qname, sql in queries.items():
            if not isinstance(sql, str) or not sql.strip():
                raise UserError(f"SQLLookup {name!r}: query {qname!r} must be non-empty SQL text")
            self.params_of[qname] = frozenset(text(sql).compile().params)
        self.url = str(url)
        self.dialect = make_url(self.url).get_backend_name()
        if read_only and self.dialect not in ("sqlite", "postgresql"):
            raise UserError(
                f"SQLLookup {name!r}: read-only is enforced for sqlite and postgresql only, "
                f"not {self.dialect!r}; use a read-only database user and read_only=False"
            )
        self.queries = dict(queries)
        self.read_only = read_only
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.description = description or f"Look up records in the {name!r} database."
        self._engine: Any = None
        self._lock: threading.Lock | None = None

    def _get_engine(self) -> Any:
        if self._engine is not None:
            return self._engine
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if self.read_only and url.database and url.database != ":memory:":
                url = url.set(
                    database=f"file:{url.database}",
                    query={**url.query, "mode": "ro", "uri": "true"},
                )
            kwargs["connect_args"] = {"timeout": self.timeout_s, "check_same_thread": False}
        engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite" and self.read_only:

            @event.listens_for(engine, "connect")
            def _query_only(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA query_only = ON")
                cursor.close()

        self._engine = engine
        return engine

    def _run(self, qname: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        engine = self._get_engine()
        try:
            with engine.connect() as conn:
                if self.read_only and self.dialect == "postgresql":
                    conn = conn.execution_options(postgresql_readonly=True)
                    conn.execute(text("SET TRANSACTION READ ONLY"))
                    conn.execute(
                        text("SELECT set_config('statement_timeout', :ms, true)"),
                        {"ms": str(int(self.timeout_s * 1000))},
                    )
                result = conn.execute(text(self.queries[qname]), params)
                if not result.returns_rows:
                    conn.rollback()
                    return []
                rows = result.mappings().fetchmany(self.max_rows + 1)
                conn.rollback()
        except SQLAlchemyError as exc:
            raise self._error(f"query {qname!r} failed: {exc.__class__.__name__}: {exc}") from exc
        if len(rows) > self.max_rows:
            raise self._error(
                f"query {qname!r} returned more than max_rows={self.max_rows} rows; "
                "add a LIMIT to the query or raise max_rows"
            )
        return [{str(k): _plain(v) for k, v in row.items()} for row in rows]

    async def query(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        qname = payload.get("query")
        if not isinstance(qname, str) or qname not in self.queries:
            raise self._error(
                f"unknown query {qname!r}; declared queries: {sorted(self.queries)!r}"
            )
        params = payload.get("params") or {}
        if not isinstance(params, Mapping):
            raise self._error(f"params {params!r} must be a dict of parameter -> value")
        expected = self.params_of[qname]
        missing, extra = expected - set(params), set(params) - expected
        if missing or extra:
            raise self._error(
                f"query {qname!r} takes parameters {sorted(expected)!r}; "
                f"missing {sorted(missing)!r}, unexpected {sorted(extra)!r}"
            )
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._run, qname, dict(params)), self.timeout_s
            )
        except TimeoutError as exc:
            raise self._error(f"query {qname!r} ran past {self.timeout_s} s") from exc

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def tool_signature(self) -> inspect.Signature:
        kw = inspect.Parameter.KEYWORD_ONLY
        names = tuple(sorted(self.queries))
        return inspect.Signature(
            [
                inspect.Parameter("query", kw, annotation=Literal[names]),  # type: ignore[valid-type]
                inspect.Parameter("params", kw, default=None, annotation=dict[str, Any] | None),
            ],
            return_annotation=list[dict[str, Any]],
        )

    def tool_doc(self) -> str:
        lines = [
            f"    - {q!r}: parameters {sorted(self.params_of[q])!r}" for q in sorted(self.queries)
        ]
        return (
            f"{self.description}\n\nQueries:\n" + "\n".join(lines) + "\n\n"
            "Args:\n"
            "    query: The name of the query to run.\n"
            "    params: The query's parameters, by name.\n"
        )

    def payload_from_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"query": arguments.get("query"), "params": arguments.get("params") or {}}
