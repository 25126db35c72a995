"""Customer-support triage: a router agent and specialist ReAct agents talking over Kafka.

Tickets arrive as `Ticket` envelopes addressed to ``Router/<customer>``. The flow, all in one
Flink job, every hop an envelope through Kafka (inbox topic per agent type, keyed by address,
exactly once)::

    tickets --> Router/<customer> --ctx.send--> Billing | Shipping | Tech /<customer>
                                                    |-- Answer      --> answers topic
                                                    '-- Escalation  --> human-review topic

* **Router** classifies by keywords; only a ticket the keywords cannot place goes to the model
  (``ctx.chat``), whose one-word answer is read strictly; anything else goes to Tech. It also
  spots angry customers (words, ``!!``, shouting) and extracts the order number.
* **Billing, Shipping, Tech** are ReAct agents over the order desk's MCP server
  (examples/mcp_servers/orders_server.py: orders, invoices, shipments, known issues). Each
  first looks up the facts its job needs with deterministic MCP calls (``ctx.call_tool``), then
  asks its model, which may call more MCP tools, for a short note to the customer.
* The answer is built from the tool results (so it is right whatever the model says) plus the
  model's note. The specialist escalates to the human-review topic when it is not confident
  (the lookup failed or found nothing) or the customer is angry; the customer still gets exactly
  one answer, saying a colleague will follow up.

The model is the local SmolLM2 server of ``flink-actors up --model`` unless
FLINK_ACTORS_MODEL_URL names an OpenAI-compatible endpoint. One command on a running stack::

    python examples/support_triage.py --bootstrap 127.0.0.1:9092 --produce 10

The job is unbounded (the inboxes form a graph); it stops itself once every ticket it waits
for (the produced ones, or ``--count`` new answers) has its committed answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from actors import RunnerContext, Workflow, mcp_server, model, step
from protocols import AgentAddress, Envelope, TopicAddress, decode_envelope, message
from protocols.errors import ModelError, ToolError
from protocols.events import Event

__all__ = [
    "SAMPLE_TICKETS",
    "SPECIALISTS",
    "Answer",
    "Assignment",
    "Billing",
    "Escalation",
    "Router",
    "Shipping",
    "Specialist",
    "Tech",
    "Ticket",
    "build_job",
    "classify",
    "detect_anger",
    "main",
    "run_demo",
    "sample_tickets",
]

EXAMPLE = Path(__file__).resolve()
ORDERS_SERVER = EXAMPLE.parent / "mcp_servers" / "orders_server.py"

CONFIDENT = 0.6
"""A specialist below this confidence escalates to human review."""

# -- messages -------------------------------------------------------------------------------


@message("triage.Ticket")
class Ticket(Event):
    """A customer's ticket, to ``Router/<customer>``."""

    ticket_id: str
    customer: str
    text: str


@message("triage.Assignment")
class Assignment(Event):
    """A routed ticket, from the Router to ``<Specialist>/<customer>``."""

    ticket_id: str
    customer: str
    text: str
    order_id: str | None = None
    category: str
    routed_by: str  # "keywords" | "model" | "default"
    angry: bool = False
    anger_signals: list[str] = Field(default_factory=list)


@message("triage.Answer")
class Answer(BaseModel):
    """The one answer a ticket gets, on the answers topic."""

    ticket_id: str
    customer: str
    agent: str
    routed_by: str
    answer: str
    facts: list[dict[str, Any]] = Field(default_factory=list)
    model_note: str | None = None
    confidence: float
    escalated: bool


@message("triage.Escalation")
class Escalation(BaseModel):
    """A ticket handed to a person, on the human-review topic."""

    ticket_id: str
    customer: str
    agent: str
    reasons: list[str]
    text: str
    draft_answer: str


# -- rules ----------------------------------------------------------------------------------

KEYWORDS: dict[str, frozenset[str]] = {
    "billing": frozenset(
        [
            "invoice",
            "charged",
            "charge",
            "refund",
            "payment",
            "paid",
            "bill",
            "billing",
            "price",
            "overcharged",
        ]
    ),
    "shipping": frozenset(
        [
            "where",
            "arrived",
            "arrive",
            "delivery",
            "delivered",
            "shipping",
            "shipped",
            "package",
            "parcel",
            "tracking",
            "late",
            "came",
        ]
    ),
    "tech": frozenset(
        [
            "app",
            "crash",
            "crashes",
            "login",
            "password",
            "reset",
            "error",
            "bug",
            "wifi",
            "router",
            "update",
            "install",
        ]
    ),
}
TEAMS = {"billing": "Billing", "shipping": "Shipping", "tech": "Tech"}
ANGRY_WORDS = frozenset(
    [
        "unacceptable",
        "furious",
        "angry",
        "worst",
        "ridiculous",
        "terrible",
        "lawyer",
        "scam",
        "outrageous",
    ]
)
_WORDS = re.compile(r"[a-z]+")
_ORDER = re.compile(r"\b(\d{4})\b")

ROUTER_PROMPT = (
    "You sort customer support tickets into teams. The teams are billing (invoices, refunds, "
    "charges), shipping (deliveries, parcels) and tech (apps, logins, devices). "
    "Answer with one word: billing, shipping or tech."
)


def classify(text: str) -> tuple[str | None, list[str]]:
    """The team whose keywords the ticket matches most (None on a tie or no match)."""
    words = set(_WORDS.findall(text.lower()))
    hits = {team: sorted(words & kws) for team, kws in KEYWORDS.items()}
    best = max(len(h) for h in hits.values())
    winners = [team for team, h in hits.items() if len(h) == best]
    if best == 0 or len(winners) > 1:
        return None, []
    return winners[0], hits[winners[0]]


def parse_team(text: str) -> str | None:
    """The one team a model's answer names, or None when it names none or several."""
    named = {team for team in KEYWORDS if re.search(rf"\b{team}\b", text.lower())}
    return named.pop() if len(named) == 1 else None


def detect_anger(text: str) -> list[str]:
    """Signals that the customer is angry (empty: calm)."""
    signals = sorted(ANGRY_WORDS & set(_WORDS.findall(text.lower())))
    if "!!" in text:
        signals.append("'!!'")
    shouted = [w for w in re.findall(r"\b[A-Z]{4,}\b", text)]
    if shouted:
        signals.append(f"shouting {shouted[0]!r}")
    return signals


def order_number(text: str) -> str | None:
    found = _ORDER.search(text)
    return found.group(1) if found else None


# -- agents ---------------------------------------------------------------------------------


class RouterState(BaseModel):
    routed: int = 0
    by_team: dict[str, int] = Field(default_factory=dict)


class Router(Workflow):
    """Classifies each ticket (keywords, then the model for the unclear ones) and sends it to
    the customer's agent of the chosen team."""

    state_type = RouterState

    @model
    @staticmethod
    def router_model() -> Any:
        from actors.models.local import default_chat_model

        return default_chat_model(prompt=ROUTER_PROMPT)

    @step(Ticket)
    def on_ticket(self, event: Ticket, state: RouterState, ctx: RunnerContext) -> None:
        team, _matched = classify(event.text)
        routed_by = "keywords"
        if team is None:
            routed_by = "model"
            try:
                reply = ctx.chat(
                    "router_model", [f"Ticket: {event.text}\nWhich team?"], max_iterations=2
                )
                team = parse_team(reply.content or "")
            except ModelError:
                team = None
        if team is None:
            team, routed_by = "tech", "default"
        signals = detect_anger(event.text)
        state.routed += 1
        state.by_team[team] = state.by_team.get(team, 0) + 1
        ctx.send(
            AgentAddress(TEAMS[team], event.customer),
            Assignment(
                ticket_id=event.ticket_id,
                customer=event.customer,
                text=event.text,
                order_id=order_number(event.text),
                category=team,
                routed_by=routed_by,
                angry=bool(signals),
                anger_signals=signals,
            ),
        )


class SpecialistState(BaseModel):
    handled: int = 0
    escalated: int = 0
    tickets: list[str] = Field(default_factory=list)


class Specialist(Workflow):
    """A ReAct agent over the order desk's MCP server; subclasses say which facts they need.

    Args:
        answers_topic: where answers go (a Kafka topic, through ``TopicAddress``).
        review_topic: where escalations go.
    """

    state_type = SpecialistState
    prompt: ClassVar[str] = ""

    def __init__(
        self, answers_topic: str = "triage.answers", review_topic: str = "human-review"
    ) -> None:
        self.answers_topic = answers_topic
        self.review_topic = review_topic
        super().__init__()

    @mcp_server
    @staticmethod
    def orders() -> Any:
        from actors.mcp import MCPServerStdio

        return MCPServerStdio(
            sys.executable, [str(ORDERS_SERVER)], timeout_s=30.0, start_timeout_s=120.0
        )

    @model
    def specialist_model(self) -> Any:
        from actors.models.local import default_chat_model

        return default_chat_model(prompt=self.prompt, mcp_servers=["orders"])

    def gather(self, task: Assignment, ctx: RunnerContext) -> list[dict[str, Any]]:
        """The deterministic MCP lookups this specialist needs (override)."""
        raise NotImplementedError

    def summarize(self, facts: list[dict[str, Any]]) -> str | None:
        """One sentence from the facts, or None when they answer nothing (override)."""
        raise NotImplementedError

    def lookup(
        self, ctx: RunnerContext, tool: str, facts: list[dict[str, Any]], **arguments: Any
    ) -> Any:
        """Call an MCP tool of the order desk; record the result (or the error) in `facts`."""
        try:
            result = ctx.call_tool(f"orders/{tool}", **arguments)
        except ToolError as exc:
            facts.append({"tool": tool, "arguments": arguments, "error": str(exc)})
            return None
        facts.append({"tool": tool, "arguments": arguments, "result": result})
        return result

    def newest_order(self, task: Assignment, ctx: RunnerContext, facts: list[dict]) -> str | None:
        if task.order_id:
            return task.order_id
        orders = self.lookup(ctx, "list_orders", facts, customer=task.customer) or []
        return str(orders[0]["order_id"]) if orders else None

    @step(Assignment)
    def on_assignment(self, event: Assignment, state: SpecialistState, ctx: RunnerContext) -> None:
        facts = self.gather(event, ctx)
        summary = self.summarize(facts)
        note = self.ask_model(event, facts, ctx)
        reasons = []
        confidence = 0.9 if summary else 0.3
        if summary is None:
            errors = [f["error"] for f in facts if "error" in f]
            reasons.append(f"no answer from the order desk: {errors[0] if errors else 'no match'}")
        if event.angry:
            reasons.append(f"angry customer ({', '.join(event.anger_signals)})")
        escalate = confidence < CONFIDENT or event.angry
        draft = summary or "I could not find the details of your request."
        if escalate:
            text = f"Thank you, I have passed ticket {event.ticket_id} to a colleague who will "
            text += f"get back to you personally. What I found so far: {draft}"
        else:
            text = draft
        if note:
            text += f"\n{note}"
        state.handled += 1
        state.tickets = [*state.tickets, event.ticket_id][-20:]  # the latest, for a look
        agent = ctx.address.agent_type
        if escalate:
            state.escalated += 1
            ctx.send(
                TopicAddress(self.review_topic),
                Escalation(
                    ticket_id=event.ticket_id,
                    customer=event.customer,
                    agent=agent,
                    reasons=reasons,
                    text=event.text,
                    draft_answer=draft,
                ),
            )
        # Typed envelopes to topics, not outputs: an output is pickled between Flink
        # operators, and a class defined in a job's __main__ does not unpickle there.
        ctx.send(
            TopicAddress(self.answers_topic),
            Answer(
                ticket_id=event.ticket_id,
                customer=event.customer,
                agent=agent,
                routed_by=event.routed_by,
                answer=text,
                facts=facts,
                model_note=note,
                confidence=confidence,
                escalated=escalate,
            ),
        )

    def ask_model(
        self, task: Assignment, facts: list[dict[str, Any]], ctx: RunnerContext
    ) -> str | None:
        """A short note to the customer; None when the model fails (the facts still answer)."""
        known = json.dumps([{k: f[k] for k in f if k != "arguments"} for f in facts])
        question = (
            f"Customer {task.customer} wrote: {task.text}\n"
            f"Order number: {task.order_id or 'unknown'}. What the order desk says: {known}\n"
            "Write one short, friendly sentence to the customer."
        )
        try:
            reply = ctx.chat("specialist_model", [question], max_iterations=4)
        except ModelError:
            return None
        return (reply.content or "").strip() or None


class Billing(Specialist):
    prompt = (
        "You are the billing specialist of an online shop. Use get_invoice to check an "
        "order's invoice, then answer the customer in one short sentence."
    )

    def gather(self, task: Assignment, ctx: RunnerContext) -> list[dict[str, Any]]:
        facts: list[dict[str, Any]] = []
        order = self.newest_order(task, ctx, facts)
        if order is not None:
            self.lookup(ctx, "get_invoice", facts, order_id=order)
        return facts

    def summarize(self, facts: list[dict[str, Any]]) -> str | None:
        invoice = next(
            (f["result"] for f in facts if f["tool"] == "get_invoice" and "result" in f), None
        )
        if invoice is None:
            return None
        paid = "paid" if invoice["paid"] else "not paid yet"
        refund = "" if invoice["refund"] == "none" else f"; refund {invoice['refund']}"
        return (
            f"Invoice {invoice['invoice']} for order {invoice['order_id']}: "
            f"{invoice['amount']:.2f}, {paid}{refund}."
        )


class Shipping(Specialist):
    prompt = (
        "You are the shipping specialist of an online shop. Use track_shipment to check "
        "where an order is, then answer the customer in one short sentence."
    )

    def gather(self, task: Assignment, ctx: RunnerContext) -> list[dict[str, Any]]:
        facts: list[dict[str, Any]] = []
        order = self.newest_order(task, ctx, facts)
        if order is not None:
            self.lookup(ctx, "track_shipment", facts, order_id=order)
        return facts

    def summarize(self, facts: list[dict[str, Any]]) -> str | None:
        track = next(
            (f["result"] for f in facts if f["tool"] == "track_shipment" and "result" in f), None
        )
        if track is None:
            return None
        if not track.get("carrier"):
            return f"Order {track['order_id']} has not shipped: {track['status']}."
        return (
            f"Order {track['order_id']} is {track['status']} with {track['carrier']} "
            f"(tracking {track['tracking']}), last scan: {track['last_scan']}, "
            f"expected {track['eta']}."
        )


class Tech(Specialist):
    prompt = (
        "You are the technical support specialist of an online shop. Use "
        "search_known_issues to find the fix, then answer the customer in one short sentence."
    )

    def gather(self, task: Assignment, ctx: RunnerContext) -> list[dict[str, Any]]:
        facts: list[dict[str, Any]] = []
        self.lookup(ctx, "search_known_issues", facts, query=task.text)
        return facts

    def summarize(self, facts: list[dict[str, Any]]) -> str | None:
        issues = next(
            (f["result"] for f in facts if f["tool"] == "search_known_issues" and "result" in f),
            None,
        )
        if not issues:
            return None
        top = issues[0]
        return f"This is known issue {top['id']} ({top['title']}): {top['fix']}."


SPECIALISTS: tuple[type[Specialist], ...] = (Billing, Shipping, Tech)

# -- sample input ---------------------------------------------------------------------------

SAMPLE_TICKETS: list[tuple[str, str, str]] = [
    ("T01", "alice", "Where is my order 1001? It still has not arrived."),
    ("T02", "dave", "I was charged for order 1004 but it was cancelled, where is my refund?"),
    ("T03", "carol", "The app crashes on start after the update"),
    ("T04", "bob", "This is UNACCEPTABLE!!! My order 1002 is late again, worst service ever"),
    ("T05", "erin", "Please send me a copy of the invoice for order 1005"),
    ("T06", "frank", "I have a question about order 1006"),
    ("T07", "gina", "My package for order 9999 never came"),
    ("T08", "alice", "Login fails after I reset my password"),
    ("T09", "hank", "Hello, something is odd with my account"),
    ("T10", "carol", "Refund for order 1003 please, the headphones broke"),
]


def sample_tickets(n: int, run_id: str) -> list[Ticket]:
    """`n` sample tickets (the list above, cycled), ids ``<run_id>-T01`` ..."""
    out = []
    for i in range(n):
        rnd, index = divmod(i, len(SAMPLE_TICKETS))
        tid, customer, text = SAMPLE_TICKETS[index]
        suffix = "" if rnd == 0 else f"-r{rnd}"
        out.append(Ticket(ticket_id=f"{run_id}-{tid}{suffix}", customer=customer, text=text))
    return out


def ticket_records(tickets: list[Ticket]) -> list[tuple[str, bytes]]:
    """Kafka (key, value) pairs: each ticket as an envelope to ``Router/<customer>``."""
    from protocols import encode_envelope

    envelopes = [Envelope.wrap(t, recipient=AgentAddress("Router", t.customer)) for t in tickets]
    return [(str(e.recipient), encode_envelope(e)) for e in envelopes]


# -- the job --------------------------------------------------------------------------------


def build_job(
    env: Any,
    *,
    bootstrap: str,
    tickets: str,
    answers: str,
    review: str,
    dead_letters: str,
    effects: str = "ray",
    group_prefix: str = "triage",
) -> None:
    """Add the router and the specialists to `env`, wired through their inbox topics."""
    from flink_bridge.runtime import AgentRuntime
    from flink_bridge.topics import inbox_topic

    common: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "format": "envelope",
        "start_from": "committed",  # a rerun resumes, never re-answers old inbox messages
    }
    router = AgentRuntime.from_kafka(
        env, tickets, group_id=f"{group_prefix}-router", dead_letter_topic=dead_letters, **common
    ).apply(Router(), effects=effects)
    router.to_agents(bootstrap_servers=bootstrap)
    for cls in SPECIALISTS:
        name = cls.__name__
        specialist = AgentRuntime.from_kafka(
            env,
            inbox_topic(name),
            group_id=f"{group_prefix}-{name.lower()}",
            dead_letter_topic=None,  # internal traffic: dead letters are logged, not written
            **common,
        ).apply(cls(answers_topic=answers, review_topic=review), effects=effects)
        # Answers and escalations are ctx.send to topic:<answers> / topic:<review>: one
        # transactional sink writes each to its topic.
        specialist.to_agents(bootstrap_servers=bootstrap)


def read_payloads(bootstrap: str, topic: str, timeout: float = 3.0) -> list[Any]:
    """The committed envelopes' payloads of `topic`, oldest first."""
    from flink_bridge.stack.kafka_client import KafkaClient

    records = KafkaClient(bootstrap).consume(topic, 100_000, timeout=timeout)
    payloads = []
    for record in records:
        envelope = decode_envelope(record.value or b"")
        if isinstance(envelope, Envelope):
            payloads.append(envelope.payload)
    return payloads


def answers_of(payloads: list[Any]) -> list[Answer]:
    """The `Answer`s among envelope payloads."""
    return [p for p in payloads if isinstance(p, Answer)]


def print_answers(answers: list[Answer], *, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"answers ({len(answers)}, read_committed)")
    for column in ("ticket", "customer", "agent", "routed by", "conf.", "escalated", "answer"):
        table.add_column(column)
    for a in answers:
        table.add_row(
            a.ticket_id,
            a.customer,
            a.agent,
            a.routed_by,
            f"{a.confidence:.1f}",
            "[red]yes[/]" if a.escalated else "no",
            a.answer,
        )
    console.print(table)


def _job_ended(client: Any) -> bool:
    """Whether the job reached a terminal state (a failed job ends the wait at once)."""
    try:
        return bool(client.get_job_status().result().is_globally_terminal_state())
    except Exception:  # noqa: BLE001 - a mini cluster that is gone: the job has ended
        return True


def main(argv: list[str] | None = None) -> int:
    """Command line: optionally produce tickets, run the job until they are answered."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--tickets", default="triage.tickets", help="ticket envelopes topic")
    parser.add_argument("--answers", default="triage.answers", help="answers topic (envelopes)")
    parser.add_argument("--review", default="human-review", help="escalations topic (envelopes)")
    parser.add_argument("--dead-letters", default="triage.dead-letters")
    parser.add_argument(
        "--produce", type=int, default=0, metavar="N", help="first write N sample tickets"
    )
    parser.add_argument(
        "--count", type=int, default=0, help="without --produce: stop after this many new answers"
    )
    parser.add_argument("--run-id", default=uuid.uuid4().hex[:6], help="prefix of ticket ids")
    parser.add_argument("--effects", choices=["ray", "in-process"], default="ray")
    parser.add_argument("--group-prefix", default="triage", help="Kafka consumer groups prefix")
    parser.add_argument("--timeout", type=float, default=420.0, help="give up after (s)")
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument("--quiet", action="store_true", help="no summary table")
    args = parser.parse_args(argv)
    if not args.produce and not args.count:
        parser.error("pass --produce N (sample tickets) or --count N (answers to wait for)")

    from flink_bridge.environment import RuntimeConfig, create_environment
    from flink_bridge.topics import create_agent_topics

    bs = args.bootstrap
    create_agent_topics(
        bs,
        [cls.__name__ for cls in SPECIALISTS],
        extra_topics=[args.tickets, args.answers, args.review, args.dead_letters],
    )
    already = {a.ticket_id for a in answers_of(read_payloads(bs, args.answers, timeout=2.0))}
    expected: set[str] = set()
    if args.produce:
        from flink_bridge.stack.kafka_client import KafkaClient

        tickets = sample_tickets(args.produce, args.run_id)
        expected = {t.ticket_id for t in tickets}
        KafkaClient(bs).produce(args.tickets, ticket_records(tickets))
        print(f"produced {len(tickets)} tickets to {args.tickets!r}", flush=True)
    env = create_environment(RuntimeConfig(checkpoint_interval_ms=args.checkpoint_ms))
    build_job(
        env,
        bootstrap=bs,
        tickets=args.tickets,
        answers=args.answers,
        review=args.review,
        dead_letters=args.dead_letters,
        effects=args.effects,
        group_prefix=args.group_prefix,
    )
    began = time.monotonic()
    client = env.execute_async("support-triage")
    done: dict[str, Answer] = {}
    try:
        while time.monotonic() - began < args.timeout:
            for a in answers_of(read_payloads(bs, args.answers)):
                if a.ticket_id in already or a.ticket_id in done:
                    continue
                if expected and a.ticket_id not in expected:
                    continue
                done[a.ticket_id] = a
                flag = " ESCALATED" if a.escalated else ""
                print(
                    f"{time.monotonic() - began:6.1f}s {a.ticket_id} -> {a.agent} "
                    f"({a.routed_by}){flag}: {a.answer.splitlines()[0]}",
                    flush=True,
                )
            if len(done) >= (len(expected) if expected else args.count):
                time.sleep(3.0)  # a few more checkpoints: what else is committed shows up
                break
            if _job_ended(client):
                client.get_job_execution_result().result()  # raises the job's failure
                break
            time.sleep(1.0)
    finally:
        if not _job_ended(client):
            client.cancel().result()
    escalations = [
        e
        for e in read_payloads(bs, args.review)
        if isinstance(e, Escalation) and e.ticket_id in done
    ]
    wanted = len(expected) if expected else args.count
    print(
        f"TRIAGE_DONE answers={len(done)}/{wanted} escalations={len(escalations)} "
        f"seconds={time.monotonic() - began:.1f}",
        flush=True,
    )
    if not args.quiet:
        print_answers(sorted(done.values(), key=lambda a: a.ticket_id))
    return 0 if len(done) >= wanted else 1


def run_demo(config: Any, *, console: Any, timeout_s: float = 900.0) -> int:
    """`flink-actors demo --app triage`: sample tickets on fresh topics, the job as a
    subprocess (its progress lines shown as they come), then the committed answers; returns
    the number of answers."""
    run = uuid.uuid4().hex[:6]
    answers = f"demo.triage.answers.{run}"
    cmd = [
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        config.kafka_bootstrap,
        "--quiet",
        "--tickets",
        f"demo.triage.tickets.{run}",
        "--answers",
        answers,
        "--review",
        f"demo.triage.human-review.{run}",
        "--produce",
        str(len(SAMPLE_TICKETS)),
        "--run-id",
        run,
        "--group-prefix",
        "triage-demo",
        "--timeout",
        str(timeout_s),
    ]
    console.print(f"[bold]running[/] the support-triage job (tickets {run}-T01 ...)")
    job = subprocess.Popen(
        cmd, env=dict(os.environ), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    tail: list[str] = []
    assert job.stdout is not None
    for line in job.stdout:  # progress lines; the JVM's own output only if the job fails
        tail = [*tail, line][-60:]
        if re.match(r"\s*[\d.]+s |produced |TRIAGE_DONE", line):
            console.print(line.rstrip(), highlight=False, markup=False)
    job.wait()
    done = [
        a
        for a in answers_of(read_payloads(config.kafka_bootstrap, answers))
        if a.ticket_id.startswith(f"{run}-")
    ]
    if job.returncode != 0 and len(done) < len(SAMPLE_TICKETS):
        console.print("".join(tail), highlight=False, markup=False)
        console.print(f"[red]the triage job exited with code {job.returncode}[/]")
    print_answers(sorted(done, key=lambda a: a.ticket_id), console=console)
    return len(done)


if __name__ == "__main__":
    sys.exit(main())
