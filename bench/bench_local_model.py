"""Benchmark of the embedded local model (llama.cpp server + SmolLM2-135M-Instruct Q4_1).

Bounded (< 90 s on 2 cores). Figures, all from this one run:

1. server start: `flink_bridge.local_model.start` until ``/v1/models`` answers (seconds);
2. decode speed: completion tokens / wall time of non-streamed answers (tokens/s, median);
3. time to first token of a streamed answer (ms, median);
4. one tool call round trip through `LocalChatModel` with the constrained-JSON strategy:
   the tool call, then the final answer after the tool result (seconds, and whether both
   answers followed the protocol).

Run: python bench/bench_local_model.py [--port 0] [--rounds 3] [--max-tokens 96]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.models.base import ToolSchema  # noqa: E402
from actors.models.local import LocalChatModel  # noqa: E402
from flink_bridge import local_model  # noqa: E402
from protocols.events import ChatMessage  # noqa: E402

PROMPT = "Write a short paragraph about the sea."
WEATHER = ToolSchema(
    name="get_weather",
    description="Current weather of a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _measure(
    info: local_model.LocalModelInfo, rounds: int, max_tokens: int
) -> dict[str, Any]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=info.base_url, api_key="sk-no-key-required", max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT}]
    await client.chat.completions.create(model=info.model, messages=messages, max_tokens=8)
    speeds: list[float] = []
    tokens: list[int] = []
    for _ in range(rounds):
        began = time.perf_counter()
        response = await client.chat.completions.create(
            model=info.model, messages=messages, max_tokens=max_tokens, temperature=0.7
        )
        wall = time.perf_counter() - began
        out = response.usage.completion_tokens if response.usage else 0
        tokens.append(out)
        speeds.append(out / wall if wall > 0 else 0.0)
    ttfts: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        stream = await client.chat.completions.create(
            model=info.model, messages=messages, max_tokens=32, stream=True
        )
        first: float | None = None
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - began
        ttfts.append((first or 0.0) * 1000)
    await client.close()

    model = LocalChatModel(
        model=info.model,
        base_url=info.base_url,
        schema_style="json_object",
        first_turn_tool=True,
        max_tool_rounds=1,
        extra_body={"temperature": 0.0, "max_tokens": 96},
    )
    began = time.perf_counter()
    first_answer = await model.chat(
        [ChatMessage.user("What is the weather in Paris?")], tools=[WEATHER]
    )
    calls = first_answer.message.tool_calls
    followed = bool(calls) and calls[0].name == "get_weather"
    final_text = ""
    if followed:
        conversation = [
            ChatMessage.user("What is the weather in Paris?"),
            first_answer.message,
            ChatMessage.tool(calls[0].id, "sunny, 21 C"),
        ]
        final = await model.chat(conversation, tools=[WEATHER])
        final_text = final.message.content or ""
        followed = followed and bool(final_text) and not final.message.tool_calls
    tool_round_s = time.perf_counter() - began
    await model.aclose()
    return {
        "tokens_per_s_median": round(statistics.median(speeds), 1),
        "completion_tokens": tokens,
        "ttft_ms_median": round(statistics.median(ttfts), 1),
        "ttft_ms": [round(t, 1) for t in ttfts],
        "tool_round_trip_s": round(tool_round_s, 2),
        "tool_protocol_followed": followed,
        "tool_call": calls[0].model_dump() if calls else None,
        "final_answer": final_text[:120],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-local-model-") as tmp:
        state_dir = Path(tmp)
        info = local_model.start(state_dir, port=args.port or _free_port(), timeout_s=60.0)
        try:
            figures = asyncio.run(
                asyncio.wait_for(_measure(info, args.rounds, args.max_tokens), timeout=75.0)
            )
        finally:
            local_model.stop(state_dir)
    gguf = Path(info.gguf)
    print(
        json.dumps(
            {
                "bench": "local_model",
                "model": info.model,
                "gguf_mb": round(gguf.stat().st_size / 1e6, 1),
                "server_start_s": info.start_s,
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
