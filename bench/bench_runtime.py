"""Benchmark of the runtime: Kafka -> agent (one model call + one tool call) -> Kafka, against
apache/flink-agents 0.2.0 running the same pipeline in the same run.

Both sides: a Kafka source read_committed, the agent keyed by ``key`` (1,000 keys by default),
a transactional (EXACTLY_ONCE) Kafka sink, checkpoints every `--checkpoint-ms`, parallelism 1,
and the same number of calls in flight (`--in-flight`: our `max_in_flight`, flink-agents'
``num-async-threads``). The model is scripted and in-process on both sides (no HTTP): ours is a
`ChatModel` awaiting ``asyncio.sleep`` in a Ray worker, the baseline's a `BaseChatModelSetup`
calling ``time.sleep`` on flink-agents' async thread pool. The tool is a dict lookup, a durable
(journaled) call on both sides: ours runs it inside the turn (``@tool(inline=True)``; with
`--ours-tool pool`, on the Ray pool like the model), the baseline on its async thread pool
(``durable_execute_async``). Each input names its model latency,
so one job per side serves every phase (see bench/_runtime/workload.py).

Each side's job runs as a subprocess in its own venv (ours: this interpreter; the baseline:
`--baseline-python`, a venv with ``flink-agents==0.2.0 apache-flink==2.2.1``). Per side:
1. warm-up: a few inputs, waited for (job start-up, Ray workers, first checkpoints), then
   `--warmup-inputs` more at 0 ms, waited for too, so that the JVM's JIT compiler has done
   most of its work (on 2 cores it takes a sizeable share of the CPU for the first minutes);
2. burst at 0 ms, then at 50 ms: `--inputs` inputs produced at once; committed turns/s is
   inputs / (last committed output's arrival - first produce);
3. paced at 50 ms: `--paced-rate` inputs/s for `--paced-seconds`; p50/p99 produce -> committed
   output (a read_committed consumer stamps arrivals; outputs commit at checkpoints, so the
   checkpoint interval is part of every latency).

The bench starts its own Kafka broker and Ray head (temp state dir, free loopback ports; Ray only
for our side) and stops them at the end. Needs Java 17 and the connector jars
(`flink-actors jars`, fetched on first use).

Run: python bench/bench_runtime.py [--inputs 6000] [--baseline-python /path/to/python]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._runtime.kafka_io import (  # noqa: E402
    Collector,
    PhaseResult,
    produce_burst,
    produce_paced,
    warm_broker,
)

DEFAULT_BASELINE_PYTHON = "/work/venvs/benchrt/bin/python"
WARMUP_INPUTS = 20  # the first inputs: the job is up when their outputs are committed


def log(message: str) -> None:
    print(message, flush=True)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports from the kernel's ephemeral range (above Ray's 10002-19999
    worker range)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


class Stack:
    """Our own Kafka broker and Ray head, in a temp state dir; stopped by `close`."""

    def __init__(self) -> None:
        from flink_bridge.stack.config import StackConfig

        # Short path: Ray's unix sockets live under the state dir and must stay < 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="fa-bench-", dir="/tmp"))
        ports = _free_ports(6)
        self.config = StackConfig(
            state_dir=self.root,
            kafka_port=ports[0],
            kafka_controller_port=ports[1],
            ray_port=ports[2],
            ray_client_port=ports[3],
            flink_rest_port=ports[4],
            flink_rpc_port=ports[5],
            model_port=_free_ports(1)[0],
            ray_num_cpus=2,
            startup_timeout_s=300.0,
            stop_timeout_s=20.0,
        )
        self.kafka_up = False
        self.ray_up = False

    @property
    def bootstrap(self) -> str:
        return self.config.kafka_bootstrap

    def start_kafka(self) -> None:
        from flink_bridge.stack import jars, kafka_broker

        jars.ensure_jars()
        self.kafka_up = True
        kafka_broker.start_kafka(self.config)

    def start_ray(self) -> dict[str, str]:
        from flink_bridge.stack import ray_head

        self.ray_up = True
        ray_head.start_ray(self.config)
        return ray_head.connect_env(self.config)

    def broker_pid(self) -> int | None:
        import psutil

        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "kafka.Kafka" in cmd and str(self.root) in cmd:
                return int(proc.pid)
        return None

    def create_topics(self, names: list[str]) -> None:
        from flink_bridge.stack.kafka_client import KafkaClient

        KafkaClient(self.bootstrap).create_topics(names, partitions=1)

    def close(self, keep: bool) -> None:
        from flink_bridge.stack import kafka_broker, ray_head

        if self.ray_up:
            ray_head.stop_ray(self.config)
        if self.kafka_up:
            kafka_broker.stop_kafka(self.config)
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class SideReport:
    side: str
    phases: dict[str, PhaseResult]
    error: str | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    timed_s: float = 0.0

    def rate(self, phase: str) -> float | None:
        res = self.phases.get(phase)
        return round(res.rate, 1) if res and res.received == res.sent else None


class Job:
    """One side's Flink job, a subprocess in its own session (stopped with its JVM by pgid)."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        else:
            # The job's own children (the Flink JVM) may outlive it: same process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def run_side(
    side: str,
    cmd: list[str],
    env: dict[str, str],
    stack: Stack,
    args: argparse.Namespace,
    deadline: float,
) -> SideReport:
    """Start `side`'s job, run the phases against it, stop it."""
    source, sink = f"rt-{side}-in", f"rt-{side}-out"
    stack.create_topics([source, sink])
    cmd = [*cmd, "--bootstrap", stack.bootstrap, "--source", source, "--sink", sink]
    collector = Collector(stack.bootstrap, sink, group=f"bench-{side}-{os.getpid()}")
    report = SideReport(side=side, phases={})
    job = Job(cmd, env, stack.root / f"{side}-job.log")
    started = time.monotonic()
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        produce_burst(
            stack.bootstrap,
            source,
            phase="warmup",
            count=WARMUP_INPUTS,
            keys=args.keys,
            latency_ms=0,
            start=0,
        )
        ok = collector.wait_for(
            "warmup", WARMUP_INPUTS, min(args.start_timeout, deadline - time.monotonic()), job.alive
        )
        if not ok:
            why = "exited" if not job.alive() else "timed out"
            report.error = f"{side} job {why} before its warm-up outputs arrived"
            log(f"{report.error}; log tail:\n{job.tail()}")
            return report
        log(f"{side}: job up, warm-up committed after {time.monotonic() - started:.0f} s")
        n = WARMUP_INPUTS
        if args.warmup_inputs > 0:
            produce_burst(
                stack.bootstrap,
                source,
                phase="warmup2",
                count=args.warmup_inputs,
                keys=args.keys,
                latency_ms=0,
                start=n,
            )
            n += args.warmup_inputs
            collector.wait_for(
                "warmup2",
                args.warmup_inputs,
                min(args.phase_timeout, deadline - time.monotonic()),
                job.alive,
            )
            log(f"{side}: warmed up with {args.warmup_inputs} more inputs")
        if args.profile_dir:
            profilers = start_profilers(side, job, stack, args)
        cpu_before = cpu_seconds(side_processes(job, stack, side))
        timed_from = time.monotonic()
        for latency in args.latencies:
            phase = f"burst{latency}ms"
            first = produce_burst(
                stack.bootstrap,
                source,
                phase=phase,
                count=args.inputs,
                keys=args.keys,
                latency_ms=latency,
                start=n,
            )
            n += args.inputs
            budget = min(args.phase_timeout, deadline - time.monotonic())
            collector.wait_for(phase, args.inputs, budget, job.alive)
            report.phases[phase] = collector.result(phase, args.inputs, first)
            log(f"{side} {report.phases[phase].line()}")
        if args.paced_seconds > 0 and time.monotonic() < deadline:
            phase = f"paced{args.paced_latency}ms"
            first, sent = produce_paced(
                stack.bootstrap,
                source,
                phase=phase,
                rate=args.paced_rate,
                seconds=args.paced_seconds,
                keys=args.keys,
                latency_ms=args.paced_latency,
                start=n,
            )
            budget = min(args.phase_timeout, deadline - time.monotonic())
            collector.wait_for(phase, sent, budget, job.alive)
            report.phases[phase] = collector.result(phase, sent, first)
            log(f"{side} {report.phases[phase].line()} (paced at {args.paced_rate:g}/s)")
        cpu_after = cpu_seconds(side_processes(job, stack, side))
        report.cpu = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
        report.timed_s = time.monotonic() - timed_from
        log(
            f"{side} CPU seconds over the {report.timed_s:.0f} s of timed phases: "
            + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(report.cpu.items(), key=lambda kv: -kv[1])
            )
        )
        if not job.alive():
            report.error = f"{side} job exited during the run"
            log(f"{report.error}; log tail:\n{job.tail()}")
    finally:
        if args.profile_dir:
            stop_jfr(side, job, args)
        for proc in profilers:
            with contextlib.suppress(Exception):
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                proc.wait(timeout=30)
        job.stop()
        collector.close()
    return report


def side_processes(job: Job, stack: Stack, side: str) -> dict[str, list[int]]:
    """The processes whose CPU a side spends, by role: its job (the Flink JVM, with the Python
    inside it), and for our side the Ray processes of our own head; the Kafka broker for both."""
    import psutil

    roles: dict[str, list[int]] = {"flink-jvm+python": [], "kafka-broker": []}
    with contextlib.suppress(psutil.Error):
        roles["flink-jvm+python"] = [job.proc.pid] + [
            p.pid for p in psutil.Process(job.proc.pid).children(recursive=True)
        ]
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(stack.root) not in cmd:
            continue
        if "kafka.Kafka" in cmd:
            roles["kafka-broker"].append(proc.pid)
        elif side == "ours" and "raylet" in cmd:
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    title = " ".join(child.cmdline())
                    role = (
                        "ray-workers"
                        if "ray::" in title or "default_worker" in title
                        else ("ray-head-services")
                    )
                    roles.setdefault(role, []).append(child.pid)
            roles.setdefault("ray-head-services", []).append(proc.pid)
        elif side == "ours" and ("gcs_server" in cmd or "ray/dashboard" in cmd):
            roles.setdefault("ray-head-services", []).append(proc.pid)
    return roles


def cpu_seconds(roles: dict[str, list[int]]) -> dict[str, float]:
    """user + system CPU seconds so far, per role."""
    import psutil

    out: dict[str, float] = {}
    for role, pids in roles.items():
        total = 0.0
        for pid in set(pids):
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
        out[role] = total
    return out


def start_profilers(
    side: str, job: Job, stack: Stack, args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    """`py-spy record` (collapsed stacks) of the job's JVM (the Python inside it) and, for our
    side, of the Ray workers of our own head, for the timed phases."""
    import psutil

    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        log(f"--profile-dir: no py-spy next to {sys.executable}; not profiling")
        return []
    out = Path(args.profile_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets: list[tuple[str, int]] = []
    for proc in psutil.Process(job.proc.pid).children(recursive=True):
        if proc.name() == "java":
            targets.append((f"{side}-jvm", proc.pid))
    if side == "ours":
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "raylet" in cmd and str(stack.root) in cmd:
                for child in proc.children(recursive=True):
                    if child.name().startswith("ray::") or "default_worker" in " ".join(
                        child.cmdline()
                    ):
                        targets.append((f"{side}-ray-{child.pid}", child.pid))
    procs = []
    for name, pid in targets:
        if name.endswith("-jvm"):
            # py-spy sees only the Python frames; Java Flight Recorder samples the JVM's own.
            _jcmd(pid, "JFR.start", "name=bench", "settings=profile")
        path = out / f"{name}.txt"
        cmd = [str(spy), "record", "--pid", str(pid), "--rate", "50", "--format", "raw"]
        cmd += ["--output", str(path), "--nonblocking"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        log(f"profiling {name} (pid {pid}) -> {path}")
    return procs


def _jcmd(pid: int, *command: str) -> None:
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        log("--profile-dir: no jcmd on PATH; the JVM's Java frames are not profiled")
        return
    subprocess.run(
        [jcmd, str(pid), *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
    )


def stop_jfr(side: str, job: Job, args: argparse.Namespace) -> None:
    """Write the JVM's flight recording to DIR/<side>-jvm.jfr (`jfr print --events
    jdk.ExecutionSample` reads it)."""
    import psutil

    with contextlib.suppress(Exception):
        for proc in psutil.Process(job.proc.pid).children(recursive=True):
            if proc.name() == "java":
                path = Path(args.profile_dir) / f"{side}-jvm.jfr"
                _jcmd(proc.pid, "JFR.stop", "name=bench", f"filename={path}")
                log(f"JFR recording of the {side} JVM -> {path}")


def _ratio(ours: float | None, base: float | None) -> float | None:
    return round(ours / base, 2) if ours and base else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--inputs",
        type=int,
        default=6000,
        help="inputs per burst phase (outputs commit at checkpoints, 1 s apart: a burst of a few "
        "seconds reads as one of a few checkpoint counts, so keep bursts long)",
    )
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument(
        "--warmup-inputs", type=int, default=2000, help="0 ms inputs run before timing (JIT)"
    )
    parser.add_argument(
        "--latencies",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 50],
        help="model latencies of the burst phases, ms",
    )
    parser.add_argument("--paced-rate", type=float, default=100.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--paced-latency", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument(
        "--baseline-python",
        default=os.environ.get("BENCH_BASELINE_PYTHON", DEFAULT_BASELINE_PYTHON),
    )
    parser.add_argument(
        "--baseline-mode",
        default="thread",
        choices=["thread", "process"],
        help="python.execution-mode of the baseline's job",
    )
    parser.add_argument(
        "--ours-effects",
        default="ray",
        choices=["ray", "in-process"],
        help="where our side runs model and tool calls (the product default is the Ray pool)",
    )
    parser.add_argument(
        "--ours-tool",
        default="inline",
        choices=["inline", "pool"],
        help="where our side runs the lookup tool: in the turn (@tool(inline=True), journaled "
        "like every call) or on the Ray pool like the model (@tool(blocking=False))",
    )
    parser.add_argument(
        "--ours-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Flink configuration entry for our job (RuntimeConfig.extra); repeatable",
    )
    parser.add_argument(
        "--ours-no-chaining",
        action="store_true",
        help="our job with Flink's operator chaining off (each operator in its own task)",
    )
    parser.add_argument(
        "--broker-warmup-s",
        type=float,
        default=90.0,
        help="at most this long, drive the broker until its JIT goes quiet (0: no warm-up)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--start-timeout", type=float, default=240.0)
    parser.add_argument("--phase-timeout", type=float, default=90.0)
    parser.add_argument("--budget-s", type=float, default=480.0, help="whole-run time bound")
    parser.add_argument("--keep-state", action="store_true", help="keep logs in the temp dir")
    parser.add_argument(
        "--profile-dir",
        default=None,
        help="py-spy the jobs (and our Ray workers) during the timed phases; collapsed stacks",
    )
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget_s

    from flink_bridge.stack.jars import flink_connector_jar_urls

    stack = Stack()
    reports: dict[str, SideReport] = {}
    try:
        log(f"state dir {stack.root}; starting Kafka")
        stack.start_kafka()
        if args.broker_warmup_s > 0:
            stack.create_topics(["bench-warmup"])
            took, share = warm_broker(
                stack.bootstrap,
                "bench-warmup",
                broker_pid=stack.broker_pid(),
                max_seconds=args.broker_warmup_s,
            )
            log(f"broker warmed up in {took:.0f} s (JIT compiler threads at {share:.0%} of a core)")
        base_env = dict(os.environ)
        base_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *[p for p in base_env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        )
        common = ["--checkpoint-ms", str(args.checkpoint_ms)]
        # The baseline first, before our Ray head exists, so it has the machine to itself.
        if not args.skip_baseline:
            if not Path(args.baseline_python).exists():
                reports["baseline"] = SideReport(
                    "baseline",
                    {},
                    error=(
                        f"no baseline interpreter at {args.baseline_python!r}: create a venv with "
                        "`pip install flink-agents==0.2.0 apache-flink==2.2.1` and pass "
                        "--baseline-python"
                    ),
                )
                log(reports["baseline"].error or "")
            else:
                env = dict(base_env)
                env.pop("VIRTUAL_ENV", None)
                cmd = [
                    args.baseline_python,
                    "-m",
                    "bench._runtime.baseline_job",
                    *common,
                    "--num-async-threads",
                    str(args.in_flight),
                    "--execution-mode",
                    args.baseline_mode,
                    "--jars",
                    ",".join(flink_connector_jar_urls()),
                ]
                reports["baseline"] = run_side("baseline", cmd, env, stack, args, deadline)
        if not args.skip_ours:
            log("starting Ray")
            env = dict(base_env)
            env.update(stack.start_ray())
            cmd = [
                sys.executable,
                "-m",
                "bench._runtime.ours_job",
                *common,
                "--max-in-flight",
                str(args.in_flight),
                "--effects",
                args.ours_effects,
                "--tool",
                args.ours_tool,
                *(["--no-chaining"] if args.ours_no_chaining else []),
                *[f"--conf={entry}" for entry in args.ours_conf],
            ]
            reports["ours"] = run_side("ours", cmd, env, stack, args, deadline)
    finally:
        stack.close(keep=args.keep_state)

    ours = reports.get("ours", SideReport("ours", {}))
    base = reports.get("baseline", SideReport("baseline", {}))
    lo, hi = args.latencies[0], args.latencies[-1]
    paced = ours.phases.get(f"paced{args.paced_latency}ms")
    ratios = [_ratio(ours.rate(f"burst{ms}ms"), base.rate(f"burst{ms}ms")) for ms in (lo, hi)]
    log(
        f"setup: {args.inputs} inputs per burst, {args.keys} keys, {args.in_flight} calls in "
        f"flight, checkpoints every {args.checkpoint_ms} ms, parallelism 1, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    for side in (base, ours):
        if side.error:
            log(f"{side.side}: {side.error}")
    print(
        json.dumps(
            {
                "bench": "runtime",
                "turns_per_s_0ms": ours.rate(f"burst{lo}ms"),
                "turns_per_s_50ms": ours.rate(f"burst{hi}ms"),
                "p50_ms": round(paced.p50_ms, 1) if paced else None,
                "p99_ms": round(paced.p99_ms, 1) if paced else None,
                "baseline": "flink-agents-0.2.0",
                "baseline_turns_per_s_0ms": base.rate(f"burst{lo}ms"),
                "baseline_turns_per_s_50ms": base.rate(f"burst{hi}ms"),
                "ratio_vs_baseline": min((r for r in ratios if r is not None), default=None)
                if all(r is not None for r in ratios)
                else None,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
