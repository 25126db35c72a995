"""Benchmark of the envelope wire format, on one core, against pydantic's own JSON.

Measures, for a typical envelope (about 500 payload bytes, with sender, correlation id, trace
context and two headers):

(a) full round trips per second: encode, decode, payload validated;
(b) routing decodes per second: recipient, type and version, payload untouched;
(c) pydantic's JSON round trip (`model_dump_json` / `model_validate_json`) of the same
    envelope with the payload typed inline, in the same run.

Two payloads (`--payload`), both about 500 bytes of msgpack:

- `chat_request` (default): a `ChatModelEvent` holding a five-message conversation, one with a
  tool call: seven pydantic models to dump and validate per round trip;
- `chat_message`: a `ChatModelResponseEvent` holding one chat message (the issue's "a chat
  message with a few fields"): three models.

Pydantic's own dump and validation dominate both round trips (ours and the JSON one), so the
payload's model count sets the absolute figures; see docs/benchmarks.md.

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
from protocols.events import ChatMessage, ChatModelEvent, ChatModelResponseEvent, ToolCall, Usage


def typical_envelope(payload_kind: str = "chat_request") -> Envelope:
    """A typical envelope with about 500 bytes of msgpack payload (see the module docstring)."""
    payload = chat_message() if payload_kind == "chat_message" else chat_request()
    return Envelope.wrap(
        payload,
        recipient="support/customer-84721",
        sender="router/eu-1",
        correlation_id=UUID("01890a5d-ac96-774b-bcce-b302099a8057"),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        headers={"tenant": "acme", "locale": "en-GB"},
    )


def chat_message() -> ChatModelResponseEvent:
    """A model's answer: one assistant message of about 430 characters, with its usage."""
    return ChatModelResponseEvent(
        model="gpt-4o-mini",
        response=ChatMessage.assistant(
            "Your order 84721 left our warehouse in Leipzig on Friday and is now with the "
            "carrier. The tracking page shows it in transit to the local depot; the carrier "
            "expects to deliver it on Thursday, May 14, between 9:00 and 13:00. You will get "
            "an email with the delivery window the evening before. If nobody is home, the "
            "parcel goes to the pick-up point at Hauptstrasse 12, where it waits for 7 days."
        ),
        usage=Usage(input_tokens=812, output_tokens=97, cost_usd=0.00018),
        request_id="req_7f3a9c0d",
    )


def chat_request() -> ChatModelEvent:
    """A chat request with a five-message conversation, one with a tool call."""
    return ChatModelEvent(
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
    parser.add_argument(
        "--payload", choices=("chat_request", "chat_message"), default="chat_request"
    )
    args = parser.parse_args()
    if args.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    env = typical_envelope(args.payload)
    data = encode_envelope(env)
    payload_len = len(env.payload_bytes)

    def roundtrip() -> object:
        decoded = decode_envelope(encode_envelope(env))
        return decoded.payload  # type: ignore[union-attr]

    def route() -> object:
        return peek_route(data)

    json_model = create_model(
        "JsonEnvelope", __base__=EnvelopeHeader, payload=(type(env.payload), ...)
    )
    json_env = json_model(**dict(env), payload=env.payload)  # type: ignore[call-arg]

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
