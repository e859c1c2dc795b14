"""Local invoke by client id (the client is on this node) vs SrpcServer.invoke(stream).

One MeshSrpcServer process holds the client (a raw SRPC connection in a separate
process on the other core). Invoking by client id goes through the registry
lookup / local routing; the baseline hands the stream straight to SrpcServer.invoke.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import wire
from .cross_node import srpc_client
from .runner import (
    BenchResult,
    Child,
    ChildChannel,
    Profile,
    children,
    closed_loop,
    describe,
    free_port,
    private_redis,
    summarise,
    times,
)

NAME = "local_invoke"
TITLE = "Local invoke by client id"
CLIENT_ID = "bench-local-1"


def check() -> None:
    """Needs MeshSrpcServer (and so SrpcServer)."""
    wire.test_proto()
    wire.mesh_srpc_server_class()


async def server_node(
    channel: ChildChannel,
    redis_url: str,
    port: int,
    levels: list[int],
    warmup: float,
    duration: float,
    rounds: int,
) -> None:
    """The node: serve, wait for the client, then measure both ways of invoking it."""
    from meshsrpc import RedisSettings

    proto = wire.test_proto()
    server = wire.mesh_srpc_server_class()(
        proto.ClientMessage,
        proto.ServerMessage,
        mesh_key="benchlocal",
        redis=RedisSettings(url=redis_url, prefix="meshbench"),
        auth_secret=wire.SECRET,
    )
    await server.mesh_start()
    listening = await wire.start_listening(server, "127.0.0.1", port)
    channel.send({"ready": True})
    command = await channel.recv()  # the client is connected
    cpu_pids = {"client": command["client_pid"]}
    deadline = time.monotonic() + 30
    while (
        CLIENT_ID not in server.streams_by_client_id
        or await server.client_registry.get_client(CLIENT_ID) is None
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{CLIENT_ID} never became active and registered")
        await asyncio.sleep(0.05)
    stream = server.streams_by_client_id[CLIENT_ID]
    request = proto.DNotifyRequest(notification="ping")

    async def by_stream(_: int) -> None:
        await server.invoke(stream, "dNotify", request)

    async def by_client_id(_: int) -> None:
        await server.invoke(CLIENT_ID, "dNotify", request)

    results: dict[str, list[dict[str, Any]]] = {"stream": [], "client_id": []}
    for level in levels:
        parts: dict[str, list[dict[str, Any]]] = {"stream": [], "client_id": []}
        # Alternating rounds, so a burst of outside load hits both variants alike.
        for index in range(rounds):
            for label, fn in (("stream", by_stream), ("client_id", by_client_id)):
                part = await closed_loop(
                    level,
                    fn,
                    warmup=warmup if index == 0 else warmup / rounds,
                    duration=duration / rounds,
                    cpu_pids=cpu_pids,
                    summarised=False,
                )
                parts[label].append(part)
        for label, label_parts in parts.items():
            result = summarise(label_parts)
            channel.progress(f"{label}, {level} in flight: {describe(result, 'invokes/s')}")
            results[label].append(result)
    channel.send({"results": results})
    await channel.recv()
    await server.mesh_stop()
    await server.close()
    listening.cancel()


def run(profile: Profile) -> BenchResult:
    """One node, one client process; baseline and client-id invokes interleaved."""
    result = BenchResult(NAME, TITLE)
    levels = list(profile.local_concurrency)
    timeout = profile.ready_timeout + 2 * len(levels) * (profile.warmup + profile.duration + 30)
    port = free_port()
    with private_redis() as redis_server:
        node = Child(
            "node",
            server_node,
            role="server",
            redis_url=redis_server.url,
            port=port,
            levels=levels,
            warmup=profile.warmup,
            rounds=profile.rounds,
            duration=profile.duration,
        )
        with children(node):
            node.recv(profile.ready_timeout)
            client = Child(
                "SRPC client",
                srpc_client,
                role="load",
                url=f"ws://127.0.0.1:{port}/srpc",
                client_id=CLIENT_ID,
            )
            with children(client):
                client.recv(profile.ready_timeout)
                runs = node.request({"cmd": "measure", "client_pid": client.pid}, timeout)[
                    "results"
                ]
    details, met = [], True
    for base, mesh in zip(runs["stream"], runs["client_id"], strict=True):
        level = mesh["concurrency"]
        result.add_load("SrpcServer.invoke(stream)", base)
        result.add_load("invoke(client_id)", mesh)
        p50 = result.figure(
            f"p50, {level} in flight", mesh["p50_ms"], "ms", baseline=base["p50_ms"],
            baseline_name="SrpcServer.invoke(stream)", higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"invokes/s, {level} in flight", mesh["throughput"], "invokes/s",
            baseline=base["throughput"], baseline_name="SrpcServer.invoke(stream)",
            in_flight=level,
        )  # fmt: skip
        result.cpu_figure(
            f"node CPU per invoke, {level} in flight", mesh, base, ["self"],
            "SrpcServer.invoke(stream)", in_flight=level,
        )  # fmt: skip
        details.append(f"{level} in flight: {times(p50['ratio'])}")
        met = met and p50["ratio"] is not None and p50["ratio"] <= 1.2
    result.target("local invoke p50 <= 1.2x SrpcServer.invoke(stream)", met, ", ".join(details))
    return result
