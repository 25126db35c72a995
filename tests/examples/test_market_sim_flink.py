"""examples/market_sim.py --runtime flink: 1,000 agents of three types in ONE Flink job.

The command a user types runs in a subprocess against the session's Kafka; then every committed
output is read back here and checked on its own (not with the driver's code): one final report
per agent, each price broadcast delivered to every subscriber exactly once, every tip delivered,
every order filled exactly once, and each trader's cash and position equal to what the
exchange's fills ledger says it bought and sold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from examples.market_sim import build_population
from protocols import decode_envelope

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

AGENTS = 1000
ROUNDS = 3
OUT = "market.outputs"


def test_market_on_flink_one_job(kafka) -> None:
    started = time.monotonic()
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "market_sim.py"),
        "--runtime",
        "flink",
        "--agents",
        str(AGENTS),
        "--rounds",
        str(ROUNDS),
        "--tick-s",
        "1.0",
        "--bootstrap",
        kafka.bootstrap_servers,
        "--output-topic",
        OUT,
        "--timeout-s",
        "480",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=570
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("MARKET_FLINK ")][-1]
    summary = json.loads(line[len("MARKET_FLINK ") :])
    print(proc.stdout[-1500:], f"\ntest wall time {time.monotonic() - started:.1f} s")
    assert summary["quiet"] and summary["agents"] == AGENTS

    population = build_population(AGENTS)
    desks = population.groups[1].count
    traders = population.groups[2].count
    report_rounds = summary["report_rounds"]
    fills_total = summary["ledger_fills"]
    expected_records = fills_total + report_rounds * AGENTS
    records = kafka.consume(OUT, expected_records + 50, timeout=30, read_committed=True)
    assert len(records) == expected_records  # exactly once: no duplicate, nothing missing
    envelopes = [decode_envelope(r.value) for r in records]
    bodies = [(str(e.sender), e.payload.output) for e in envelopes]  # type: ignore[union-attr]

    ledger = [b for _, b in bodies if b["kind"] == "fill"]
    reports = [(s, b) for s, b in bodies if b["kind"] != "fill"]
    assert Counter(b["round"] for _, b in reports) == {
        n: AGENTS for n in range(1, report_rounds + 1)
    }
    final = {s: b for s, b in reports if b["round"] == report_rounds}
    expected_addresses = {"Exchange/ACME"}
    expected_addresses |= {f"NewsDesk/desk{i}" for i in range(desks)}
    expected_addresses |= {f"Trader/t{i:06d}" for i in range(traders)}
    assert set(final) == expected_addresses

    # The exchange: every tick published, each fill in the ledger exactly once.
    exchange = final["Exchange/ACME"]
    assert exchange["tick"] == ROUNDS and exchange["rounds"] == ROUNDS
    assert sorted(f["n"] for f in ledger) == list(range(1, exchange["fills"] + 1))
    assert exchange["volume"] == sum(f["qty"] for f in ledger)
    assert all(s == "Exchange/ACME" for s, b in bodies if b["kind"] == "fill")

    # Each trader: the Join gave it the harness's initial state; every price reached it once;
    # every order it asked was filled (no timeouts), and its books match the ledger.
    inits = {f"Trader/{key}": state for key, state in _initial_states(population, "Trader").items()}
    fills_of: dict[str, list[dict]] = defaultdict(list)
    for f in sorted(ledger, key=lambda f: f["n"]):
        fills_of[f["trader"]].append(f)
    assert set(fills_of) <= {a.split("/")[1] for a in expected_addresses if a.startswith("Trader")}
    traded = 0
    for address, r in final.items():
        if r["kind"] != "trader":
            continue
        init = inits[address]
        assert (r["seed"], r["appetite"]) == (init.seed, init.appetite), address
        assert r["prices"] == ROUNDS + 1, (address, r)
        assert r["pending"] is None and r["timeouts"] == 0, (address, r)
        mine = fills_of.get(r["key"], [])
        assert r["orders"] == r["fills"] == len(mine), (address, r, mine)
        cash, position = 10_000.0, 0
        for f in mine:  # the trader's own bookkeeping, replayed from the exchange's side
            position += f["side"] * f["qty"]
            cash = round(cash - f["side"] * f["qty"] * f["price"], 4)
        assert r["position"] == position and r["cash"] == pytest.approx(cash, abs=1e-6), address
        traded += bool(mine)
    assert traded > traders // 10  # a market, not a formality
    assert sum(r["orders"] for r in final.values() if r["kind"] == "trader") == fills_total

    # Desks: every price, an opinion on tick 0 (and every fifth), three tips each, all delivered.
    opinions = len([t for t in range(ROUNDS + 1) if t % 5 == 0])
    desk_reports = [r for r in final.values() if r["kind"] == "desk"]
    assert all(r["prices"] == ROUNDS + 1 and r["tips"] == 3 * opinions for r in desk_reports)
    tips_received = sum(r["tips"] for r in final.values() if r["kind"] == "trader")
    assert tips_received == 3 * opinions * desks

    # Message counts, exactly: the driver's summary agrees with the records.
    assert summary["messages"] == {
        "Join": AGENTS,
        "Price (broadcast)": (ROUNDS + 1) * (traders + desks),
        "Tip (keyed)": 3 * opinions * desks,
        "Order (ask)": fills_total,
        "Fill (reply)": fills_total,
        "AskTimeout": 0,
        "Report": report_rounds * AGENTS,
    }
    assert not kafka.consume("market.dead-letters", 1, timeout=3, read_committed=True)


def _initial_states(population, agent_type: str) -> dict:
    from actors.simulation import agent_rng

    group = next(g for g in population.groups if (g.agent_type or g.engine().name) == agent_type)
    return {
        group.key(i): group.init(group.key(i), agent_rng(population.seed, agent_type, i))
        for i in range(group.count)
    }
