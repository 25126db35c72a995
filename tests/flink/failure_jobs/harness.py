"""What the failure tests share: the job process, an input trickle, a committed-output reader,
the scripted model's call log, and the analysis that turns them into figures.

The analysis never trusts the runtime's own counters. It reads:
- every committed output (read_committed), with the time it became visible;
- every call the model server answered (`counting_model`), with its number and times;
- the Flink log of each job process (checkpoint trigger times, restores).

Model calls are grouped by (stage, input) -- ``plan`` or ``answer`` of input ``n``. More than one
call in a group is a repeat. The committed output names the call whose answer it used
(``#call=<n>``), and each other call of the group is classified:

- ``journaled``: made *after* the call whose answer was kept, i.e. asked again although its
  result was already journaled in the lineage that committed. Contract 2 says never: must be 0.
- ``in_flight``: made before, and not answered when the failure happened: lost in flight.
- ``lost_completed``: made before and answered before the failure, but its result was not in
  the state the job went on from (answered after the last checkpoint; or, for a Ray worker
  kill, answered by the server while the result was still on its way back through the dead
  worker). Expected by design; counted separately.
- ``checkpointed``: a ``lost_completed`` call answered well before the trigger of the
  checkpoint the job restored (so its result was journaled in that checkpoint) and still asked
  again. Must be 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
CALL_RE = re.compile(r"#call=(\d+)")
TEXT_RE = re.compile(r"^(plan|answer) (\S+) (\d+)")
TRIGGER_RE = re.compile(r"Triggering checkpoint (\d+) .*@ (\d+) for job")
RESTORE_RE = re.compile(r"Restoring job \S+ from (?:Checkpoint|Savepoint) (\d+) @ (\d+)")
# Slack between a call's answer leaving the server and its result being journaled (Ray hop,
# bridge queue, the operator's 5 ms poll timer) on a loaded 2-core machine.
JOURNAL_SLACK_S = 2.0


class JobProcess:
    """`tests.flink.failure_jobs.model_job` in its own process group (the mini-cluster's JVM is
    its child, so a SIGKILL of the group kills the TaskManager with it)."""

    def __init__(self, args: list[str], log_dir: Path, name: str) -> None:
        self.log_dir = log_dir / name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / "stdout.log"
        env = dict(os.environ)
        env["FLINK_LOG_DIR"] = str(self.log_dir)
        env["PYTHONUNBUFFERED"] = "1"
        self._out = self.stdout_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.flink.failure_jobs.model_job", *args],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at = time.time()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> float:
        """SIGKILL the whole process group; returns the time of the kill."""
        at = time.time()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()
        return at

    def tail(self, chars: int = 4000) -> str:
        text = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        for log in sorted(self.log_dir.glob("flink-*.log")):
            lines = [
                ln
                for ln in log.read_text(errors="replace").splitlines()
                if "ERROR" in ln or "Exception" in ln
            ]
            text += "\n".join(lines[-40:])
        return text[-chars:]

    def flink_log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("flink-*.log"))
        )

    def checkpoint_triggers(self) -> dict[int, float]:
        """Checkpoint id -> trigger time (s), from this job's Flink log."""
        return {int(m[1]): int(m[2]) / 1000.0 for m in TRIGGER_RE.finditer(self.flink_log())}

    def restores(self) -> list[tuple[int, float]]:
        """(checkpoint id, its trigger time in s) of each restore this job made."""
        return [(int(m[1]), int(m[2]) / 1000.0) for m in RESTORE_RE.finditer(self.flink_log())]


def latest_checkpoint(checkpoint_dir: Path) -> Path:
    """The newest complete ``chk-N`` directory (one with ``_metadata``) under `checkpoint_dir`."""
    found = [p.parent for p in checkpoint_dir.glob("*/chk-*/_metadata")]
    if not found:
        raise AssertionError(f"no completed checkpoint under {str(checkpoint_dir)!r}")
    return max(found, key=lambda p: int(p.name.removeprefix("chk-")))


class OutputReader:
    """Reads the sink topic with read_committed from the beginning, on a thread; keeps each
    record with the time it became visible.

    The partition is assigned, not subscribed: a consumer group with no committed offset
    rewinds to the beginning when its coordinator moves (a broker restart does that), which
    would read every output twice. Offsets already seen are skipped for the same reason, so
    two records with the same input here are two records in the topic.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.records: list[tuple[float, dict[str, Any]]] = []
        self._offsets: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"failure-reader-{uuid.uuid4().hex[:10]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._thread = threading.Thread(target=self._run, name="output-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            where = (msg.partition(), msg.offset())
            if where in self._offsets:
                continue
            self._offsets.add(where)
            record = json.loads(msg.value())
            with self._lock:
                self.records.append((time.time(), record))

    def count(self) -> int:
        with self._lock:
            return len(self.records)

    def distinct(self) -> int:
        with self._lock:
            return len({r["n"] for _, r in self.records})

    def wait_for(
        self,
        predicate: Any,
        timeout_s: float,
        job: JobProcess | None = None,
        explain: Any = None,
    ) -> None:
        """Wait until `predicate(self)`; on a timeout, the error has the job's log tail and what
        `explain()` says (where the missing records are)."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            if job is not None and not job.alive():
                raise AssertionError(f"the job exited early:\n{job.tail()}")
            if time.monotonic() > deadline:
                tail = job.tail() if job is not None else ""
                try:
                    why = explain() if explain is not None else ""
                except Exception as exc:  # the timeout is the finding; keep its message
                    why = f"(could not say where the missing records are: {exc!r})"
                raise AssertionError(
                    f"timed out after {timeout_s:.0f}s with {self.count()} outputs "
                    f"({self.distinct()} distinct)\n{why}\n{tail}"
                )
            time.sleep(0.2)

    def close(self) -> list[tuple[float, dict[str, Any]]]:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)
            self._consumer.close()
        with self._lock:
            return list(self.records)


def ranges(numbers: set[int]) -> str:
    """``1-3,7`` for {1, 2, 3, 7} (the first 20 runs)."""
    runs: list[str] = []
    for n in sorted(numbers):
        if runs and runs[-1].split("-")[-1] == str(n - 1):
            runs[-1] = f"{runs[-1].split('-')[0]}-{n}"
        else:
            runs.append(str(n))
    return ",".join(runs[:20]) + (" ..." if len(runs) > 20 else "")


class InputTrickle:
    """Produces the inputs on a thread at `rate_per_s` (librdkafka buffers and retries through
    a broker restart); `first` inputs go out at once."""

    def __init__(self, bootstrap: str, topic: str, inputs: list[dict[str, Any]]) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.inputs = inputs
        self.sent = 0
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self, start: int, rate_per_s: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(start, rate_per_s), name="input-trickle", daemon=True
        )
        self._thread.start()

    def send_now(self, count: int) -> None:
        self._produce(self.inputs[:count], rate_per_s=0.0)
        self.sent = count

    def _run(self, start: int, rate_per_s: float) -> None:
        try:
            self._produce(self.inputs[start:], rate_per_s)
        except Exception as exc:  # reported by join()
            self.error = repr(exc)

    def _produce(self, records: list[dict[str, Any]], rate_per_s: float) -> None:
        from confluent_kafka import Producer

        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True}
        )
        failures: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        t0 = time.monotonic()
        for i, record in enumerate(records):
            if rate_per_s > 0:
                delay = t0 + i / rate_per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.produce(self.topic, value=json.dumps(record), on_delivery=on_delivery)
            producer.poll(0)
            self.sent += 1
        left = producer.flush(120)
        if left or failures:
            raise AssertionError(f"{left} inputs not delivered; errors {failures[:3]!r}")

    def join(self, timeout_s: float = 150.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.error:
            raise AssertionError(f"producing inputs failed: {self.error}")


def read_calls(model_url: str) -> list[dict[str, Any]]:
    root = model_url.removesuffix("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/calls", timeout=30) as response:
        return list(json.loads(response.read()))


@dataclass
class Figures:
    """What one failure scenario measured (the test prints it as one JSON line)."""

    scenario: str
    inputs: int
    outputs: int
    distinct_outputs: int
    duplicates: int
    missing: int
    counter_errors: int
    model_calls: int
    repeats: int
    repeats_journaled: int
    repeats_checkpointed: int
    repeats_in_flight: int
    repeats_lost_completed: int
    repeated_stages: dict[str, int] = field(default_factory=dict)
    failure_to_next_output_s: float | None = None
    failure_to_affected_done_s: float | None = None
    failure_to_last_output_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def analyse(
    scenario: str,
    inputs: list[dict[str, Any]],
    records: list[tuple[float, dict[str, Any]]],
    calls: list[dict[str, Any]],
    *,
    failure_at: float,
    restored_trigger_at: float | None = None,
) -> Figures:
    """Check every output against its input, and classify every repeated model call."""
    by_n: dict[int, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for at, record in records:
        by_n[int(record["n"])].append((at, record))
    expected_rank: dict[int, int] = {}
    expected_ballast: dict[int, int] = {}
    ranks: dict[str, int] = defaultdict(int)
    ballast: dict[str, int] = defaultdict(int)
    for item in inputs:  # one partition: per-key order is input order
        ranks[item["key"]] += 1
        ballast[item["key"]] += int(item.get("ballast", 0))
        expected_rank[item["n"]] = ranks[item["key"]]
        expected_ballast[item["n"]] = ballast[item["key"]]
    duplicates = sum(len(v) - 1 for v in by_n.values() if len(v) > 1)
    missing = sum(1 for item in inputs if item["n"] not in by_n)
    counter_errors = sum(
        1
        for n, outs in by_n.items()
        for _, out in outs
        if out["count"] != expected_rank.get(n)
        or out["key"] != f"k{n % 50}"
        or out.get("ballast", 0) != expected_ballast.get(n)
    )
    used: dict[tuple[str, int], int] = {}
    visible_at: dict[int, float] = {}
    for n, outs in by_n.items():
        at, out = outs[0]
        visible_at[n] = at
        used[("plan", n)] = int(CALL_RE.findall(out["plan"])[-1])
        used[("answer", n)] = int(CALL_RE.findall(out["answer"])[-1])
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        m = TEXT_RE.match(call["text"])
        if m:
            groups[(m[1], int(m[3]))].append(call)
    kinds: dict[str, int] = defaultdict(int)
    stages: dict[str, int] = defaultdict(int)
    affected: set[int] = set()
    for group_key, group in groups.items():
        if len(group) < 2:
            continue
        stages[group_key[0]] += len(group) - 1
        affected.add(group_key[1])
        kept = used.get(group_key)
        for call in group:
            if call["n"] == kept:
                continue
            if kept is not None and call["n"] > kept:
                kinds["journaled"] += 1
            elif call.get("end") is not None and call["end"] <= failure_at:
                kinds["lost_completed"] += 1
                if (
                    restored_trigger_at is not None
                    and call["end"] < restored_trigger_at - JOURNAL_SLACK_S
                    and group_key[0] == "plan"
                ):
                    kinds["checkpointed"] += 1
            else:
                kinds["in_flight"] += 1
    after = sorted(at for at, _ in records if at > failure_at)
    affected_done = [visible_at[n] for n in affected if n in visible_at]
    return Figures(
        scenario=scenario,
        inputs=len(inputs),
        outputs=len(records),
        distinct_outputs=len(by_n),
        duplicates=duplicates,
        missing=missing,
        counter_errors=counter_errors,
        model_calls=len(calls),
        repeats=sum(len(g) - 1 for g in groups.values() if len(g) > 1),
        repeats_journaled=kinds["journaled"],
        repeats_checkpointed=kinds["checkpointed"],
        repeats_in_flight=kinds["in_flight"],
        repeats_lost_completed=kinds["lost_completed"],
        repeated_stages=dict(stages),
        failure_to_next_output_s=round(after[0] - failure_at, 2) if after else None,
        failure_to_affected_done_s=(
            round(max(affected_done) - failure_at, 2) if affected_done else None
        ),
        failure_to_last_output_s=round(after[-1] - failure_at, 2) if after else None,
    )


def assert_exactly_once(figures: Figures) -> None:
    """The claims of contract 2 and 3 for one scenario."""
    assert figures.missing == 0, figures.as_json()
    assert figures.duplicates == 0, figures.as_json()
    assert figures.distinct_outputs == figures.inputs, figures.as_json()
    assert figures.counter_errors == 0, figures.as_json()
    assert figures.repeats_journaled == 0, figures.as_json()
    assert figures.repeats_checkpointed == 0, figures.as_json()
    # Every call is accounted for: one kept per (stage, input), the rest classified.
    assert figures.model_calls == 2 * figures.inputs + figures.repeats, figures.as_json()
