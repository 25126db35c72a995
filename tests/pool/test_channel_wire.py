"""The call channel's compact frames: requests and results come back equal, nested models
and enums included, and anything unusual (a subclass of a nested model) travels as itself."""

from __future__ import annotations

import pickle

from actors.effects import EffectError, EffectKind, EffectRequest, EffectResult
from flink_bridge.ray_pool._channel import (
    _request_of,
    _request_wire,
    _result_of,
    _result_wire,
)
from protocols.events import Usage


def _through_wire(obj: object) -> object:
    return pickle.loads(pickle.dumps(obj, protocol=5))


def test_request_round_trip_keeps_every_field() -> None:
    request = EffectRequest(
        call_id="turn-1/0", kind=EffectKind.TOOL, target="lookup",
        payload={"args": [1, "x"], "nested": {"k": None}}, deadline_s=1.5e9, rate_key="p/m",
    )  # fmt: skip
    back = _request_of(_through_wire(_request_wire(request)))  # type: ignore[arg-type]
    assert back == request
    assert back.kind is EffectKind.TOOL
    assert back.model_dump() == request.model_dump()


def test_result_round_trip_with_error_and_usage() -> None:
    result = EffectResult(
        call_id="c", value={"answer": [1, 2]}, attempts=3, latency_ms=51.5,
        error=EffectError(error_type="RateLimited", message="429", retryable=True),
        usage=Usage(input_tokens=10, output_tokens=2, cost_usd=0.001),
    )  # fmt: skip
    back = _result_of(_through_wire(_result_wire(result)))  # type: ignore[arg-type]
    assert back == result
    assert isinstance(back.error, EffectError) and back.error.retryable
    assert back.usage is not None and back.usage.total_tokens == 12
    assert not back.ok


def test_result_without_error_or_usage() -> None:
    result = EffectResult(call_id="c", value="ok")
    back = _result_of(_through_wire(_result_wire(result)))  # type: ignore[arg-type]
    assert back == result and back.ok and back.usage is None


class _DetailedError(EffectError):
    detail: str = ""


def test_a_subclass_of_a_nested_model_travels_as_itself() -> None:
    result = EffectResult(
        call_id="c", error=_DetailedError(error_type="E", message="m", detail="more")
    )
    back = _result_of(_through_wire(_result_wire(result)))  # type: ignore[arg-type]
    assert type(back.error) is _DetailedError
    assert back.error.detail == "more"
