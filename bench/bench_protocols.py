"""Benchmark of the envelope wire format, on one core, against pydantic's own JSON.

Measures, for a typical envelope (a chat request of about 500 payload bytes, with sender,
correlation id, trace context and two headers):

(a) full round trips per second: encode, decode, payload validated;
(b) routing decodes per second: recipient, type and version, payload untouched;
(c) pydantic's JSON round trip (`model_dump_json` / `model_validate_json`) of the same
    envelope with the payload typed inline, in the same run.

Rounds of each are interleaved and the best round counts, which damps a busy machine. The run
is bounded (about 3 x rounds x round_s seconds). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from uuid import UUID

from pydantic import create_model

from protocols import Envelope, EnvelopeHeader, decode_envelope, encode_envelope, peek_route
from protocols.events import ChatMessage, ChatModelEvent, ToolCall


def typical_envelope() -> Envelope:
    """A chat request with a few messages: about 500 bytes of msgpack payload."""
    payload = ChatModelEvent(
        model="gpt-4o-mini",
        messages=[
            ChatMessage.system("You are a support agent for an online shop. Answer briefly."),
            ChatMessage.user("Where is my order 84721? It was due on Monday and has not come."),
            ChatMessage.assistant(
                None,
                [ToolCall(id="call_1", name="track_order", arguments='{"order_id": "84721"}')],
            ),
            ChatMessage.tool("call_1", '{"status": "in transit", "eta": "2026-05-14"}'),
            ChatMessage.assistant("Your order 84721 is in transit and should arrive on May 14."),
        ],
        max_iterations=5,
    )
    return Envelope.wrap(
        payload,
        recipient="support/customer-84721",
        sender="router/eu-1",
        correlation_id=UUID("01890a5d-ac96-774b-bcce-b302099a8057"),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        headers={"tenant": "acme", "locale": "en-GB"},
    )


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per CPU second of `fn` over about `seconds` of CPU time, in batches of 200.

    CPU time (`time.process_time`) rather than wall time: on a shared machine the wall clock
    also counts the time other processes held the core.
    """
    count = 0
    clock = time.process_time
    start = clock()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        count += 200
        now = clock()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-s", type=float, default=1.0)
    parser.add_argument("--pin", action="store_true", help="pin the process to one CPU")
    args = parser.parse_args()
    if args.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    env = typical_envelope()
    data = encode_envelope(env)
    payload_len = len(env.payload_bytes)

    def roundtrip() -> object:
        decoded = decode_envelope(encode_envelope(env))
        return decoded.payload  # type: ignore[union-attr]

    def route() -> object:
        return peek_route(data)

    json_model = create_model(
        "JsonEnvelope", __base__=EnvelopeHeader, payload=(ChatModelEvent, ...)
    )
    json_env = json_model(**dict(env), payload=env.payload)

    def json_roundtrip() -> object:
        return json_model.model_validate_json(json_env.model_dump_json()).payload  # type: ignore[attr-defined]

    # Correctness before speed: every path gives back the same message.
    assert roundtrip() == env.payload
    assert json_roundtrip() == env.payload
    assert peek_route(data) == ("support/customer-84721", env.type_name, env.type_version)

    best = {"rt": 0.0, "json": 0.0, "route": 0.0}
    for i in range(args.rounds):
        best["rt"] = max(best["rt"], rate(roundtrip, args.round_s))
        best["json"] = max(best["json"], rate(json_roundtrip, args.round_s))
        best["route"] = max(best["route"], rate(route, args.round_s))
        print(
            f"round {i + 1}/{args.rounds}: roundtrip {best['rt']:,.0f}/s, "
            f"json {best['json']:,.0f}/s, route {best['route']:,.0f}/s",
            file=sys.stderr,
        )
    print(
        f"envelope {len(data)} bytes (payload {payload_len}); json envelope "
        f"{len(json_env.model_dump_json())} bytes",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "protocols",
                "roundtrips_per_s": round(best["rt"]),
                "json_roundtrips_per_s": round(best["json"]),
                "ratio_vs_json": round(best["rt"] / best["json"], 3),
                "route_decodes_per_s": round(best["route"]),
            }
        )
    )


if __name__ == "__main__":
    main()
