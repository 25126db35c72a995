"""`flink-actors demo`: a sample application on the embedded stack, end to end.

The CLI starts what is missing (Kafka, Ray, the local model); the app writes its sample input to
fresh topics, runs as a Flink job, and prints each result as the exactly-once sink commits it
(read_committed), then stops. `run_app_demo` picks the app: ``fraud`` (the default:
examples/fraud_detection.py), ``triage`` (examples/support_triage.py, several agent types
over Kafka with MCP tools), or ``support`` (examples/support_desk.py, below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flink_bridge.stack.config import StackConfig
from flink_bridge.stack.kafka_client import KafkaClient

__all__ = ["APPS", "SAMPLE_TICKETS", "DemoJob", "run_app_demo", "run_demo"]

SAMPLE_TICKETS = [
    ("alice", "Where is my order 1001?"),
    ("bob", "Has order 1002 shipped yet?"),
    ("carol", "What is the status of order 1003?"),
    ("alice", "And order 1004, was it cancelled?"),
    ("dave", "Can you check order 1001 for me?"),
    ("bob", "Any news on order 1002?"),
]

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = EXAMPLES_DIR / "support_desk.py"
APPS = {"fraud": "fraud_detection.py", "triage": "support_triage.py", "support": "support_desk.py"}


class DemoJob:
    """A demo's Flink job in a child process, its output going to a log file.

    Not to a pipe: the JVM can print more than a pipe holds (64 KiB) while the demo is busy
    reading results, and a child blocked on a full pipe stalls the job until the timeout.
    """

    def __init__(self, argv: list[str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and example
                argv, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, timeout_s: float = 120.0) -> int:
        """Wait for the job to end (kill it after `timeout_s`); its exit code."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tail(self, chars: int = 4000) -> str:
        """The end of the job's output, for a failure report."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-chars:].decode("utf-8", "replace")

    def report_failure(self, console: Console, what: str) -> None:
        """Print the job's last output and its exit code (call when it failed)."""
        console.print(self.tail(), highlight=False, markup=False)
        console.print(
            f"[red]the {what} job failed with exit code {self.proc.returncode}[/] "
            f"(whole log: {self.log_path})"
        )


def demo_log_path(config: StackConfig, app: str, run: str) -> Path:
    """Where a demo job's output goes: the stack's state dir, one file per run."""
    return Path(config.state_dir) / "logs" / f"demo-{app}-{run}.log"


def run_app_demo(
    app: str, config: StackConfig, *, console: Console, timeout_s: float = 900.0
) -> int:
    """Run one sample app's demo against a running stack; returns how many results it printed."""
    if app not in APPS:
        from protocols.errors import UserError

        raise UserError(f"unknown demo app {app!r}; choose one of {sorted(APPS)!r}")
    if app == "support":
        return run_demo(config, console=console, timeout_s=timeout_s)
    import importlib.util

    path = EXAMPLES_DIR / APPS[app]
    spec = importlib.util.spec_from_file_location(f"flink_actors_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return int(module.run_demo(config, console=console, timeout_s=timeout_s))


def run_demo(config: StackConfig, *, console: Console, timeout_s: float = 900.0) -> int:
    """Run the demo against a running stack; returns the number of answers printed."""
    kafka = KafkaClient(config.kafka_bootstrap)
    run = uuid.uuid4().hex[:6]
    source, sink = f"demo.tickets.{run}", f"demo.answers.{run}"
    kafka.create_topics([source, sink], partitions=1)
    tickets = [
        json.dumps({"key": who, "ticket": i, "text": text})
        for i, (who, text) in enumerate(SAMPLE_TICKETS)
    ]
    kafka.produce(source, tickets)
    console.print(f"[bold]produced[/] {len(tickets)} tickets to [cyan]{source}[/]")
    started = time.monotonic()
    argv = [sys.executable, str(EXAMPLE), "--bootstrap", config.kafka_bootstrap]
    job = DemoJob(
        [*argv, "--source", source, "--sink", sink], demo_log_path(config, "support", run)
    )
    table = Table(title="answers (committed, read_committed)")
    for column in ("customer", "ticket", "tickets so far", "tokens", "answer"):
        table.add_column(column)
    seen = 0
    follower = _follow(config.kafka_bootstrap, sink)
    with console.status("running the support-desk job on Flink..."):
        while seen < len(tickets) and time.monotonic() - started < timeout_s:
            for value in _poll(follower, 2.0):
                answer = json.loads(value)
                seen += 1
                console.print(
                    f"[green]{time.monotonic() - started:6.1f}s[/] "
                    f"[bold]{answer['customer']}[/] #{answer['ticket']}: {answer['answer']!r}"
                )
                table.add_row(
                    answer["customer"],
                    str(answer["ticket"]),
                    str(answer["tickets_so_far"]),
                    str(answer["tokens"]),
                    str(answer["answer"]),
                )
            if job.poll() is not None and seen < len(tickets):
                seen += len(_poll(follower, 5.0))  # what it committed last
                break
    follower.close()
    if job.stop() != 0 and seen < len(tickets):
        job.report_failure(console, "support-desk")
    console.print(table)
    console.print(
        f"{seen}/{len(tickets)} answers in {time.monotonic() - started:.1f}s "
        f"(topics {source} -> {sink})"
    )
    return seen


def _follow(bootstrap: str, topic: str) -> Any:
    """A consumer that sees each committed record of `topic` once, as it commits."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"flink-actors-demo-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def _poll(consumer: Any, timeout_s: float) -> list[bytes]:
    values = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        values.append(message.value())
    return values
