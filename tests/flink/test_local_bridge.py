"""InProcessBridge: calls run on its own loop, and `close` always ends that loop's thread."""

from __future__ import annotations

import time

import pytest

from actors import AgentEngine, InputEvent, Workflow, step, tool
from actors.effects import EffectKind, EffectRequest
from flink_bridge.local_bridge import InProcessBridge


class _Echo(Workflow):
    @tool(blocking=False)
    @staticmethod
    def echo(text: str) -> str:
        """Echo.

        Args:
            text: what to echo.
        """
        return text

    @step(InputEvent)
    def on_input(event, state, ctx):  # noqa: N805
        pass


def _bridge() -> InProcessBridge:
    return InProcessBridge(AgentEngine(_Echo()).executor, max_in_flight=4)


def test_calls_run_and_their_results_come_back() -> None:
    bridge = _bridge()
    bridge.start()
    try:
        for i in range(3):
            bridge.submit(
                EffectRequest(
                    call_id=f"c{i}",
                    kind=EffectKind.TOOL,
                    target="echo",
                    payload={"arguments": {"text": f"t{i}"}},
                )
            )
        results: list = []
        deadline = time.monotonic() + 10
        while len(results) < 3 and time.monotonic() < deadline:
            results.extend(bridge.wait(0.5))
    finally:
        bridge.close()
    assert sorted((r.call_id, r.value) for r in results) == [
        ("c0", "t0"),
        ("c1", "t1"),
        ("c2", "t2"),
    ]
    assert bridge.in_flight == 0


def test_a_bridge_closed_before_its_loop_runs_still_stops_its_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve = InProcessBridge._serve

    def late_serve(loop):  # the loop starts running only after close() has been called
        time.sleep(0.3)
        serve(loop)

    monkeypatch.setattr(InProcessBridge, "_serve", staticmethod(late_serve))
    bridge = _bridge()
    bridge.start()
    thread = bridge._thread
    assert thread is not None
    started = time.monotonic()
    bridge.close()
    took = time.monotonic() - started
    assert not thread.is_alive(), "the loop thread outlived close()"
    assert took < 4.0, f"close() waited {took:.1f} s: it did not stop the loop"
