"""Hold idle Connect streams open for the memory benchmark.

``python -m benchmarks.idle_client ADDRESS TOKEN CHAT_ID AFTER_SEQ COUNT`` opens COUNT streams,
prints ``ready`` once every one has caught up, and holds them until standard input closes.
Streams are opened in batches: a burst of thousands of concurrent stream openings stalls
grpc's Python server here (reproduced with a bare grpc.aio server), batches of 100 do not.
"""

from __future__ import annotations

import asyncio
import sys

import grpc.aio

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc

STREAMS_PER_CONNECTION = 250
BATCH = 100


async def hold(address: str, token: str, chat_id: str, after_seq: int, count: int) -> None:
    """Open the streams, report readiness, wait for EOF on stdin."""
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, count // STREAMS_PER_CONNECTION))
    ]
    metadata = (("authorization", f"Bearer {token}"),)

    async def one(index: int, opened: asyncio.Event) -> None:
        stub = chat_pb2_grpc.ChatServiceStub(channels[index % len(channels)])
        request = chat_pb2.ConnectRequest(chat_id=chat_id, after_seq=after_seq)
        async for event in stub.Connect(request, metadata=metadata):
            if event.HasField("caught_up"):
                opened.set()

    tasks: list[asyncio.Task[None]] = []
    for start in range(0, count, BATCH):
        batch = [asyncio.Event() for _ in range(min(BATCH, count - start))]
        tasks += [asyncio.create_task(one(start + i, e)) for i, e in enumerate(batch)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in batch)), 60)
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
