"""SRPC echo on one server process vs a plain `websockets` echo of the same bytes.

Each of N client connections (in a load-generator process on the other core) keeps
one uEcho request in flight. The baseline server echoes the request frame back;
the SRPC server decodes it, runs the handler and encodes a reply.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import wire
from .runner import (
    BenchResult,
    Child,
    ChildChannel,
    Profile,
    children,
    closed_loop,
    describe,
    free_port,
    times,
)

NAME = "srpc_echo"
TITLE = "SRPC echo, 1 server process"
MESSAGE = "hello from the meshsrpc benchmark"


async def serve_srpc(channel: ChildChannel, port: int) -> None:
    """Server process: SrpcServer with a uEcho handler on ``port``."""
    proto = wire.test_proto()
    server_class = wire.srpc_server_class()
    server = server_class(proto.ClientMessage, proto.ServerMessage, auth_secret=wire.SECRET)

    async def echo(stream: Any, request: Any) -> Any:
        return proto.UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", echo)
    listening = await wire.start_listening(server, "127.0.0.1", port)
    channel.send({"ready": True})
    await channel.recv()
    await server.close()
    listening.cancel()


async def serve_plain_echo(channel: ChildChannel, port: int) -> None:
    """Server process: `websockets` echo, compression off."""
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for frame in ws:
            await ws.send(frame)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None, ping_interval=None):
        channel.send({"ready": True})
        await channel.recv()


async def generate_load(
    channel: ChildChannel,
    url: str,
    srpc: bool,
    levels: list[int],
    warmup: float,
    duration: float,
    server_pid: int,
) -> None:
    """Load process: for each concurrency level, that many connections in a closed loop."""
    body = wire.echo_body(MESSAGE)
    results = []
    for level in levels:
        sockets = await asyncio.gather(
            *(
                wire.connect_raw(url, f"echo-{level}-{i}" if srpc else None, handshake=srpc)
                for i in range(level)
            )
        )
        counters = [0] * level

        async def one_echo(
            worker: int, sockets: list[Any] = sockets, counters: list[int] = counters
        ) -> None:
            counters[worker] += 1
            frame = wire.with_request_id(f"{worker}-{counters[worker]}", body)
            await wire.call(sockets[worker], frame)

        result = await closed_loop(
            level, one_echo, warmup=warmup, duration=duration, cpu_pids={"server": server_pid}
        )
        channel.progress(f"c={level}: {describe(result, 'req/s')}")
        results.append(result)
        await asyncio.gather(*(ws.close() for ws in sockets))
    channel.send({"results": results})


def run(profile: Profile) -> BenchResult:
    """Measure the baseline, then SRPC, at every concurrency level of the profile."""
    result = BenchResult(NAME, TITLE)
    levels = list(profile.echo_concurrency)
    timeout = profile.ready_timeout + len(levels) * (profile.warmup + profile.duration + 30)
    runs: dict[str, list[dict[str, Any]]] = {}
    for label, server_fn, srpc in (
        ("websockets echo", serve_plain_echo, False),
        ("SRPC echo", serve_srpc, True),
    ):
        port = free_port()
        url = f"ws://127.0.0.1:{port}/srpc"
        with children(Child(f"{label} server", server_fn, role="server", port=port)) as (server,):
            server.recv(profile.ready_timeout)
            started = time.monotonic()
            with children(
                Child(
                    f"{label} load",
                    generate_load,
                    role="load",
                    url=url,
                    srpc=srpc,
                    levels=levels,
                    server_pid=server.pid,
                    warmup=profile.warmup,
                    duration=profile.duration,
                )
            ) as (load,):
                runs[label] = load.recv(timeout)["results"]
            result.notes.append(f"{label}: measured in {time.monotonic() - started:.1f} s")
    base_runs, srpc_runs = runs["websockets echo"], runs["SRPC echo"]
    met = True
    for base, srpc_run in zip(base_runs, srpc_runs, strict=True):
        level = srpc_run["concurrency"]
        result.add_load("websockets echo", base)
        result.add_load("SRPC echo", srpc_run)
        fig = result.figure(
            f"throughput, {level} clients",
            srpc_run["throughput"],
            "req/s",
            baseline=base["throughput"],
            baseline_name="plain websockets echo",
            concurrency=level,
        )
        result.figure(
            f"p50, {level} clients",
            srpc_run["p50_ms"],
            "ms",
            baseline=base["p50_ms"],
            baseline_name="plain websockets echo",
            higher_is_better=False,
            concurrency=level,
        )
        result.figure(
            f"p99, {level} clients",
            srpc_run["p99_ms"],
            "ms",
            baseline=base["p99_ms"],
            baseline_name="plain websockets echo",
            higher_is_better=False,
            concurrency=level,
        )
        result.cpu_figure(
            f"server CPU per request, {level} clients", srpc_run, base, ["server"],
            "plain websockets echo", concurrency=level,
        )  # fmt: skip
        met = met and fig["ratio"] is not None and fig["ratio"] >= 0.5
    ratios = ", ".join(
        f"c={f['params']['concurrency']}: {times(f['ratio'])}"
        for f in result.figures
        if f["name"].startswith("throughput") and f["ratio"] is not None
    )
    result.target("SRPC echo throughput >= 0.5x plain websockets echo", met, ratios)
    return result
