"""The in-process effect bridge's lifecycle."""

from __future__ import annotations

import time

from actors.effects import EffectRequest, EffectResult
from flink_bridge.local_bridge import InProcessBridge


class _Echo:
    async def execute(self, request: EffectRequest) -> EffectResult:
        return EffectResult(call_id=request.call_id, value=request.payload)


def test_closed_right_after_start_its_thread_stops() -> None:
    """A bridge closed before its loop ran used to skip stopping the loop: `close` waited out
    its 5 s join and the thread kept running. Now `start` returns once the loop runs."""
    for _ in range(5):
        bridge = InProcessBridge(_Echo)
        bridge.start()
        started = time.monotonic()
        bridge.close()
        assert time.monotonic() - started < 2.0
        assert bridge._thread is not None and not bridge._thread.is_alive()
