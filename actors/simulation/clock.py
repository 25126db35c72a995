"""`SimClock`: the discrete-event clock of a simulation.

Simulated time is event time. Everything that happens later (a message in flight, a timer from
``ctx.schedule``, an ask's timeout) is an entry in one priority queue ordered by (time, sequence
number); the clock jumps to the earliest entry, so idle stretches cost nothing and the watermark
is simply the time of the entry being processed: nothing earlier can still arrive. Ties are
broken by the order entries were pushed, which makes a run a pure function of its inputs, and
keeps messages in order per (sender, recipient) when their latency is constant.
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["SimClock"]


class SimClock:
    """A priority queue of timestamped entries and the current simulated time (seconds)."""

    __slots__ = ("_queue", "_seq", "now")

    def __init__(self, start_s: float = 0.0) -> None:
        self.now = float(start_s)
        self._queue: list[tuple[float, int, Any]] = []
        self._seq = 0

    def push(self, at_s: float, item: Any) -> None:
        """Schedule ``item`` at simulated time ``at_s`` (never earlier than now)."""
        at_s = self.now if at_s < self.now else at_s
        heapq.heappush(self._queue, (at_s, self._seq, item))
        self._seq += 1

    def peek_time(self) -> float | None:
        """The time of the next entry (the next watermark), or None when nothing is pending."""
        return self._queue[0][0] if self._queue else None

    def pop(self) -> Any:
        """Advance to the next entry and return it."""
        at_s, _, item = heapq.heappop(self._queue)
        self.now = at_s
        return item

    def advance_to(self, at_s: float) -> None:
        """Move the clock forward to ``at_s`` (e.g. the end of a run) without processing."""
        if at_s > self.now:
            self.now = at_s

    @property
    def pushed(self) -> int:
        """How many entries were ever scheduled (the sequence counter)."""
        return self._seq

    def __len__(self) -> int:
        return len(self._queue)
