"""``python -m benchmarks.unary``: GetChat against the echo ceiling, in interleaved rounds.

The unary part of ``make bench`` alone, repeated: each round measures the bare grpc.aio echo
ceiling, then GetChat (local authz) with tracing off, then with tracing on (every call sampled,
exported over OTLP to a sink that discards), each for ``--seconds``. On a shared machine the
ratios of one round are comparable where absolute rates are not, and the rounds show how much
they move. The services are the ones the environment imports, so that setting ``PYTHONPATH``
to another checkout's ``services`` measures that checkout with this harness.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
from pathlib import Path

import grpc.aio

from benchmarks.__main__ import (
    FULL,
    bearer,
    echo_ceiling,
    get_chat_rate,
    get_chat_traced,
    make_users,
    start_stack,
)
from benchmarks.report import Report
from devtools.postgres import throwaway_postgres
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc

OFF = "2. GetChat, local authz"
ON = "2. GetChat, local authz, tracing on (every call, OTLP)"
ECHO = "1. echo ceiling (bare grpc.aio unary)"


async def rounds(count: int, seconds: float, tracing_on: bool) -> list[dict[str, float]]:
    """The figures of each round."""
    plan = dataclasses.replace(FULL, seconds=seconds)
    workdir = Path(tempfile.mkdtemp(prefix="meshchat-unary-"))
    results = []
    with throwaway_postgres() as pg:
        auth_db, chat_db = pg.create_database("unary_auth"), pg.create_database("unary_chat")
        auth, chat = await start_stack(workdir, "local", chat_db, auth_db)
        try:
            async with grpc.aio.insecure_channel(auth.address) as channel:
                token = (await make_users(channel, ["owner"]))["owner"]
            async with grpc.aio.insecure_channel(chat.address) as channel:
                created = await chat_pb2_grpc.ChatServiceStub(channel).CreateChat(
                    chat_pb2.CreateChatRequest(name="unary"), metadata=bearer(token), timeout=30
                )
            for index in range(count):
                report = Report({})
                echo = await echo_ceiling(report, plan)
                rate = await get_chat_rate(chat.address, token, created.id, seconds)
                report.add(OFF, rate, "calls/s")
                if tracing_on:
                    await get_chat_traced(
                        report, plan, workdir, chat_db, auth.address, token, created.id, echo
                    )
                figures = {ECHO: echo, OFF: rate, "off / echo": rate / echo}
                if tracing_on:
                    figures[ON] = report.figures[ON]
                    figures["on / echo"] = report.figures[ON] / echo
                print(
                    f"round {index + 1}: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
                )
                results.append(figures)
        finally:
            await asyncio.to_thread(chat.stop)
            await asyncio.to_thread(auth.stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.unary", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-tracing", action="store_true", help="skip the tracing-on figure")
    args = parser.parse_args()
    results = asyncio.run(rounds(args.rounds, args.seconds, not args.no_tracing))
    for key in ("off / echo", "on / echo"):
        values = sorted(r[key] for r in results if key in r)
        if values:
            print(
                f"{key}: median {values[len(values) // 2]:.2f} (from {values[0]:.2f} to {values[-1]:.2f})"
            )


if __name__ == "__main__":
    main()
