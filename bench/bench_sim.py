"""Scale of the in-process simulation: agents alive, agent messages/s, memory per agent.

    python bench/bench_sim.py                 # 10,000 then 100,000 agents
    python bench/bench_sim.py --sizes 10000   # one size

Workload ("gossip"): every agent exists from the start with a small state (three ints); one
agent in ten starts a rumour that hops ``--ttl`` times from agent to agent (``ctx.send`` to a
pseudo-random peer, 1 ms of simulated latency); every tenth hop asks a zero-latency scripted
model (`actors.testing.FunctionModel`) through the journaled model loop. So N agents exchange
``N / 10 * ttl`` agent messages.

Each size runs in a fresh subprocess, so its memory figure is not flattered by memory an earlier
size freed: ``bytes_per_agent`` is the growth of the process's peak RSS from before the
population is built to the end of the run (before the result rows are built), divided by the
number of agents (it includes the agents' state, keys, counters, index and the in-flight
messages; it excludes the interpreter and the imported libraries). Messages/s is agent
messages delivered per second of wall time of the run (building the population is reported
apart). The CPU seconds are printed too: on a
loaded machine they are the fairer comparison.

Every line is JSON; the last one is ``{"bench": "sim", "agents": ..., "messages_per_s": ...,
"bytes_per_agent": ...}`` for the largest size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actors import InputEvent, RunnerContext, Workflow, model, step  # noqa: E402
from actors.simulation import AgentGroup, Population, Simulation  # noqa: E402
from actors.testing import FunctionModel  # noqa: E402

MASK = 2**64 - 1


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


class _Discard(list):  # type: ignore[type-arg]
    """A request log that keeps nothing (the bench makes ~10^5 model calls)."""

    def append(self, item: Any) -> None:
        pass


class GossipState(BaseModel):
    seed: int = 0
    seen: int = 0
    forwarded: int = 0


class Gossip(Workflow):
    state_type = GossipState
    population = 1

    @model
    @staticmethod
    def llm() -> FunctionModel:
        scripted = FunctionModel(lambda messages, tools: "pass it on")
        scripted.requests = _Discard()
        return scripted

    @step
    def hop(event: InputEvent, state: GossipState, ctx: RunnerContext) -> None:
        rumour = event.input
        state.seen += 1
        ttl = rumour["ttl"]
        if ttl <= 0:
            return
        if ttl % 10 == 0:
            ctx.chat("llm", [f"rumour {rumour['id']} at hop {ttl}"])
        peer = _mix(state.seed ^ (state.seen << 20)) % Gossip.population
        state.forwarded += 1
        ctx.send(f"Gossip/{peer}", {"id": rumour["id"], "ttl": ttl - 1})


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_one(agents: int, ttl: int, seed: int) -> dict[str, Any]:
    """Build ``agents`` gossip agents, run until quiet, measure."""
    Gossip.population = agents
    rss_before = _peak_rss()
    built = time.perf_counter()
    group = AgentGroup(
        workflow=Gossip(),
        count=agents,
        init=lambda key, rng: GossipState(seed=rng.getrandbits(48)),
        start=lambda key, rng: {"id": key, "ttl": ttl} if int(key) % 10 == 0 else None,
        start_jitter_s=1.0,
    )
    sim = Simulation(Population([group], seed=seed), latency_s=0.001, keep_outputs=False)
    build_s = time.perf_counter() - built
    cpu = time.process_time()
    asyncio.run(sim.advance())
    cpu_s = time.process_time() - cpu
    rss_growth = _peak_rss() - rss_before  # before the result rows are built
    result = sim.result()
    summary = result.summary
    messages = summary["messages_delivered"]
    return {
        "bench": "sim-size",
        "agents": summary["agents"],
        "messages": messages,
        "turns": summary["turns"],
        "model_calls": summary["model_calls"],
        "sim_time_s": round(summary["sim_time_s"], 3),
        "build_s": round(build_s, 2),
        "run_s": round(result.wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "messages_per_s": round(messages / result.wall_s),
        "messages_per_cpu_s": round(messages / cpu_s) if cpu_s else None,
        "bytes_per_agent": round(rss_growth / summary["agents"]),
        "errors": summary["errors"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="simulation scale benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--ttl", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timeout-s", type=float, default=170.0)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.ttl, args.seed)), flush=True)
        return 0
    deadline = time.monotonic() + args.timeout_s
    last: dict[str, Any] | None = None
    for size in args.sizes:
        left = deadline - time.monotonic()
        cmd = [sys.executable, __file__, "--one", str(size), "--ttl", str(args.ttl)]
        try:
            proc = subprocess.run(
                [*cmd, "--seed", str(args.seed)],
                capture_output=True,
                text=True,
                timeout=max(left, 1.0),
                check=False,
            )
        except subprocess.TimeoutExpired:
            print(json.dumps({"bench": "sim-size", "agents": size, "error": "timed out"}))
            break
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        last = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(last), flush=True)
    if last is None:
        return 1
    final = {
        "bench": "sim",
        "agents": last["agents"],
        "messages_per_s": last["messages_per_s"],
        "bytes_per_agent": last["bytes_per_agent"],
        "messages_per_cpu_s": last["messages_per_cpu_s"],
    }
    print(json.dumps(final))
    return 0


if __name__ == "__main__":
    sys.exit(main())
