"""Fraud detection: card transactions from Kafka, one fraud-analyst agent per account.

Each transaction ``{"txn_id", "account", "amount", "country", "merchant", "ts"}`` reaches the
agent of its account (one Flink key per account). The agent

1. enriches it with the account's profile, read once per account from a SQLite file through
   the `SQLLookup` context source (``ctx.search``: journaled, so a replay reads the same row);
2. runs the rules over its own state (the account's recent transactions): amount vs. the
   profile, velocity, impossible travel, unknown account; each finding has points;
3. alerts on rules alone at 3 points or more; at exactly 2 points (borderline) it asks the
   analyst model (``ctx.chat``; the model may call the `merchant_risk` tool) for a verdict,
   FRAUD or LEGIT; an answer that says neither, or a failed model call, becomes a "review"
   alert, never a silent pass;
4. writes each alert as JSON to the alerts topic through the transactional sink: exactly once.

The decision never depends on the model being clever: rules decide the clear cases, and a
small model's muddled answer is read conservatively. The model is the local SmolLM2 server of
``flink-actors up --model`` unless FLINK_ACTORS_MODEL_URL names an OpenAI-compatible endpoint.

One command on a running stack (``flink-actors up --model``)::

    python examples/fraud_detection.py --bootstrap 127.0.0.1:9092 --produce 16

(``--produce N`` writes N sample transactions first; the job then reads what the topic holds,
finishes, and prints the committed alerts.)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from actors import InputEvent, OutputEvent, RunnerContext, Workflow, model, step, tool
from actors.context_sources import SQLLookup
from actors.decorators import context_source
from protocols.errors import ModelError

__all__ = [
    "MERCHANT_RISK",
    "PROFILES",
    "SCENARIO",
    "AccountState",
    "FraudAnalyst",
    "Transaction",
    "assess",
    "build_job",
    "create_profiles_db",
    "main",
    "parse_verdict",
    "run_demo",
    "sample_transactions",
]

EXAMPLE = Path(__file__).resolve()

ALERT_POINTS = 3
"""Rules alone alert at this score."""
BORDERLINE_POINTS = 2
"""At exactly this score the analyst model is asked."""
VELOCITY_WINDOW_S = 600
VELOCITY_LIMIT = 4
TRAVEL_WINDOW_S = 3600
WINDOW_KEEP_S = 24 * 3600
WINDOW_MAX = 50

PROFILES: list[tuple[str, str, str, float, float]] = [
    # account, holder, home country, average amount, largest usual amount
    ("acc-1", "Ada", "FR", 40.0, 300.0),
    ("acc-2", "Bob", "DE", 120.0, 1500.0),
    ("acc-3", "Chen", "US", 60.0, 400.0),
    ("acc-4", "Dana", "GB", 25.0, 150.0),
]

MERCHANT_RISK: dict[str, str] = {
    "giftcards-online": "high: gift-card resellers are the main cash-out channel for stolen cards",
    "crypto-exchange": "high: transfers to crypto exchanges are rarely reversed",
    "electronics-store": "medium: resellable goods",
    "kiosk": "low: small everyday purchases",
    "grocer": "low: small everyday purchases",
    "bakery": "low: small everyday purchases",
    "fuel": "low: small everyday purchases",
    "diner": "low: small everyday purchases",
    "cafe": "low: small everyday purchases",
    "bookshop": "low: small everyday purchases",
    "hotel": "low: travel spending",
    "webshop": "medium: card-not-present purchase",
}

T0 = 1_767_000_000
# txn id, account, amount, country, merchant, seconds after T0. The comment says what the
# rules make of it (profiles above): the sample covers every outcome.
SCENARIO: list[tuple[str, str, float, str, str, int]] = [
    ("t01", "acc-1", 35.0, "FR", "bakery", 0),  # clean
    ("t02", "acc-1", 2500.0, "FR", "electronics-store", 100),  # amount > max: rules alert
    ("t03", "acc-2", 80.0, "DE", "grocer", 0),  # clean
    ("t04", "acc-2", 60.0, "DE", "grocer", 60),  # clean
    ("t05", "acc-2", 45.0, "DE", "fuel", 120),  # clean (3 in 10 min)
    ("t06", "acc-2", 30.0, "DE", "kiosk", 180),  # velocity (2): borderline, low-risk merchant
    ("t07", "acc-2", 90.0, "DE", "giftcards-online", 240),  # velocity (2): borderline, high risk
    ("t08", "acc-3", 50.0, "US", "diner", 0),  # clean
    ("t09", "acc-3", 70.0, "BR", "crypto-exchange", 1200),  # abroad + travel: rules alert
    ("t10", "acc-4", 20.0, "GB", "cafe", 0),  # clean
    ("t11", "acc-4", 100.0, "GB", "bookshop", 5000),  # 4x average (1): no alert
    ("t12", "acc-4", 120.0, "ES", "pawn-shop-17", 90000),  # abroad + 4.8x avg (2): borderline
    ("t13", "acc-9", 10.0, "NL", "webshop", 0),  # unknown account: rules alert
    ("t14", "acc-1", 42.0, "FR", "bakery", 7200),  # clean
    ("t15", "acc-3", 55.0, "US", "diner", 90000),  # clean (back home a day later)
    ("t16", "acc-2", 110.0, "DE", "grocer", 10000),  # clean (window has moved on)
]

ANALYST_PROMPT = (
    "You are a card fraud analyst. A transaction scored borderline on the rules. "
    "Call merchant_risk with the merchant's name first. Then answer with the word FRAUD or "
    "the word LEGIT, followed by one short reason."
)


class Transaction(BaseModel):
    """One card transaction, as it arrives on the transactions topic."""

    txn_id: str
    account: str
    amount: float
    country: str
    merchant: str
    ts: int


class Seen(BaseModel):
    """What the window keeps of an earlier transaction."""

    ts: int
    amount: float
    country: str


class AccountState(BaseModel):
    """Per-account state: the profile (read once) and the recent transactions window."""

    profile: dict[str, Any] | None = None
    profile_loaded: bool = False
    recent: list[Seen] = Field(default_factory=list)
    seen: int = 0
    alerts: int = 0


def create_profiles_db(path: str | Path) -> Path:
    """Write the account-profile table the agents look up (replaced if it exists)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS profiles")
        conn.execute(
            "CREATE TABLE profiles (account TEXT PRIMARY KEY, holder TEXT, home_country TEXT, "
            "avg_amount REAL, max_amount REAL)"
        )
        conn.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", PROFILES)
    return path


def sample_transactions(n: int) -> list[dict[str, Any]]:
    """`n` sample transactions: the scenario, repeated with fresh ids two days apart."""
    out = []
    for i in range(n):
        rnd, index = divmod(i, len(SCENARIO))
        txn, account, amount, country, merchant, dt = SCENARIO[index]
        txn_id = txn if rnd == 0 else f"{txn}-r{rnd}"
        ts = T0 + rnd * 2 * 86400 + dt
        out.append(
            Transaction(
                txn_id=txn_id,
                account=account,
                amount=amount,
                country=country,
                merchant=merchant,
                ts=ts,
            ).model_dump()
        )
    return out


def assess(
    txn: Transaction, profile: dict[str, Any] | None, recent: list[Seen]
) -> tuple[int, list[str]]:
    """The rules: (points, findings) for `txn`, given the profile and the earlier window."""
    if profile is None:
        return 3, [f"unknown account {txn.account!r}: no profile"]
    points, reasons = 0, []
    avg, top = float(profile["avg_amount"]), float(profile["max_amount"])
    amount_points, amount_reason = FraudAnalyst.amount_check(txn.amount, avg, top)
    velocity = FraudAnalyst.velocity_check([s.ts for s in recent], txn.ts, VELOCITY_WINDOW_S)
    geo_points, geo_reason = FraudAnalyst.geo_check(
        txn.country,
        str(profile["home_country"]),
        recent[-1].country if recent else None,
        txn.ts - recent[-1].ts if recent else None,
    )
    if amount_points:
        points += amount_points
        reasons.append(amount_reason)
    if velocity >= VELOCITY_LIMIT:
        points += 2
        reasons.append(f"velocity: {velocity} transactions within {VELOCITY_WINDOW_S} s")
    if geo_points:
        points += geo_points
        reasons.append(geo_reason)
    return points, reasons


def parse_verdict(text: str) -> str:
    """``"fraud"`` or ``"legit"`` when the answer names exactly one of them, else ``"review"``."""
    upper = text.upper()
    fraud, legit = "FRAUD" in upper, "LEGIT" in upper
    if fraud and not legit:
        return "fraud"
    if legit and not fraud:
        return "legit"
    return "review"


class FraudAnalyst(Workflow):
    """One agent per account: profile enrichment, rules over the window, a model for the
    borderline cases, alerts as outputs."""

    state_type = AccountState

    def __init__(self, profiles_db: str | Path) -> None:
        self.profiles_db = str(Path(profiles_db).resolve())
        super().__init__()

    @context_source
    def profiles(self) -> SQLLookup:
        return SQLLookup(
            "profiles",
            f"sqlite:///{self.profiles_db}",
            queries={
                "by_account": "SELECT account, holder, home_country, avg_amount, max_amount "
                "FROM profiles WHERE account = :account"
            },
        )

    @tool
    @staticmethod
    def amount_check(amount: float, avg_amount: float, max_amount: float) -> tuple[int, str]:
        """Compare an amount with the account's profile.

        Args:
            amount: the transaction's amount.
            avg_amount: the account's average amount.
            max_amount: the largest amount the account usually spends.
        """
        if amount > max_amount:
            return 3, f"amount {amount:.2f} above the account's max {max_amount:.2f}"
        if amount > 3 * avg_amount:
            return 1, f"amount {amount:.2f} is {amount / avg_amount:.1f}x the average"
        return 0, ""

    @tool
    @staticmethod
    def velocity_check(earlier_ts: list[int], now: int, window_s: int) -> int:
        """Count transactions in the window ending now, this one included.

        Args:
            earlier_ts: timestamps (s) of the account's earlier transactions.
            now: this transaction's timestamp (s).
            window_s: the window's length (s).
        """
        return 1 + sum(1 for ts in earlier_ts if now - window_s < ts <= now)

    @tool
    @staticmethod
    def geo_check(
        country: str, home_country: str, last_country: str | None, since_last_s: int | None
    ) -> tuple[int, str]:
        """Score a transaction's country: abroad, and a country change too fast to travel.

        Args:
            country: where the transaction happened.
            home_country: the account's home country.
            last_country: the country of the account's previous transaction, if any.
            since_last_s: seconds since that transaction, if any.
        """
        points, notes = 0, []
        if country != home_country:
            points += 1
            notes.append(f"abroad: {country} (home {home_country})")
        if (
            last_country is not None
            and since_last_s is not None
            and last_country != country
            and since_last_s < TRAVEL_WINDOW_S
        ):
            points += 2
            notes.append(f"country changed {last_country} -> {country} within {since_last_s} s")
        return points, "; ".join(notes)

    @tool
    @staticmethod
    def merchant_risk(merchant: str) -> str:
        """How risky a merchant is, from the merchant-risk list.

        Args:
            merchant: the merchant's name, e.g. "kiosk".
        """
        name = merchant.strip().lower()
        return f"{name}: {MERCHANT_RISK.get(name, 'unknown merchant, no history')}"

    @model
    @staticmethod
    def analyst() -> Any:
        from actors.models.local import default_chat_model

        return default_chat_model(prompt=ANALYST_PROMPT, tools=["merchant_risk"])

    @step(InputEvent)
    def on_transaction(self, event: InputEvent, state: AccountState, ctx: RunnerContext) -> None:
        """Enrich, apply the rules, ask the model when borderline, alert."""
        txn = Transaction.model_validate(event.input)
        if not state.profile_loaded:
            rows = ctx.search("profiles", "by_account", params={"account": txn.account})
            state.profile = dict(rows[0]) if rows else None
            state.profile_loaded = True
        points, reasons = assess(txn, state.profile, state.recent)
        state.seen += 1
        state.recent.append(Seen(ts=txn.ts, amount=txn.amount, country=txn.country))
        state.recent = [s for s in state.recent if txn.ts - s.ts <= WINDOW_KEEP_S][-WINDOW_MAX:]
        decided_by, verdict, note = "rules", "fraud", None
        if points < BORDERLINE_POINTS:
            return
        if points < ALERT_POINTS:
            decided_by = "model"
            verdict, note = self._ask_analyst(txn, state.profile or {}, reasons, ctx)
            if verdict == "legit":
                return
        state.alerts += 1
        ctx.send_event(
            OutputEvent(
                {
                    **txn.model_dump(),
                    "holder": (state.profile or {}).get("holder"),
                    "score": points,
                    "reasons": reasons,
                    "decided_by": decided_by,
                    "verdict": verdict,
                    "analyst_note": note,
                    "account_alerts": state.alerts,
                    "account_seen": state.seen,
                }
            )
        )

    def _ask_analyst(
        self, txn: Transaction, profile: dict[str, Any], reasons: list[str], ctx: RunnerContext
    ) -> tuple[str, str]:
        question = (
            f"Transaction {txn.txn_id}: {txn.amount:.2f} at merchant {txn.merchant} in "
            f"{txn.country}. Card holder {profile.get('holder')}, home country "
            f"{profile.get('home_country')}, average amount {profile.get('avg_amount')}. "
            f"Rule findings: {'; '.join(reasons)}. Is it FRAUD or LEGIT?"
        )
        try:
            answer = ctx.chat("analyst", [question], max_iterations=4)
        except ModelError as exc:
            return "review", f"model unavailable: {exc}"
        text = (answer.content or "").strip()
        return parse_verdict(text), text


def _account_of(record: dict[str, Any]) -> str:
    return str(record["account"])


def build_job(
    env: Any,
    *,
    bootstrap: str,
    transactions: str,
    alerts: str,
    profiles_db: str | Path,
    effects: str = "ray",
    group_id: str = "fraud-detection",
) -> None:
    """Add the fraud pipeline to `env`: bounded Kafka source -> analysts -> alerts topic."""
    from flink_bridge.runtime import AgentRuntime

    runtime = AgentRuntime.from_kafka(
        env,
        transactions,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        bounded=True,
        key_selector=_account_of,
    )
    runtime.apply(FraudAnalyst(profiles_db), effects=effects)
    runtime.to_kafka(alerts, bootstrap_servers=bootstrap)


def read_alerts(bootstrap: str, topic: str, n: int = 10_000, timeout: float = 10.0) -> list[dict]:
    """The committed alerts of `topic` (read_committed), oldest first."""
    from flink_bridge.stack.kafka_client import KafkaClient

    records = KafkaClient(bootstrap).consume(topic, n, timeout=timeout, read_committed=True)
    return [json.loads(r.value) for r in records if r.value]


def print_alerts(alerts: list[dict[str, Any]], *, console: Any = None, title: str = "") -> None:
    """A rich table of alerts."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title or f"fraud alerts ({len(alerts)}, read_committed)")
    for column in (
        "txn",
        "account",
        "amount",
        "country",
        "merchant",
        "score",
        "by",
        "verdict",
        "reasons / analyst",
    ):
        table.add_column(column)
    for a in alerts:
        why = "; ".join(a["reasons"])
        if a.get("analyst_note"):
            why += f"\nanalyst: {a['analyst_note']}"
        table.add_row(
            a["txn_id"],
            a["account"],
            f"{a['amount']:.2f}",
            a["country"],
            a["merchant"],
            str(a["score"]),
            a["decided_by"],
            a["verdict"],
            why,
        )
    console.print(table)


def _default_db() -> Path:
    return Path(tempfile.gettempdir()) / f"flink-actors-fraud-{os.getuid()}" / "profiles.db"


def main(argv: list[str] | None = None) -> None:
    """Command line: optionally produce samples, run the job to the end, print the alerts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--transactions", default="fraud.transactions", help="input topic (JSON)")
    parser.add_argument("--alerts", default="fraud.alerts", help="alerts topic (JSON)")
    parser.add_argument("--profiles-db", default=str(_default_db()), help="SQLite profiles file")
    parser.add_argument(
        "--produce",
        type=int,
        default=0,
        metavar="N",
        help="first write N sample transactions to the input topic",
    )
    parser.add_argument("--count", type=int, default=1000, help="print at most this many alerts")
    parser.add_argument(
        "--effects",
        choices=["ray", "in-process"],
        default="ray",
        help="where model/tool/lookup calls run",
    )
    parser.add_argument("--group", default="fraud-detection", help="Kafka consumer group")
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument("--quiet", action="store_true", help="no summary table")
    args = parser.parse_args(argv)

    from flink_bridge.environment import RuntimeConfig, create_environment
    from flink_bridge.stack.kafka_client import KafkaClient

    create_profiles_db(args.profiles_db)
    kafka = KafkaClient(args.bootstrap)
    kafka.create_topics([args.transactions, args.alerts], partitions=1)
    if args.produce:
        kafka.produce(args.transactions, [json.dumps(t) for t in sample_transactions(args.produce)])
        print(f"produced {args.produce} transactions to {args.transactions!r}", flush=True)
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=args.checkpoint_ms))
    build_job(
        env,
        bootstrap=args.bootstrap,
        transactions=args.transactions,
        alerts=args.alerts,
        profiles_db=args.profiles_db,
        effects=args.effects,
        group_id=args.group,
    )
    began = time.monotonic()
    env.execute("fraud-detection")
    alerts = read_alerts(args.bootstrap, args.alerts, args.count)
    print(f"FRAUD_DONE alerts={len(alerts)} seconds={time.monotonic() - began:.1f}", flush=True)
    if not args.quiet:
        print_alerts(alerts)


def run_demo(config: Any, *, console: Any, timeout_s: float = 900.0) -> int:
    """`flink-actors demo --app fraud`: sample transactions on fresh topics, the job as a
    subprocess, alerts printed as they commit; returns the number of alerts."""
    from flink_bridge.demo import DemoJob, demo_log_path
    from flink_bridge.stack.kafka_client import KafkaClient

    run = uuid.uuid4().hex[:6]
    source, sink = f"demo.fraud.txns.{run}", f"demo.fraud.alerts.{run}"
    kafka = KafkaClient(config.kafka_bootstrap)
    kafka.create_topics([source, sink], partitions=1)
    txns = sample_transactions(len(SCENARIO))
    kafka.produce(source, [json.dumps(t) for t in txns])
    console.print(f"[bold]produced[/] {len(txns)} transactions to [cyan]{source}[/]")
    db = Path(config.state_dir) / "examples" / "fraud-profiles.db"
    started = time.monotonic()
    argv = [sys.executable, str(EXAMPLE), "--bootstrap", config.kafka_bootstrap, "--quiet"]
    argv += ["--transactions", source, "--alerts", sink, "--profiles-db", str(db)]
    job = DemoJob(argv, demo_log_path(config, "fraud", run))
    shown: list[dict[str, Any]] = []
    with console.status("running the fraud-detection job on Flink..."):
        while time.monotonic() - started < timeout_s:
            done = job.poll() is not None
            for alert in read_alerts(config.kafka_bootstrap, sink, timeout=2.0)[len(shown) :]:
                shown.append(alert)
                console.print(
                    f"[green]{time.monotonic() - started:6.1f}s[/] [bold red]ALERT[/] "
                    f"{alert['txn_id']} {alert['account']} {alert['amount']:.2f} "
                    f"({alert['decided_by']}: {'; '.join(alert['reasons'])})"
                )
            if done:
                break
            time.sleep(1.0)
    if job.stop(timeout_s=0.0) != 0:  # still running after the timeout: stopped here
        job.report_failure(console, "fraud-detection")
    print_alerts(shown, console=console)
    console.print(
        f"{len(shown)} alerts for {len(txns)} transactions in "
        f"{time.monotonic() - started:.1f}s (topics {source} -> {sink})"
    )
    return len(shown)


if __name__ == "__main__":
    main()
