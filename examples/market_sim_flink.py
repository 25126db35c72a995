"""The market simulation as one Flink job on the embedded stack (Kafka + Flink, effects in-process).

    python examples/market_sim.py --runtime flink --agents 1000 --rounds 5 \\
        --bootstrap 127.0.0.1:9092

What runs where:

- **One Flink job** (this process is its driver) runs the three agent types of
  ``examples/market_sim.py``, unchanged: each type is ``AgentRuntime.from_kafka`` on its inbox
  topic ``agents.<type>.inbox`` (``format="envelope"``), ``apply(..., effects="in-process")``
  (the desks' `FunctionModel` runs inside the Flink worker; no Ray needed), ``to_kafka`` of its
  outputs to the output topic, with its ``ctx.send``/``ctx.ask``/``ctx.reply`` envelopes going
  to the recipients' inboxes. Subscriptions are Flink's: ``prices`` is a broadcast to every
  registered Trader and NewsDesk key (``agents.<type>.keys``), ``tips`` is keyed by trader.
- **Time is wall-clock time**: the exchange's ``ctx.schedule`` ticks are processing-time
  timers, every ``tick_s`` seconds, for ``rounds`` ticks (then it stops ticking). There is no
  simulated clock on Flink; message latency is a Kafka hop (about one checkpoint interval).
- **The driver** (here): creates the topics (deleting the market's topics of an earlier run:
  the job reads its topics from the earliest offset), starts the job, seeds every agent with a
  `Join` envelope carrying the same initial state the simulation harness gives it (same seeds),
  waits until every subscriber key is in the committed key registry, opens the exchange, then
  asks every agent for a `Report` (one output each) until the market is quiet: the last tick
  published, every price delivered, no ask open, every tip delivered and every order filled.
  Outputs are read ``read_committed``; the job is cancelled at the end.

The exchange writes one ``fill`` output per fill (its ledger); the test checks each trader's
final cash and position against it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from actors.simulation import agent_rng
from examples.market_sim import (
    EXCHANGE,
    Exchange,
    Join,
    NewsDesk,
    Report,
    Trader,
    build_population,
)
from flink_bridge.subscriptions import registry_topic, wait_until_registered
from flink_bridge.topics import inbox_topic
from protocols import AgentAddress, Envelope, decode_envelope, encode_envelope, message
from protocols.errors import UserError

__all__ = [
    "AGENT_TYPES",
    "FlinkMarketConfig",
    "MarketRun",
    "Open",
    "market_topics",
    "run_flink",
]

AGENT_TYPES = ("Exchange", "Trader", "NewsDesk")
SUBSCRIBED = ("prices", "tips")


@message("market.Open")
class Open(BaseModel):
    """Opens the exchange (arrives as ``InputEvent(input=<dict>)``, as the harness's start)."""

    tick_s: float
    rounds: int
    ledger: bool = True


@dataclass
class FlinkMarketConfig:
    """One Flink run of the market; every wait is bounded by `timeout_s` in total."""

    agents: int = 1000
    rounds: int = 5
    tick_s: float = 1.0
    seed: int = 7
    bootstrap_servers: str = "127.0.0.1:9092"
    output_topic: str = "market.outputs"
    dead_letter_topic: str = "market.dead-letters"
    checkpoint_interval_ms: int = 500
    ask_timeout_s: float = 120.0
    fresh: bool = True
    timeout_s: float = 480.0


@dataclass
class MarketRun:
    """What the driver saw: the last complete round of reports, the ledger, timings."""

    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # address -> report
    ledger: list[dict[str, Any]] = field(default_factory=list)
    report_rounds: int = 0
    quiet: bool = False
    marks: dict[str, float] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.reports.values() if r["kind"] == kind]

    def summary(self) -> dict[str, Any]:
        traders, desks = self.of_kind("trader"), self.of_kind("desk")
        exchange = self.of_kind("exchange")
        agents = len(self.reports)
        messages = {
            "Join": agents,
            "Price (broadcast)": sum(r["prices"] for r in traders + desks),
            "Tip (keyed)": sum(r["tips"] for r in traders),
            "Order (ask)": sum(r["orders"] for r in traders),
            "Fill (reply)": sum(r["fills"] for r in traders),
            "AskTimeout": sum(r["timeouts"] for r in traders),
            "Report": agents * self.report_rounds,
        }
        run_s = self.marks.get("quiet_s", 0.0) - self.marks.get("open_s", 0.0)
        agent_messages = sum(v for k, v in messages.items() if k not in ("Join", "Report"))
        return {
            "runtime": "flink",
            "agents": agents,
            "traders": len(traders),
            "desks": len(desks),
            "quiet": self.quiet,
            "messages": messages,
            "final_price": exchange[0]["price"] if exchange else None,
            "volume": exchange[0]["volume"] if exchange else None,
            "ledger_fills": len(self.ledger),
            "report_rounds": self.report_rounds,
            "market_s": round(run_s, 2),
            "agent_messages_per_s": round(agent_messages / run_s) if run_s > 0 else None,
            **{k: round(v, 2) for k, v in self.marks.items()},
        }


def market_topics(config: FlinkMarketConfig) -> list[str]:
    """Every topic the job reads or writes (deleted first when `config.fresh`)."""
    return [
        *(inbox_topic(t) for t in AGENT_TYPES),
        *SUBSCRIBED,
        registry_topic("Trader"),
        registry_topic("NewsDesk"),
        config.output_topic,
        config.dead_letter_topic,
    ]


def population_joins(config: FlinkMarketConfig) -> list[Envelope]:
    """A `Join` per agent with the initial state the simulation harness would give it."""
    population = build_population(config.agents, seed=config.seed, tick_s=config.tick_s)
    joins: list[Envelope] = []
    for group in population.groups:
        name = group.agent_type or group.engine().name
        for i in range(group.count):
            key = group.key(i)
            state = group.init(key, agent_rng(population.seed, name, i)) if group.init else None
            fields = state.model_dump(mode="json") if state is not None else {}
            if name == "Trader":
                fields["ask_timeout_s"] = config.ask_timeout_s
            joins.append(Envelope.wrap(Join(state=fields), recipient=AgentAddress(name, key)))
    return joins


# -- Kafka ------------------------------------------------------------------------------------


class _Tail:
    """Reads a topic from the beginning, committed records only, incrementally."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        import uuid

        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from flink_bridge.stack.kafka_client import KafkaClient

        parts = KafkaClient(bootstrap_servers).partitions(topic)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"market-sim-reader-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "client.dns.lookup": "use_all_dns_ips",
            }
        )
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])

    def poll(self, wait_s: float = 0.5) -> list[Any]:
        out: list[Any] = []
        deadline = time.monotonic() + wait_s
        while True:
            batch = self.consumer.consume(num_messages=5000, timeout=0.2)
            out.extend(m for m in batch if m.error() is None)
            if time.monotonic() > deadline and len(batch) < 5000:
                return out

    def close(self) -> None:
        self.consumer.close()


def prepare_topics(config: FlinkMarketConfig) -> None:
    """Create the market's topics; with `fresh`, delete those an earlier run left first."""
    from flink_bridge.stack.kafka_client import KafkaClient

    kafka = KafkaClient(config.bootstrap_servers)
    names = market_topics(config)
    if config.fresh:
        left = sorted(set(names) & kafka.list_topics())
        if left:
            kafka.delete_topics(left)
            deadline = time.monotonic() + 60
            while set(left) & kafka.list_topics():
                if time.monotonic() > deadline:
                    raise UserError(f"topics {left!r} are still being deleted; try again")
                time.sleep(0.5)
    deadline = time.monotonic() + 60
    while True:
        try:
            registries = {registry_topic("Trader"), registry_topic("NewsDesk")}
            kafka.create_topics([n for n in names if n not in registries])
            kafka.create_topics(  # the key registries are compacted (as apply() makes them)
                sorted(registries), config={"cleanup.policy": "compact"}
            )
            break
        except Exception as exc:  # a topic still marked for deletion: retry
            if time.monotonic() > deadline:
                raise UserError(f"cannot create the market topics {names!r}: {exc}") from exc
            time.sleep(1.0)


def _produce(config: FlinkMarketConfig, envelopes: list[Envelope]) -> None:
    from flink_bridge.stack.kafka_client import KafkaClient

    kafka = KafkaClient(config.bootstrap_servers)
    by_topic: dict[str, list[tuple[str, bytes]]] = {}
    for e in envelopes:
        by_topic.setdefault(inbox_topic(e.recipient.agent_type), []).append(  # type: ignore[union-attr]
            (str(e.recipient), encode_envelope(e))
        )
    for topic, records in by_topic.items():
        kafka.produce(topic, records)


# -- the job ----------------------------------------------------------------------------------


def build_job(env: Any, config: FlinkMarketConfig) -> None:
    """The three agent types on one environment, each reading its inbox (plus its subscribed
    topics, which ``apply`` adds), writing outputs to the output topic and messages to inboxes."""
    from flink_bridge.runtime import AgentRuntime

    bootstrap = config.bootstrap_servers
    common = {
        "bootstrap_servers": bootstrap,
        "format": "envelope",
        "dead_letter_topic": config.dead_letter_topic,
    }
    for workflow in (Exchange(), Trader(), NewsDesk()):
        name = type(workflow).__name__
        runtime = AgentRuntime.from_kafka(
            env, [inbox_topic(name)], group_id=f"market-{name}", **common
        ).apply(workflow, effects="in-process")
        runtime.to_kafka(config.output_topic, bootstrap_servers=bootstrap, format="envelope")


def run_flink(config: FlinkMarketConfig, *, log: Any = print) -> MarketRun:
    """Run the market as one Flink job; returns the final reports and the exchange's ledger."""
    from flink_bridge.environment import RuntimeConfig, create_environment
    from flink_bridge.stack.kafka_client import KafkaClient

    started = time.monotonic()
    deadline = started + config.timeout_s
    run = MarketRun()

    def mark(name: str) -> None:
        run.marks[name] = time.monotonic() - started
        log(f"[{run.marks[name]:6.1f} s] {name.removesuffix('_s')}")

    def left() -> float:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the market run took longer than {config.timeout_s} s")
        status = str(client.get_job_status().result())
        if status in ("FAILED", "CANCELED", "FINISHED"):
            raise RuntimeError(f"the market job is {status}; see the Flink log above")
        return deadline - time.monotonic()

    prepare_topics(config)
    joins = population_joins(config)
    subscriber_keys = {
        t: [j.recipient.key for j in joins if j.recipient.agent_type == t]  # type: ignore[union-attr]
        for t in ("Trader", "NewsDesk")
    }
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=config.checkpoint_interval_ms))
    build_job(env, config)
    client = env.execute_async("market-sim")
    mark("submitted_s")
    outputs = _Tail(config.bootstrap_servers, config.output_topic)
    try:
        _produce(config, joins)
        # Broadcast prices reach registered keys only: wait until each type's fan-out has
        # read every subscriber's key.
        kafka = KafkaClient(config.bootstrap_servers)
        for agent_type, keys in subscriber_keys.items():
            group = f"market-{agent_type}"
            if not wait_until_registered(
                kafka, agent_type, group, keys, timeout_s=left(), still_running=left
            ):
                raise TimeoutError(f"the {agent_type} keys were not registered in time")
        mark("registered_s")
        opening = Open(tick_s=config.tick_s, rounds=config.rounds)
        _produce(config, [Envelope.wrap(opening, recipient=AgentAddress.parse(EXCHANGE))])
        mark("open_s")
        time.sleep(min(config.rounds * config.tick_s, left()))
        addresses = [str(j.recipient) for j in joins]
        while not run.quiet and left():
            run.report_rounds += 1
            n = run.report_rounds
            asks = [
                Envelope.wrap(Report(round=n), recipient=AgentAddress.parse(a)) for a in addresses
            ]
            _produce(config, asks)
            reports: dict[str, dict[str, Any]] = {}
            shown = time.monotonic()
            while len(reports) < len(addresses) and left():
                if time.monotonic() - shown > 15:
                    shown = time.monotonic()
                    log(f"report round {n}: {len(reports)}/{len(addresses)} reports so far")
                for record in outputs.poll(0.5):
                    envelope = decode_envelope(record.value())
                    body = envelope.payload.output  # type: ignore[union-attr]
                    if body["kind"] == "fill":
                        run.ledger.append(body)
                    elif body["round"] == n:
                        reports[str(envelope.sender)] = body
            run.reports = reports
            run.quiet = is_quiet(run, config)
            progress = run.summary()
            log(
                f"report round {n}: {len(reports)} reports, ticks {_tick(run)}/{config.rounds}, "
                f"fills {len(run.ledger)}, quiet {run.quiet}: {progress['messages']}"
            )
            if not run.quiet:
                time.sleep(min(2.0, left()))
        mark("quiet_s")
    finally:
        outputs.close()
        client.cancel().result()
        mark("cancelled_s")
    return run


def _tick(run: MarketRun) -> int | None:
    exchange = run.of_kind("exchange")
    return exchange[0]["tick"] if exchange else None


def is_quiet(run: MarketRun, config: FlinkMarketConfig) -> bool:
    """Nothing more can happen: the last tick is out and every message has arrived."""
    exchange = next(iter(run.of_kind("exchange")), None)
    if exchange is None or len(run.reports) < config.agents:
        return False
    traders, desks = run.of_kind("trader"), run.of_kind("desk")
    prices = config.rounds + 1
    return (
        exchange["tick"] == config.rounds
        and all(r["prices"] == prices and r["pending"] is None for r in traders)
        and all(r["prices"] == prices for r in desks)
        and sum(r["tips"] for r in traders) == sum(r["tips"] for r in desks)
        and sum(r["orders"] for r in traders) == exchange["fills"] == len(run.ledger)
    )


def print_summary(run: MarketRun) -> None:
    summary = run.summary()
    for name, count in summary["messages"].items():
        print(f"  {name:<20} {count:>9}")
    exchange = run.of_kind("exchange")
    if exchange:
        price = exchange[0]["price"]
        pnl = sorted(
            (
                (round(r["cash"] + r["position"] * price - 10_000.0, 2), r["key"])
                for r in run.of_kind("trader")
            ),
            reverse=True,
        )
        print(f"final price {price}, volume {exchange[0]['volume']}, fills {len(run.ledger)}")
        print(f"best traders {pnl[:3]}, worst {pnl[-3:]}")
    print("MARKET_FLINK " + json.dumps(summary))
