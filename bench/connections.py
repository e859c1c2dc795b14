"""Connections: N idle SRPC clients on one node; server RSS per connection and connect rate.

The node is a MeshSrpcServer (each client is also registered in Redis) when it has
landed, else a plain SrpcServer. A load process opens the connections (100 at a
time), each one activated (ping answered) and checked with one uEcho round trip.
The orchestrator reads the server's RSS before and after.
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
    NotAvailable,
    Profile,
    children,
    free_port,
    private_redis,
)

NAME = "connections"
TITLE = "Idle SRPC connections on one node"
CONNECT_CONCURRENCY = 100


def check() -> None:
    """Needs at least SrpcServer."""
    wire.test_proto()
    wire.srpc_server_class()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError(f"no RSS for pid {pid}")


async def server_node(channel: ChildChannel, redis_url: str, port: int) -> None:
    """The node: MeshSrpcServer (or SrpcServer) with a uEcho handler."""
    import gc

    proto = wire.test_proto()
    try:
        from meshsrpc import RedisSettings

        server = wire.mesh_srpc_server_class()(
            proto.ClientMessage,
            proto.ServerMessage,
            mesh_key="benchconn",
            redis=RedisSettings(url=redis_url, prefix="meshbench"),
            auth_secret=wire.SECRET,
        )
        kind = "MeshSrpcServer"
    except NotAvailable:
        server = wire.srpc_server_class()(
            proto.ClientMessage, proto.ServerMessage, auth_secret=wire.SECRET
        )
        kind = "SrpcServer"

    async def echo(stream: Any, request: Any) -> Any:
        return proto.UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", echo)
    if kind == "MeshSrpcServer":
        await server.mesh_start()
    listening = await wire.start_listening(server, "127.0.0.1", port)
    channel.send({"ready": True, "kind": kind})
    while (await channel.recv()).get("cmd") == "gc":
        gc.collect()
        channel.send({"collected": True, "streams": len(server.streams_by_id)})
    if kind == "MeshSrpcServer":
        await server.mesh_stop()
    await server.close()
    listening.cancel()


async def open_connections(channel: ChildChannel, url: str, warm: int, count: int) -> None:
    """Load: ``warm`` connections, wait for "go", then ``count`` more; keep them open."""
    body = wire.echo_body("hi")
    sockets: list[Any] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    failures: list[str] = []

    async def one(index: int) -> None:
        async with gate:
            try:
                ws = await wire.connect_raw(url, f"idle-{index}")
                await asyncio.wait_for(wire.call(ws, wire.with_request_id("1", body)), 30)
            except Exception as exc:  # OSError, timeouts, websockets' handshake/close errors
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            sockets.append(ws)

    await asyncio.gather(*(one(i) for i in range(warm)))
    channel.send({"warm": len(sockets)})
    await channel.recv()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(warm + i) for i in range(count)))
    seconds = time.perf_counter() - t0
    channel.send(
        {"connected": len(sockets) - warm, "seconds": seconds, "failures": failures[:5],
         "failed": len(failures)}
    )  # fmt: skip
    await channel.recv()
    for ws in sockets:
        ws.transport.abort()  # a graceful close of thousands would only measure teardown


def run(profile: Profile) -> BenchResult:
    """Server on the server core, connections from the load core."""
    result = BenchResult(NAME, TITLE)
    count = profile.idle_connections
    warm = max(5, min(50, count // 10))
    port = free_port()
    with (
        private_redis() as redis_server,
        children(
            Child("node", server_node, role="server", redis_url=redis_server.url, port=port)
        ) as (node,),
    ):
        kind = node.recv(profile.ready_timeout)["kind"]
        assert node.pid is not None
        with children(
            Child("clients", open_connections, role="load", url=f"ws://127.0.0.1:{port}/srpc",
                  warm=warm, count=count)
        ) as (load,):  # fmt: skip
            load.recv(profile.ready_timeout + 60)
            node.request({"cmd": "gc"}, 30)
            time.sleep(0.5)
            rss_before = rss_bytes(node.pid)
            done = load.request({"cmd": "go"}, 60 + count / 20)
            time.sleep(1.0)
            streams = node.request({"cmd": "gc"}, 60)["streams"]
            rss_after = rss_bytes(node.pid)
    if not done["connected"]:
        raise RuntimeError(f"no connection succeeded: {done['failures']}")
    per_conn = (rss_after - rss_before) / done["connected"]
    if done["failed"]:
        result.notes.append(f"{done['failed']} connections failed, e.g. {done['failures']}")
    result.notes.append(
        f"server: {kind}; {done['connected']} connections after {warm} warm-up ones; "
        f"server saw {streams} streams; RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
    )
    result.figure(f"RSS per connection ({count:,} idle, {kind})", per_conn / 1024, "KiB",
                  higher_is_better=False, connections=count)  # fmt: skip
    result.figure(f"connect rate ({CONNECT_CONCURRENCY} at a time)",
                  done["connected"] / done["seconds"], "connections/s",
                  connections=count)  # fmt: skip
    result.target("< 30 KiB RSS per idle connection", per_conn / 1024 < 30,
                  f"{per_conn / 1024:.1f} KiB ({count:,} connections)")  # fmt: skip
    return result
