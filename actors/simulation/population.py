"""`Population` and `AgentGroup`: who takes part in a simulation.

A population is a list of groups; each group is N instances of one workflow (one agent type)
with a key scheme and optional per-agent setup. Per-agent setup functions receive a
`random.Random` seeded from the population seed, the agent type and the instance index, so the
same seed builds the same population whatever else changes (adding a group does not reshuffle
the others).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from actors.engine import AgentEngine
from actors.workflow import Workflow
from protocols.errors import UserError

__all__ = ["AgentGroup", "Population", "agent_rng"]

InitFn = Callable[[str, random.Random], BaseModel | None]
StartFn = Callable[[str, random.Random], Any]
ReportFn = Callable[[Any], Mapping[str, Any]]


def agent_rng(seed: int, agent_type: str, index: int) -> random.Random:
    """The random generator of one agent's setup: a function of the seed, type and index."""
    return random.Random(f"{seed}/{agent_type}/{index}")


@dataclass(frozen=True, kw_only=True)
class AgentGroup:
    """``count`` agents running ``workflow``.

    Attributes:
        workflow: the agents' workflow (or its `AgentEngine`); one engine serves the group.
        count: how many instances exist from the start.
        agent_type: the type in addresses; default: the workflow's name.
        key_format: the key of instance ``i``, formatted with ``i`` (e.g. ``"t{i:05d}"``).
        init: ``init(key, rng)`` returns the instance's initial state (None: the default).
            Without it all instances share one encoded default state.
        start: ``start(key, rng)`` returns the first input the instance receives (a value, sent
            as ``InputEvent``, or an `Event`; None: none).
        start_jitter_s: start inputs arrive at a uniform random time in ``[0, start_jitter_s]``.
        report: ``report(state)`` adds columns to the instance's row of the result table.
    """

    workflow: Workflow | AgentEngine
    count: int
    agent_type: str | None = None
    key_format: str = "{i}"
    init: InitFn | None = None
    start: StartFn | None = None
    start_jitter_s: float = 0.0
    report: ReportFn | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 0:
            raise UserError(f"AgentGroup count must be an int >= 0, got {self.count!r}")
        if self.start_jitter_s < 0:
            raise UserError(f"AgentGroup start_jitter_s must be >= 0, got {self.start_jitter_s!r}")
        try:
            self.key_format.format(i=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise UserError(
                f"AgentGroup key_format {self.key_format!r} must format with i, e.g. 't{{i}}': "
                f"{exc}"
            ) from None

    def engine(self) -> AgentEngine:
        w = self.workflow
        return w if isinstance(w, AgentEngine) else AgentEngine(w)

    def key(self, index: int) -> str:
        """The key of instance ``index``."""
        return self.key_format.format(i=index)


@dataclass(frozen=True)
class Population:
    """The groups of a simulation and the seed their setup functions draw from."""

    groups: Sequence[AgentGroup]
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.groups:
            raise UserError("a Population needs at least one AgentGroup")
        object.__setattr__(self, "groups", tuple(self.groups))

    @property
    def size(self) -> int:
        """The number of agents the population starts with."""
        return sum(g.count for g in self.groups)
