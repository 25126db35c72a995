"""Failure tests of the agent runtime (issue 6, part 5), on the real stack.

Kafka -> agent (two model calls per input, on the scripted model server in its own process,
through the Ray pool; a per-key counter in state) -> Kafka, exactly-once, checkpoints every
500 ms, N = 1,000 inputs over 50 keys. In each scenario a failure hits mid-stream, and then:
every input has exactly one committed output (read_committed), every per-key counter is exact,
and no model call whose result was journaled was made again. Calls lost in flight (or answered
after the last checkpoint) are made again by design; they are counted, not forbidden.

(a) the TaskManager dies: SIGKILL of the job's process group (the mini-cluster's JVM), then a
    new job restores the last retained checkpoint;
(b) the Ray worker actors die (SIGKILL of their processes); Ray restarts them and the bridge
    resubmits the calls they held, the job runs on;
(c) the Kafka broker restarts (stop, 5 s down, start), the job recovers.

Each test prints ``FAILURE_FIGURES {...}`` (see `harness.Figures`); docs/recovery.md has the
measured values.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.flink.failure_jobs.harness import (
    Figures,
    InputTrickle,
    JobProcess,
    OutputReader,
    analyse,
    assert_exactly_once,
    latest_checkpoint,
    ranges,
    read_calls,
)
from tests.servers.fixtures import start_line_server

pytestmark = pytest.mark.integration

N = 1_000
KEYS = 50
WARMUP = 50  # inputs sent before the job is known to run; the rest trickle in
RATE_PER_S = 150.0
FAIL_AFTER = 300  # committed outputs before the failure
BALLAST = 16_384  # state bytes per input in the large-state scenario
JOB_START_S = 240.0  # a Flink job takes 25-60 s to start on this machine; more when loaded
SETTLE_S = 3.0  # after the last output, time for a duplicate to show up (6 checkpoints)


@pytest.fixture
def model_url() -> Iterator[str]:
    with start_line_server(
        ["-m", "tests.flink.failure_jobs.counting_model", "--port", "0", "--latency-ms", "20"],
        "SCRIPTED_OPENAI_URL ",
    ) as (url, _proc):
        yield url


class Scenario:
    """Topics, checkpoint dir, inputs and the processes of one failure scenario."""

    def __init__(
        self,
        name: str,
        kafka: Any,
        model_url: str,
        tmp_path: Path,
        effects: str,
        *,
        state_backend: str = "hashmap",
        ballast: int = 0,
    ) -> None:
        self.name = name
        self.effects = effects
        self.state_backend = state_backend
        self.kafka = kafka
        self.model_url = model_url
        self.tmp_path = tmp_path
        self.source, self.sink = f"fail-{name}-in", f"fail-{name}-out"
        kafka.create_topics([self.source, self.sink], partitions=1)
        self.checkpoints = tmp_path / "checkpoints"
        self.inputs: list[dict[str, Any]] = [{"key": f"k{n % KEYS}", "n": n} for n in range(N)]
        if ballast:
            for item in self.inputs:
                item["ballast"] = ballast
        self.trickle = InputTrickle(kafka.bootstrap_servers, self.source, self.inputs)
        self.reader = OutputReader(kafka.bootstrap_servers, self.sink)
        self.jobs: list[JobProcess] = []

    def start_job(self, restore: Path | None = None) -> JobProcess:
        args = [
            "--bootstrap",
            self.kafka.bootstrap_servers,
            "--source",
            self.source,
            "--sink",
            self.sink,
            "--model-url",
            self.model_url,
            "--checkpoint-dir",
            str(self.checkpoints),
            "--checkpoint-ms",
            "500",
            "--group",
            f"g-{self.name}",
            "--txn-prefix",
            f"fail-{self.name}",
            "--effects",
            self.effects,
            "--state-backend",
            self.state_backend,
        ]
        if restore is not None:
            args += ["--restore", str(restore)]
        job = JobProcess(args, self.tmp_path, f"job{len(self.jobs)}")
        self.jobs.append(job)
        return job

    def run_until_failure_point(self) -> JobProcess:
        """Start the job, warm it up, start the trickle, wait for FAIL_AFTER outputs."""
        job = self.start_job()
        self.trickle.send_now(WARMUP)
        self.reader.wait_for(lambda r: r.count() >= 1, JOB_START_S, job)
        self.trickle.start(WARMUP, RATE_PER_S)
        self.reader.wait_for(lambda r: r.count() >= FAIL_AFTER, 120, job)
        return job

    def finish(self, job: JobProcess, timeout_s: float = 150.0) -> list[tuple[float, Any]]:
        self.trickle.join()
        self.reader.wait_for(lambda r: r.distinct() >= N, timeout_s, job, self.explain_missing)
        time.sleep(SETTLE_S)
        return self.reader.close()

    def explain_missing(self) -> str:
        """Where the inputs without a committed output are: not in the input topic, in the
        output topic but not committed (an open transaction holds them back), or not there."""

        def numbers(topic: str, *, committed: bool) -> list[int]:
            # Up to 10 x N records (aborted ones count read_uncommitted), 10 s at most.
            records = self.kafka.consume(topic, 10 * N, timeout=10.0, read_committed=committed)
            return [int(json.loads(r.value)["n"]) for r in records]

        inputs = numbers(self.source, committed=False)
        written = numbers(self.sink, committed=False)
        visible = numbers(self.sink, committed=True)
        everything = set(range(N))
        return (
            f"input topic: {len(inputs)} records, missing n {ranges(everything - set(inputs))}; "
            f"output topic: {len(written)} records written, "
            f"{len(visible)} committed; written but not committed n "
            f"{ranges(set(written) - set(visible))}; not written n "
            f"{ranges(everything - set(written))}"
        )

    def close(self) -> None:
        for job in self.jobs:
            if job.alive():
                job.kill()
        self.reader.close()


@pytest.fixture
def scenario_factory(kafka: Any, model_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Scenario] = []

    def make(name: str, effects: str, **options: Any) -> Scenario:
        made.append(Scenario(name, kafka, model_url, tmp_path, effects, **options))
        return made[-1]

    yield make
    for scenario in made:
        scenario.close()


def report(figures: Figures) -> None:
    print("FAILURE_FIGURES", figures.as_json(), flush=True)
    path = os.environ.get("FLINK_ACTORS_FAILURE_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(figures.as_json() + "\n")


def effect_worker_pids(head_pid: int) -> list[int]:
    """Pids of the Ray `EffectWorker` actor processes under this session's Ray head."""
    import psutil

    pids = []
    for child in psutil.Process(head_pid).children(recursive=True):
        try:
            title = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if title.startswith("ray::EffectWorker"):
            pids.append(child.pid)
    return pids


def test_ray_worker_killed_mid_stream(scenario_factory: Any, ray_head: Any) -> None:
    """(b) The pool's worker processes die; Ray restarts them, the bridge resubmits."""
    s = scenario_factory("ray", "ray")
    job = s.run_until_failure_point()
    pids = effect_worker_pids(ray_head.pid)
    assert pids, "no EffectWorker process found under the Ray head"
    failure_at = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # Ray restarts the workers (seconds to a minute on a busy machine) before resubmission.
    records = s.finish(job, timeout_s=360.0)
    job.kill()
    figures = analyse(
        "ray-worker-kill", s.inputs, records, read_calls(s.model_url), failure_at=failure_at
    )
    figures.extra = {"killed_workers": len(pids), "restores": len(job.restores())}
    report(figures)
    assert_exactly_once(figures)
    # The job itself did not fail over: the worker loss stayed inside the bridge.
    assert job.restores() == []


def test_kafka_broker_restart_mid_stream(scenario_factory: Any, stack_config: Any) -> None:
    """(c) The broker stops for 5 s and comes back; the job recovers."""
    from flink_bridge.stack import kafka_broker

    s = scenario_factory("kafka", "in-process")
    job = s.run_until_failure_point()
    failure_at = time.time()
    kafka_broker.stop_kafka(stack_config)
    time.sleep(5.0)
    kafka_broker.start_kafka(stack_config)
    back_at = time.time()
    records = s.finish(job, timeout_s=240)
    job.kill()
    restores = job.restores()
    figures = analyse(
        "kafka-broker-restart",
        s.inputs,
        records,
        read_calls(s.model_url),
        failure_at=failure_at,
        restored_trigger_at=min((t for _, t in restores), default=None),
    )
    figures.extra = {
        "broker_down_s": round(back_at - failure_at, 1),
        "restores": [cid for cid, _ in restores],
    }
    report(figures)
    assert_exactly_once(figures)


@pytest.mark.parametrize(
    ("state_backend", "ballast"),
    [("hashmap", 0), ("rocksdb", BALLAST)],
    ids=["hashmap", "rocksdb-large-state"],
)
def test_taskmanager_killed_then_restored(
    scenario_factory: Any, state_backend: str, ballast: int
) -> None:
    """(a) SIGKILL of the job's process group; a new job restores the last checkpoint.

    Also on the RocksDB backend with large per-key state: every input grows its key's state by
    `BALLAST` characters (20 inputs per key: 320 KB per key, 16 MB over the 50 keys, written
    on every turn and in every checkpoint); each output's state size is checked too."""
    s = scenario_factory(
        f"tm-{state_backend}", "in-process", state_backend=state_backend, ballast=ballast
    )
    job = s.run_until_failure_point()
    failure_at = job.kill()
    checkpoint = latest_checkpoint(s.checkpoints)
    checkpoint_id = int(checkpoint.name.removeprefix("chk-"))
    trigger_at = job.checkpoint_triggers().get(checkpoint_id)
    committed_at_kill = s.reader.count()
    restarted = s.start_job(restore=checkpoint)
    records = s.finish(restarted, timeout_s=JOB_START_S + 120)
    restarted.kill()
    figures = analyse(
        "taskmanager-kill" if state_backend == "hashmap" else f"taskmanager-kill-{state_backend}",
        s.inputs,
        records,
        read_calls(s.model_url),
        failure_at=failure_at,
        restored_trigger_at=trigger_at,
    )
    figures.extra = {
        "restored_checkpoint": checkpoint_id,
        "state_backend": state_backend,
        "checkpoint_bytes": sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()),
        "kill_after_checkpoint_trigger_s": (
            round(failure_at - trigger_at, 2) if trigger_at is not None else None
        ),
        "committed_at_kill": committed_at_kill,
        "restart_to_first_output_s": round(
            min(at for at, _ in records if at > restarted.started_at) - restarted.started_at, 1
        ),
    }
    report(figures)
    assert trigger_at is not None, "the killed job's log names no trigger of the checkpoint"
    assert_exactly_once(figures)
