"""A market simulation: traders, news desks and one exchange, exchanging messages.

    python examples/market_sim.py --agents 1000 --sim-seconds 5          # in-process
    python examples/market_sim.py --runtime flink --agents 1000 --rounds 5 \\
        --bootstrap 127.0.0.1:9092                                        # one Flink job

The same three workflows run in both: in-process on the deterministic simulation harness
(simulated time, ``actors.simulation``), or as one Flink job over Kafka (the embedded stack;
``examples/market_sim_flink.py`` and docs/examples.md say how).

- The **exchange** (``Exchange/ACME``) publishes a `Price` to the topic ``prices`` every tick
  (a ``ctx.schedule`` timer in simulated time), fills the orders traders send it with
  ``ctx.ask`` by answering with ``ctx.reply(Fill(...))``, and moves the price with the order
  flow.
- **Traders** subscribe to ``prices`` (a broadcast subscription: every trader gets every tick)
  and to ``tips`` keyed by the ``trader`` field (each tip reaches one trader). On a tick a
  trader may ask the exchange for an order; the `AskReply` updates its cash and position, an
  `AskTimeout` (the exchange is slow when many orders queue up) is counted.
- **News desks** subscribe to ``prices`` too and ask a model whether the market is bullish or
  bearish (a zero-latency `FunctionModel` stands in for an LLM here; pass a `ModelCassette` to
  record a real one), then publish a `Tip` for a few traders.

Each agent's randomness comes from a seed in its state (set by the population seed), so two
runs with the same ``--seed`` print the same figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":
    # Run the importable module instead of this file's __main__ copy: the message classes and
    # workflows get one home (``examples.market_sim``) that a Flink worker can import too.
    from examples.market_sim import main as _main

    sys.exit(_main())

from actors import Event, InputEvent, RunnerContext, Workflow, model, step  # noqa: E402
from actors.messaging import Subscription  # noqa: E402
from actors.simulation import (  # noqa: E402
    AgentGroup,
    ModelCassette,
    Population,
    Simulation,
    SimulationResult,
)
from actors.testing import FunctionModel  # noqa: E402
from protocols import message  # noqa: E402
from protocols.events import AskReply, AskTimeout, ChatMessage, OutputEvent  # noqa: E402

SYMBOL = "ACME"
EXCHANGE = f"Exchange/{SYMBOL}"


# -- messages ----------------------------------------------------------------------------------


@message("market.Price")
class Price(Event):
    symbol: str
    price: float
    tick: int


@message("market.Order")
class Order(Event):
    trader: str
    side: int  # +1 buy, -1 sell
    qty: int


@message("market.Fill")
class Fill(Event):
    trader: str
    side: int
    qty: int
    price: float


@message("market.Tip")
class Tip(Event):
    trader: str
    view: int  # +1 bullish, -1 bearish


class Tick(Event):
    """The exchange's own timer."""


@message("market.Join")
class Join(Event):
    """An agent's initial state, sent as its first message where no harness sets it (Flink).

    Its turn is the agent's first completed turn, which registers a subscriber's key for the
    broadcast topic ``prices``.
    """

    state: dict[str, Any]


@message("market.Report")
class Report(Event):
    """Asks an agent for its figures: answered with one output (Flink; the simulation reads
    the state directly). ``round`` tells a driver's successive asks apart."""

    round: int


def join(state: BaseModel, event: Join) -> None:
    """Set the fields a `Join` names (unknown names are a mistake: raise)."""
    for name, value in event.state.items():
        if name not in type(state).model_fields:
            raise ValueError(f"{type(state).__name__} has no field {name!r}")
        setattr(state, name, value)


def report(kind: str, state: BaseModel, ctx: RunnerContext, event: Report) -> None:
    body = {"kind": kind, "key": ctx.address.key, "round": event.round}
    ctx.send_event(OutputEvent({**body, **state.model_dump(mode="json")}))


def draw(state: Any) -> float:
    """A deterministic uniform [0, 1) from the agent's seed and draw counter (splitmix64)."""
    state.draws += 1
    z = (state.seed * 0x9E3779B97F4A7C15 + state.draws * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


# -- the exchange ------------------------------------------------------------------------------


class ExchangeState(BaseModel):
    seed: int = 0
    draws: int = 0
    price: float = 100.0
    tick: int = 0
    tick_s: float = 0.1
    net_flow: int = 0
    volume: int = 0
    fills: int = 0
    rounds: int = -1  # the last tick; -1: tick for ever (the simulation stops the clock)
    ledger: bool = False  # one output per fill (Flink: the driver checks traders against it)


class Exchange(Workflow):
    state_type = ExchangeState

    @step
    def open(event: InputEvent, state: ExchangeState, ctx: RunnerContext) -> None:
        state.tick_s = float(event.input["tick_s"])
        state.rounds = int(event.input.get("rounds", -1))
        state.ledger = bool(event.input.get("ledger", False))
        ctx.publish("prices", Price(symbol=SYMBOL, price=state.price, tick=state.tick))
        ctx.schedule(state.tick_s, Tick())

    @step
    def on_tick(event: Tick, state: ExchangeState, ctx: RunnerContext) -> None:
        state.tick += 1
        impact = 0.02 * state.net_flow + 0.5 * (draw(state) - 0.5)
        state.price = round(max(1.0, state.price + impact), 4)
        state.net_flow = 0
        ctx.publish("prices", Price(symbol=SYMBOL, price=state.price, tick=state.tick))
        if state.rounds < 0 or state.tick < state.rounds:
            ctx.schedule(state.tick_s, Tick())

    @step
    def on_order(event: Order, state: ExchangeState, ctx: RunnerContext) -> None:
        spread = 0.01 * state.price
        state.net_flow += event.side * event.qty
        state.volume += event.qty
        state.fills += 1
        fill_price = round(state.price + event.side * spread, 4)
        fill = Fill(trader=event.trader, side=event.side, qty=event.qty, price=fill_price)
        ctx.reply(fill)
        if state.ledger:
            ctx.send_event(OutputEvent({"kind": "fill", "n": state.fills, **fill.model_dump()}))

    @step
    def on_join(event: Join, state: ExchangeState, ctx: RunnerContext) -> None:
        join(state, event)

    @step
    def on_report(event: Report, state: ExchangeState, ctx: RunnerContext) -> None:
        report("exchange", state, ctx, event)


# -- traders -----------------------------------------------------------------------------------


class TraderState(BaseModel):
    seed: int = 0
    draws: int = 0
    cash: float = 10_000.0
    position: int = 0
    appetite: float = 0.1  # probability of trading on a tick
    last_price: float = 0.0
    view: int = 0
    pending: str | None = None
    orders: int = 0
    fills: int = 0
    timeouts: int = 0
    ask_timeout_s: float = 0.5
    prices: int = 0  # prices received
    tips: int = 0  # tips received


class Trader(Workflow):
    state_type = TraderState
    subscriptions = [Subscription("prices"), Subscription("tips", key="trader")]

    @step
    def on_price(event: Price, state: TraderState, ctx: RunnerContext) -> None:
        momentum = 0 if not state.last_price else (1 if event.price > state.last_price else -1)
        state.last_price = event.price
        state.prices += 1
        if state.pending is not None or draw(state) >= state.appetite:
            return
        signal = momentum + 2 * state.view + (1 if draw(state) < 0.5 else -1)
        side = 1 if signal > 0 or (signal == 0 and state.position <= 0) else -1
        if side < 0 and state.position <= 0:
            side = 1 if state.cash > event.price else -1
        qty = 1 + int(draw(state) * 5)
        order = Order(trader=ctx.address.key, side=side, qty=qty)
        state.pending = ctx.ask(EXCHANGE, order, timeout_s=state.ask_timeout_s)
        state.orders += 1

    @step
    def on_fill(event: AskReply, state: TraderState, ctx: RunnerContext) -> None:
        if event.correlation_id != state.pending:
            return
        fill = event.parse(Fill)
        state.position += fill.side * fill.qty
        state.cash = round(state.cash - fill.side * fill.qty * fill.price, 4)
        state.fills += 1
        state.pending = None

    @step
    def on_timeout(event: AskTimeout, state: TraderState, ctx: RunnerContext) -> None:
        if event.correlation_id == state.pending:
            state.timeouts += 1
            state.pending = None

    @step
    def on_tip(event: Tip, state: TraderState, ctx: RunnerContext) -> None:
        state.view = event.view
        state.tips += 1

    @step
    def on_join(event: Join, state: TraderState, ctx: RunnerContext) -> None:
        join(state, event)

    @step
    def on_report(event: Report, state: TraderState, ctx: RunnerContext) -> None:
        report("trader", state, ctx, event)


# -- news desks (a model in the loop) ----------------------------------------------------------


def analyst(messages: list[ChatMessage], tools: list[Any]) -> str:
    """A zero-latency stand-in for an LLM: bullish when the price rose."""
    text = messages[-1].content or ""
    now, before = (float(x) for x in text.split("now ")[1].split(", before "))
    return "bullish" if now >= before else "bearish"


class DeskState(BaseModel):
    seed: int = 0
    draws: int = 0
    last_price: float = 0.0
    traders: int = 1
    tips: int = 0
    prices: int = 0  # prices received


class NewsDesk(Workflow):
    state_type = DeskState
    subscriptions = [Subscription("prices")]

    @model
    @staticmethod
    def llm() -> FunctionModel:
        return FunctionModel(analyst, prompt="You are a markets analyst. Answer in one word.")

    @step
    def on_price(event: Price, state: DeskState, ctx: RunnerContext) -> None:
        before = state.last_price or event.price
        state.last_price = event.price
        state.prices += 1
        if event.tick % 5:
            return  # an opinion every fifth tick
        prompt = f"{event.symbol}: now {event.price}, before {before}"
        answer = ctx.chat("llm", [prompt]).content or ""
        view = 1 if "bull" in answer else -1
        for _ in range(3):
            trader = f"t{int(draw(state) * state.traders):06d}"
            ctx.publish("tips", Tip(trader=trader, view=view))
            state.tips += 1

    @step
    def on_join(event: Join, state: DeskState, ctx: RunnerContext) -> None:
        join(state, event)

    @step
    def on_report(event: Report, state: DeskState, ctx: RunnerContext) -> None:
        report("desk", state, ctx, event)


# -- the population ----------------------------------------------------------------------------


def build_population(agents: int, *, seed: int = 7, tick_s: float = 0.1) -> Population:
    """``agents`` agents: one exchange, one news desk per 250 traders, traders for the rest."""
    if agents < 3:
        raise SystemExit("--agents must be at least 3 (an exchange, a desk and a trader)")
    desks = max(1, agents // 250)
    traders = agents - 1 - desks

    def trader_state(key: str, rng: Any) -> TraderState:
        return TraderState(seed=rng.getrandbits(32), appetite=round(rng.uniform(0.02, 0.2), 3))

    def desk_state(key: str, rng: Any) -> DeskState:
        return DeskState(seed=rng.getrandbits(32), traders=traders)

    return Population(
        [
            AgentGroup(
                workflow=Exchange(),
                count=1,
                key_format=SYMBOL,
                init=lambda key, rng: ExchangeState(seed=rng.getrandbits(32)),
                start=lambda key, rng: {"tick_s": tick_s},
                report=lambda s: {"price": s.price, "volume": s.volume},
            ),
            AgentGroup(
                workflow=NewsDesk(),
                count=desks,
                key_format="desk{i}",
                init=desk_state,
                report=lambda s: {"tips": s.tips},
            ),
            AgentGroup(
                workflow=Trader(),
                count=traders,
                key_format="t{i:06d}",
                init=trader_state,
                report=lambda s: {
                    "cash": s.cash,
                    "position": s.position,
                    "orders": s.orders,
                    "timeouts": s.timeouts,
                },
            ),
        ],
        seed=seed,
    )


def run_market(
    agents: int,
    sim_seconds: float,
    *,
    seed: int = 7,
    tick_s: float = 0.1,
    cassette: ModelCassette | None = None,
) -> SimulationResult:
    """Build the population and run it for ``sim_seconds`` of simulated time."""
    sim = Simulation(
        build_population(agents, seed=seed, tick_s=tick_s),
        latency_s=0.002,
        jitter_s=0.003,
        cassette=cassette,
        keep_outputs=False,
    )
    return sim.run_sync(until_s=sim_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument(
        "--runtime",
        choices=("in-process", "flink"),
        default="in-process",
        help="in-process: the simulation harness (simulated time); flink: one Flink job over "
        "Kafka on the embedded stack (wall-clock time)",
    )
    parser.add_argument("--sim-seconds", type=float, default=5.0)
    parser.add_argument(
        "--tick-s", type=float, help="seconds between prices (default 0.1 simulated, 1.0 flink)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cassette", type=Path, help="record/replay the desks' model answers")
    parser.add_argument("--arrow", type=Path, help="write the per-agent table as Parquet")
    flink = parser.add_argument_group("--runtime flink")
    flink.add_argument("--rounds", type=int, default=5, help="price ticks after the opening one")
    flink.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local stack's)")
    flink.add_argument("--output-topic", default="market.outputs")
    flink.add_argument("--timeout-s", type=float, default=480.0, help="bound on the whole run")
    args = parser.parse_args(argv)
    if args.runtime == "flink":
        return _main_flink(args)
    args.tick_s = 0.1 if args.tick_s is None else args.tick_s
    cassette = ModelCassette(args.cassette, mode="auto") if args.cassette else None
    result = run_market(
        args.agents, args.sim_seconds, seed=args.seed, tick_s=args.tick_s, cassette=cassette
    )
    exchange = next(r for r in result.agents if r["agent_type"] == "Exchange")
    traders = [r for r in result.agents if r["agent_type"] == "Trader"]
    price = exchange["price"]
    pnl = sorted(
        ((round(r["cash"] + r["position"] * price - 10_000.0, 2), r["key"]) for r in traders),
        reverse=True,
    )
    print(f"simulated {result.summary['sim_time_s']:.2f} s in {result.wall_s:.2f} s wall time")
    for row in result.messages:
        print(f"  {row['kind']:<8} {row['message_type']:<24} {row['count']:>9}")
    print(f"final price {price}, volume {exchange['volume']}")
    print(f"best traders {pnl[:3]}, worst {pnl[-3:]}")
    if args.arrow:
        import pyarrow.parquet as pq

        pq.write_table(result.agents.to_arrow(), args.arrow)
    per_s = result.summary["messages_delivered"] / max(result.wall_s, 1e-9)
    print(
        json.dumps(
            {**result.summary, "wall_s": round(result.wall_s, 3), "messages_per_s": round(per_s)}
        )
    )
    return 0


def _main_flink(args: argparse.Namespace) -> int:
    """``--runtime flink``: the same workflows as one Flink job (examples/market_sim_flink.py)."""
    from examples.market_sim_flink import FlinkMarketConfig, print_summary, run_flink

    bootstrap = args.bootstrap
    if bootstrap is None:
        from flink_bridge.stack.config import load_config

        bootstrap = load_config().kafka_bootstrap
    config = FlinkMarketConfig(
        agents=args.agents,
        rounds=args.rounds,
        tick_s=1.0 if args.tick_s is None else args.tick_s,
        seed=args.seed,
        bootstrap_servers=bootstrap,
        output_topic=args.output_topic,
        timeout_s=args.timeout_s,
    )
    run = run_flink(config)
    print_summary(run)
    return 0 if run.quiet else 1


if __name__ == "__main__":
    sys.exit(main())
