"""The benchmark's load generators, each run in a process of its own so that the server's
cost is what is measured.

``python -m benchmarks.load receive ADDRESS CHAT_ID``
    reads a JSON list of access tokens from the first line of standard input, opens one
    Connect stream per token and prints ``{"ready": N}`` once all have caught up. Then, for
    each line ``{"first": F, "last": L, "timeout": T}``, waits until every stream has received
    message L (at most T seconds) and prints the step's figures (see :func:`step_figures`).
    A message's text starts with the ``time.perf_counter()`` of its send (CLOCK_MONOTONIC,
    the same clock in every process of the machine), so the latency is measured end to end.
``python -m benchmarks.load send ADDRESS TOKEN CHAT_ID RATE SECONDS``
    sends RATE messages per second for SECONDS, open loop (a slow server does not slow the
    offered rate), and prints ``{"first": ..., "last": ..., "sent": ..., "errors": ...}``.
``python -m benchmarks.load stream-receive ADDRESS STREAMS SECONDS``
    holds STREAMS streams of the bare streaming server and prints the messages they received
    and the seconds it took.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc.aio

from benchmarks.stream_server import METHOD as STREAM_METHOD
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc

STREAMS_PER_CHANNEL = 25
# Latencies are counted in buckets 1 % wide, so that the receivers' counts add up exactly.
BUCKET_GROWTH = 1.01
BUCKET_FLOOR_MS = 0.01


def bucket(ms: float) -> int:
    """The histogram bucket of a latency."""
    return int(math.log(max(ms, BUCKET_FLOOR_MS) / BUCKET_FLOOR_MS, BUCKET_GROWTH))


def bucket_ms(index: int) -> float:
    """The upper bound of a bucket, in milliseconds."""
    return float(BUCKET_FLOOR_MS * BUCKET_GROWTH ** (index + 1))


@dataclass
class _Receiver:
    """One stream's progress: the last seq, and whether every seq came once in order."""

    last: int = 0
    in_order: bool = True
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    wanted: int = 0

    def take(self, message: chat_pb2.Message, now: float, latencies: dict[int, int]) -> float:
        """Count a message that arrived at ``now``; its latency in milliseconds."""
        if message.seq != self.last + 1:
            self.in_order = False
        self.last = max(self.last, message.seq)
        ms = (now - float(message.text.split(" ", 1)[0])) * 1000
        key = bucket(ms)
        latencies[key] = latencies.get(key, 0) + 1
        if self.last >= self.wanted:
            self.arrived.set()
        return ms


def step_figures(
    receivers: list[_Receiver], latencies: dict[int, int], first: int, last: int, peak: float
) -> dict[str, Any]:
    """What a receiver process reports for a step: the latency histogram, the largest
    latency, how many deliveries arrived and were expected, and whether all came in order."""
    expected = (last - first + 1) * len(receivers)
    received = sum(min(r.last, last) - (first - 1) for r in receivers if r.last >= first)
    return {
        "histogram": latencies,
        "max_ms": peak,
        "received": received,
        "expected": expected,
        "in_order": all(r.in_order for r in receivers),
    }


async def receive(address: str, chat_id: str) -> None:
    """The ``receive`` command."""
    tokens: list[str] = json.loads(sys.stdin.readline())
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, math.ceil(len(tokens) / STREAMS_PER_CHANNEL)))
    ]
    receivers = [_Receiver() for _ in tokens]
    latencies: dict[int, int] = {}
    peak = 0.0
    ready = asyncio.Event()
    caught_up = 0

    async def follow(index: int, token: str) -> None:
        nonlocal caught_up, peak
        stub = chat_pb2_grpc.ChatServiceStub(channels[index % len(channels)])
        me = receivers[index]
        request = chat_pb2.ConnectRequest(chat_id=chat_id, after_seq=0)
        metadata = (("authorization", f"Bearer {token}"),)
        async for event in stub.Connect(request, metadata=metadata):
            now = time.perf_counter()
            kind = event.WhichOneof("event")
            if kind == "caught_up":
                me.last = event.caught_up.last_seq
                caught_up += 1
                if caught_up == len(tokens):
                    ready.set()
            elif kind == "message" or kind == "batch":
                batch = [event.message] if kind == "message" else event.batch.messages
                peak = max(peak, *(me.take(m, now, latencies) for m in batch))

    tasks = [asyncio.create_task(follow(i, t)) for i, t in enumerate(tokens)]
    await ready.wait()
    print(json.dumps({"ready": len(tokens)}), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        for r in receivers:
            r.wanted = command["last"]
            if r.last < r.wanted:
                r.arrived.clear()
        waits = [r.arrived.wait() for r in receivers if r.last < command["last"]]
        if waits:
            await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=command["timeout"]
            )
        figures = step_figures(receivers, latencies, command["first"], command["last"], peak)
        print(json.dumps(figures), flush=True)
        latencies, peak = {}, 0.0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def send(address: str, token: str, chat_id: str, rate: float, seconds: float) -> None:
    """The ``send`` command."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(2)]
    stubs = [chat_pb2_grpc.ChatServiceStub(c) for c in channels]
    metadata = (("authorization", f"Bearer {token}"),)
    seqs: list[int] = []
    errors = 0
    total = max(1, int(rate * seconds))

    async def one(i: int) -> None:
        nonlocal errors
        request = chat_pb2.SendMessageRequest(
            chat_id=chat_id,
            text=f"{time.perf_counter():.6f} m{i}",
            client_message_id=uuid.uuid4().hex,
        )
        try:
            message = await stubs[i % 2].SendMessage(request, metadata=metadata, timeout=30)
            seqs.append(message.seq)
        except grpc.aio.AioRpcError:
            errors += 1

    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the offered rate
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    print(
        json.dumps(
            {
                "first": min(seqs, default=0),
                "last": max(seqs, default=0),
                "sent": len(seqs),
                "errors": errors,
                "seconds": elapsed,
            }
        ),
        flush=True,
    )


async def stream_receive(address: str, streams: int, seconds: float) -> None:
    """The ``stream-receive`` command."""
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, math.ceil(streams / STREAMS_PER_CHANNEL)))
    ]
    counts = [0] * streams
    request = f"{seconds}".encode()

    pushes: list[grpc.aio.UnaryStreamMultiCallable[bytes, bytes]] = [
        channel.unary_stream(STREAM_METHOD) for channel in channels
    ]

    async def hold(index: int) -> None:
        async for _ in pushes[index % len(pushes)](request):
            counts[index] += 1

    start = time.perf_counter()
    await asyncio.gather(*(hold(i) for i in range(streams)))
    elapsed = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    print(json.dumps({"messages": sum(counts), "seconds": elapsed}), flush=True)


def main(argv: list[str]) -> None:
    """Dispatch a command line."""
    match argv:
        case ["receive", address, chat_id]:
            asyncio.run(receive(address, chat_id))
        case ["send", address, token, chat_id, rate, seconds]:
            asyncio.run(send(address, token, chat_id, float(rate), float(seconds)))
        case ["stream-receive", address, streams, seconds]:
            asyncio.run(stream_receive(address, int(streams), float(seconds)))
        case _:
            raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
