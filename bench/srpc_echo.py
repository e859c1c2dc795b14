"""SRPC echo on one server process vs a plain `websockets` echo of the same bytes.

Each of N client connections (in a load-generator process on the other core) keeps
one uEcho request in flight. The baseline server echoes the request frame back;
the SRPC server decodes it, runs the handler and encodes a reply.
"""

from __future__ import annotations

import asyncio
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
    summarise,
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
    targets: dict[str, tuple[str, bool, int]],
    levels: list[int],
    warmup: float,
    duration: float,
    rounds: int,
) -> None:
    """Load process: per level, N connections to every server; alternating rounds.

    ``targets`` maps a label to (url, speaks SRPC, server pid).
    """
    body = wire.echo_body(MESSAGE)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
    for level in levels:
        sockets: dict[str, list[Any]] = {}
        for label, (url, srpc, _) in targets.items():
            sockets[label] = list(
                await asyncio.gather(
                    *(
                        wire.connect_raw(url, f"echo-{level}-{i}" if srpc else None, handshake=srpc)
                        for i in range(level)
                    )
                )
            )
        counters = [0] * level
        parts: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
        for index in range(rounds):
            for label, (_, _, pid) in targets.items():
                conns = sockets[label]

                async def one_echo(
                    worker: int, conns: list[Any] = conns, counters: list[int] = counters
                ) -> None:
                    counters[worker] += 1
                    frame = wire.with_request_id(f"{worker}-{counters[worker]}", body)
                    await wire.call(conns[worker], frame)

                part = await closed_loop(
                    level,
                    one_echo,
                    warmup=warmup if index == 0 else warmup / rounds,
                    duration=duration / rounds,
                    cpu_pids={"server": pid},
                    summarised=False,
                )
                parts[label].append(part)
        for label in targets:
            merged = summarise(parts[label])
            results[label].append(merged)
            channel.progress(f"{label}, c={level}: {describe(merged, 'req/s')}")
        for conns in sockets.values():
            await asyncio.gather(*(ws.close() for ws in conns))
    channel.send({"results": results})


def _transport() -> str:
    """The transport SrpcServer.listen picks here (MESHSRPC_TRANSPORT, else auto)."""
    try:
        from meshsrpc.srpc.transports.choice import choose_transport
    except ImportError:
        return "websockets"
    return choose_transport()


def check() -> None:
    """Needs SrpcServer and the test schema."""
    wire.test_proto()
    wire.srpc_server_class()


def run(profile: Profile) -> BenchResult:
    """Both servers up at once; one load process alternates rounds between them."""
    result = BenchResult(NAME, TITLE)
    levels = list(profile.echo_concurrency)
    timeout = profile.ready_timeout + len(levels) * (2 * (profile.warmup + profile.duration) + 60)
    ports = {"websockets echo": free_port(), "SRPC echo": free_port()}
    with children(
        Child("websockets echo server", serve_plain_echo, role="server",
              port=ports["websockets echo"]),
        Child("SRPC echo server", serve_srpc, role="server", port=ports["SRPC echo"]),
    ) as servers:  # fmt: skip
        for server in servers:
            server.recv(profile.ready_timeout)
        targets = {
            label: (f"ws://127.0.0.1:{ports[label]}/srpc", label == "SRPC echo", server.pid)
            for label, server in zip(ports, servers, strict=True)
        }
        with children(
            Child("load", generate_load, role="load", targets=targets, levels=levels,
                  warmup=profile.warmup, duration=profile.duration, rounds=profile.rounds)
        ) as (load,):  # fmt: skip
            runs = load.recv(timeout)["results"]
    base_runs, srpc_runs = runs["websockets echo"], runs["SRPC echo"]
    result.notes.append(f"SRPC server transport: {_transport()}")
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
