"""The bench's own Kafka clients: a producer that stamps inputs and a read_committed collector
that stamps each output's arrival, so latency is produce -> committed output, wall clock."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench._runtime import workload as wl

__all__ = ["Collector", "PhaseResult", "produce_burst", "produce_paced"]


@dataclass
class PhaseResult:
    """What one phase measured. `rate` is turns/s from its first produce to its last output."""

    phase: str
    sent: int
    received: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    bad: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def line(self) -> str:
        return (
            f"{self.phase}: {self.received}/{self.sent} committed in {self.seconds:.2f} s = "
            f"{self.rate:,.0f} turns/s; produce->committed p50 {self.p50_ms:.0f} ms, "
            f"p99 {self.p99_ms:.0f} ms; duplicates {self.duplicates}, bad {self.bad}"
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Collector:
    """Reads the output topic read_committed on a thread; keeps (n -> arrival) per phase."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "client.dns.lookup": "use_all_dns_ips",
                "fetch.wait.max.ms": 10,
            }
        )
        self._consumer.subscribe([topic])
        self._lock = threading.Lock()
        self._arrived: dict[str, dict[int, tuple[float, dict[str, Any]]]] = defaultdict(dict)
        self._duplicates: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(num_messages=1000, timeout=0.05):
                now = time.time()
                if msg.error():
                    continue
                record = json.loads(msg.value())
                with self._lock:
                    seen = self._arrived[record["phase"]]
                    if record["n"] in seen:
                        self._duplicates[record["phase"]] += 1
                    else:
                        seen[record["n"]] = (now, record)

    def count(self, phase: str) -> int:
        with self._lock:
            return len(self._arrived.get(phase, {}))

    def wait_for(self, phase: str, expected: int, timeout_s: float, alive: Any = None) -> bool:
        """Wait until `expected` outputs of `phase` arrived; False on timeout or a dead job."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.count(phase) >= expected:
                return True
            if alive is not None and not alive():
                return False
            time.sleep(0.02)
        return self.count(phase) >= expected

    def result(self, phase: str, sent: int, first_produce: float) -> PhaseResult:
        with self._lock:
            arrived = dict(self._arrived.get(phase, {}))
            dups = self._duplicates.get(phase, 0)
        res = PhaseResult(phase=phase, sent=sent, received=len(arrived), duplicates=dups)
        if not arrived:
            return res
        res.latencies_ms = [(at - rec["t"]) * 1000.0 for at, rec in arrived.values()]
        res.bad = sum(
            1
            for _, rec in arrived.values()
            if rec["tool"] != wl.lookup(rec["key"]) or rec["answer"] != f"lookup {rec['key']}"
        )
        last = max(at for at, _ in arrived.values())
        res.seconds = max(1e-9, last - first_produce)
        res.rate = res.received / res.seconds
        res.p50_ms = _percentile(res.latencies_ms, 0.50)
        res.p99_ms = _percentile(res.latencies_ms, 0.99)
        return res

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


def _producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 2,
            "acks": "all",
            "client.dns.lookup": "use_all_dns_ips",
        }
    )


def produce_burst(
    bootstrap: str, topic: str, *, phase: str, count: int, keys: int, latency_ms: int, start: int
) -> float:
    """Produce `count` inputs as fast as the client goes; returns the first produce time."""
    producer = _producer(bootstrap)
    first = time.time()
    for i in range(count):
        record = wl.make_input(
            start + i, keys=keys, phase=phase, latency_ms=latency_ms, t=time.time()
        )
        producer.produce(topic, json.dumps(record, separators=(",", ":")))
        if i % 1000 == 999:
            producer.poll(0)
    producer.flush(30)
    return first


def produce_paced(
    bootstrap: str,
    topic: str,
    *,
    phase: str,
    rate: float,
    seconds: float,
    keys: int,
    latency_ms: int,
    start: int,
) -> tuple[float, int]:
    """Produce at `rate` inputs/s for `seconds`; returns (first produce time, inputs sent)."""
    producer = _producer(bootstrap)
    total = max(1, int(rate * seconds))
    first = time.time()
    for i in range(total):
        due = first + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        record = wl.make_input(
            start + i, keys=keys, phase=phase, latency_ms=latency_ms, t=time.time()
        )
        producer.produce(topic, json.dumps(record, separators=(",", ":")))
        producer.poll(0)
    producer.flush(30)
    return first, total


def _jit_cpu_s(pid: int) -> float:
    """CPU seconds the JVM `pid`'s JIT compiler threads (C1, C2) have used so far."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                if "CompilerThre" not in comm.read():
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:  # a compiler thread that went away
            continue
    return total / tick


def warm_broker(
    bootstrap: str,
    topic: str,
    *,
    broker_pid: int | None,
    max_seconds: float,
    quiet_share: float = 0.05,
) -> tuple[float, float]:
    """Run the broker's hot paths until its JIT compiler goes quiet, before either side is timed.

    A fresh broker's C1/C2 compiler threads took 44% of its CPU during the timed bursts, and the
    side that ran first (the baseline) met the colder broker. This drives what both jobs make
    the broker do, request by request: small transactions (the exactly-once sink commits every
    checkpoint, with a few records per produce request) and read_committed fetches (both
    sources and the collector), in 2 s windows until the compiler threads used less than
    `quiet_share` of a core in one, or `max_seconds` pass (about 40 s here). Measured after it:
    the jobs' own traffic still sets the compiler off (about half of the broker's CPU in the
    bursts: the Java clients take other paths), so this evens the start, it does not remove
    the JIT from the figures. Returns (seconds spent, compiler share in the last window).
    """
    from confluent_kafka import Consumer, Producer

    started = time.monotonic()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bench-warmup-{uuid.uuid4().hex[:8]}",
            "linger.ms": 1,
            "client.dns.lookup": "use_all_dns_ips",
        }
    )
    producer.init_transactions(30)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-warmup-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,
            "client.dns.lookup": "use_all_dns_ips",
        }
    )
    consumer.subscribe([topic])
    payload = b"x" * 160  # about one bench input
    share = 1.0
    try:
        while time.monotonic() - started < max_seconds:
            window_start = time.monotonic()
            jit_before = _jit_cpu_s(broker_pid) if broker_pid else 0.0
            while time.monotonic() - window_start < 2.0:
                producer.begin_transaction()
                for _ in range(20):
                    producer.produce(topic, payload)
                    producer.poll(0)
                producer.commit_transaction(30)
                consumer.consume(num_messages=500, timeout=0.001)
            if broker_pid is None:
                continue
            share = (_jit_cpu_s(broker_pid) - jit_before) / (time.monotonic() - window_start)
            if share < quiet_share:
                break
    finally:
        consumer.close()
    return time.monotonic() - started, share
