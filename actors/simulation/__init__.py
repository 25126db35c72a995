"""Deterministic in-process simulations of many agents exchanging messages.

Declare a `Population` (groups of N agents per workflow, key schemes, seeds), run it in a
`Simulation` (a discrete-event clock in simulated time: message latency, ``ctx.schedule``
timers and ``ctx.ask`` timeouts all fire in simulated time), and read the `SimulationResult`
tables (per agent, per message type) as rows or as Arrow. A `ModelCassette` records real model
answers once and replays them, so a run with the same seeds gives the same tables.
See docs/simulation.md.
"""

from __future__ import annotations

from actors.simulation.cassette import CassetteExecutor, CassetteMiss, ModelCassette
from actors.simulation.clock import SimClock
from actors.simulation.metrics import AGENT_COUNTERS, ResultTable
from actors.simulation.population import AgentGroup, Population, agent_rng
from actors.simulation.simulation import Simulation, SimulationResult

__all__ = [
    "AGENT_COUNTERS",
    "AgentGroup",
    "CassetteExecutor",
    "CassetteMiss",
    "ModelCassette",
    "Population",
    "ResultTable",
    "SimClock",
    "Simulation",
    "SimulationResult",
    "agent_rng",
]
