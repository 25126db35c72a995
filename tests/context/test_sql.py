from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from actors.context_sources import SQLLookup, as_tool
from protocols.errors import ContextError, UserError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, plan TEXT, balance REAL);
        INSERT INTO accounts VALUES (1, 'Ada', 'pro', 12.5), (2, 'Bob', 'free', 0.0),
                                    (3, 'Cy', 'pro', 99.0);
        """
    )
    conn.commit()
    conn.close()
    return path


def lookup(db: Path, **kwargs: object) -> SQLLookup:
    queries = {
        "by_id": "SELECT id, name, plan, balance FROM accounts WHERE id = :id",
        "by_plan": "SELECT id, name FROM accounts WHERE plan = :plan ORDER BY id",
        "all": "SELECT id FROM accounts ORDER BY id",
        "wipe": "DELETE FROM accounts",
        "broken": "SELECT nope FROM missing_table WHERE id = :id",
    }
    return SQLLookup("crm", f"sqlite:///{db}", queries, **kwargs)  # type: ignore[arg-type]


async def test_declared_query_with_params(db: Path) -> None:
    source = lookup(db)
    rows = await source.query({"query": "by_id", "params": {"id": 1}})
    assert rows == [{"id": 1, "name": "Ada", "plan": "pro", "balance": 12.5}]
    rows = await source.query({"query": "by_plan", "params": {"plan": "pro"}})
    assert [r["name"] for r in rows] == ["Ada", "Cy"]
    await source.aclose()


async def test_params_are_bound_never_spliced(db: Path) -> None:
    rows = await lookup(db).query({"query": "by_plan", "params": {"plan": "pro' OR '1'='1"}})
    assert rows == []


async def test_read_only_is_enforced_by_the_database(db: Path) -> None:
    with pytest.raises(ContextError, match="wipe") as info:
        await lookup(db).query({"query": "wipe"})
    assert "readonly" in str(info.value.__cause__).lower()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 3
    conn.close()


async def test_writable_when_asked(db: Path) -> None:
    source = lookup(db, read_only=False)
    assert await source.query({"query": "wipe"}) == []


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"query": "nope"}, "unknown query 'nope'"),
        ({"query": "SELECT 1"}, "unknown query"),
        ({"query": "by_id"}, "missing \\['id'\\]"),
        ({"query": "by_id", "params": {"id": 1, "x": 2}}, "unexpected \\['x'\\]"),
        ({"query": "by_id", "params": [1]}, "must be a dict"),
    ],
)
async def test_bad_payloads(db: Path, payload: dict, needle: str) -> None:
    with pytest.raises(ContextError, match=needle):
        await lookup(db).query(payload)


async def test_sql_error_keeps_its_cause(db: Path) -> None:
    from sqlalchemy.exc import OperationalError

    with pytest.raises(ContextError, match="'broken' failed") as info:
        await lookup(db).query({"query": "broken", "params": {"id": 1}})
    assert isinstance(info.value.__cause__, OperationalError)


async def test_max_rows(db: Path) -> None:
    with pytest.raises(ContextError, match="max_rows=2"):
        await lookup(db, max_rows=2).query({"query": "all"})


def test_definition_errors(db: Path) -> None:
    with pytest.raises(UserError, match="no queries"):
        SQLLookup("x", f"sqlite:///{db}", {})
    with pytest.raises(UserError, match="read-only is enforced"):
        SQLLookup("x", "mysql://u@127.0.0.1/db", {"q": "SELECT 1"})


async def test_as_tool(db: Path) -> None:
    import inspect
    import typing

    fn = as_tool(lookup(db))
    annotation = inspect.signature(fn).parameters["query"].annotation
    assert set(typing.get_args(annotation)) == {"all", "broken", "by_id", "by_plan", "wipe"}
    assert await fn(query="by_id", params={"id": 2}) == [
        {"id": 2, "name": "Bob", "plan": "free", "balance": 0.0}
    ]
