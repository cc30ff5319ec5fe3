"""Hold idle Connect streams open for the memory benchmark.

``python -m benchmarks.idle_client ADDRESS TOKEN CHAT_ID AFTER_SEQ COUNT`` opens COUNT streams,
prints ``ready`` once every one has caught up, and holds them until standard input closes.
One Python process cannot hold thousands of streams on its own (grpc stalls somewhere past
3,000 here), so the benchmark starts several of these.
"""

from __future__ import annotations

import asyncio
import sys

import grpc.aio

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc

STREAMS_PER_CONNECTION = 250


async def hold(address: str, token: str, chat_id: str, after_seq: int, count: int) -> None:
    """Open the streams, report readiness, wait for EOF on stdin."""
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, count // STREAMS_PER_CONNECTION))
    ]
    metadata = (("authorization", f"Bearer {token}"),)
    caught_up = 0
    everyone = asyncio.Event()

    async def one(index: int) -> None:
        nonlocal caught_up
        stub = chat_pb2_grpc.ChatServiceStub(channels[index % len(channels)])
        request = chat_pb2.ConnectRequest(chat_id=chat_id, after_seq=after_seq)
        async for event in stub.Connect(request, metadata=metadata):
            if event.HasField("caught_up"):
                caught_up += 1
                if caught_up == count:
                    everyone.set()

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.wait_for(everyone.wait(), 120)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()


if __name__ == "__main__":
    address, token, chat_id, after_seq, count = sys.argv[1:6]
    asyncio.run(hold(address, token, chat_id, int(after_seq), int(count)))
