"""Framing of the direct channels: length-prefixed frames on asyncio vs a grpclib unary echo.

Issue 16 item 2: the cheapest framing that stays simple. Both are a plain echo of a
mesh-request-sized payload between two processes (server on the server core, load
on the load core): what the transport costs per call before any mesh work. grpclib
(pure-Python HTTP/2) is measured because it is in the product design's dependencies;
it is reported as not available when it is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .cross_node import RAW_PAYLOAD, _Frames
from .runner import (
    BenchResult,
    Child,
    ChildChannel,
    NotAvailable,
    Profile,
    alternate,
    children,
    free_port,
    log,
    measurement_loop,
)

NAME = "framing"
TITLE = "Direct-channel framing: length-prefixed asyncio frames vs grpclib unary echo"
_METHOD = "/meshsrpc.bench.Echo/Echo"


def _grpclib() -> Any:
    try:
        import grpclib
        from google.protobuf import wrappers_pb2
    except ImportError as exc:
        raise NotAvailable(f"grpclib not installed ({exc}); pip install -e '.[bench]'") from exc
    return grpclib, wrappers_pb2


async def frames_server(channel: ChildChannel, port: int) -> None:
    """Echo every frame back."""
    loop = asyncio.get_running_loop()

    def make() -> _Frames:
        frames = _Frames(lambda frame: frames.send(frame))
        return frames

    server = await loop.create_server(make, "127.0.0.1", port)
    channel.send({"ready": True})
    await channel.recv()
    server.close()


async def frames_client(channel: ChildChannel, port: int) -> None:
    """Frame "<id>|payload", resolve the call when it comes back."""
    loop = asyncio.get_running_loop()
    pending: dict[bytes, asyncio.Future[bytes]] = {}

    def on_frame(frame: bytes) -> None:
        future = pending.pop(frame.split(b"|", 1)[0], None)
        if future is not None and not future.done():
            future.set_result(frame)

    _, frames = await loop.create_connection(lambda: _Frames(on_frame), "127.0.0.1", port)
    counter = 0

    async def call(_: int) -> None:
        nonlocal counter
        counter += 1
        rid = str(counter).encode()
        future: asyncio.Future[bytes] = loop.create_future()
        pending[rid] = future
        frames.send(rid + b"|" + RAW_PAYLOAD)
        await asyncio.wait_for(future, 10)

    channel.send({"ready": True})
    await measurement_loop(channel, call, {})


async def grpc_server(channel: ChildChannel, port: int) -> None:
    """grpclib server with one unary method echoing a BytesValue."""
    try:
        _, wrappers = _grpclib()
    except NotAvailable as exc:
        channel.send({"not_available": str(exc)})
        return
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server

    class Echo:
        async def echo(self, stream: Any) -> None:
            await stream.send_message(await stream.recv_message())

        def __mapping__(self) -> dict[str, Any]:
            return {
                _METHOD: Handler(
                    self.echo, Cardinality.UNARY_UNARY, wrappers.BytesValue, wrappers.BytesValue
                )
            }

    server = Server([Echo()])
    await server.start("127.0.0.1", port)
    channel.send({"ready": True})
    await channel.recv()
    server.close()
    await server.wait_closed()


async def grpc_client(channel: ChildChannel, port: int) -> None:
    """grpclib unary calls of the echo."""
    try:
        _, wrappers = _grpclib()
    except NotAvailable as exc:
        channel.send({"not_available": str(exc)})
        return
    from grpclib.client import Channel, UnaryUnaryMethod

    connection = Channel("127.0.0.1", port)
    method = UnaryUnaryMethod(connection, _METHOD, wrappers.BytesValue, wrappers.BytesValue)
    request = wrappers.BytesValue(value=RAW_PAYLOAD)

    async def call(_: int) -> None:
        await asyncio.wait_for(method(request), 10)

    channel.send({"ready": True})
    await measurement_loop(channel, call, {})
    connection.close()


def _start(
    stack: contextlib.ExitStack, label: str, profile: Profile, server: Any, client: Any
) -> Child:
    log(f"{NAME}: starting {label}")
    port = free_port()
    (srv,) = stack.enter_context(children(Child(f"{label} server", server, role="server",
                                                port=port)))  # fmt: skip
    srv.recv(profile.ready_timeout)
    (load,) = stack.enter_context(children(Child(f"{label} client", client, role="load",
                                                 port=port)))  # fmt: skip
    load.recv(profile.ready_timeout)
    return load


def run(profile: Profile) -> list[BenchResult]:
    """Both echoes at the cross-node in-flight levels, in alternating rounds."""
    result = BenchResult(NAME, TITLE)
    levels = list(profile.cross_concurrency)
    with contextlib.ExitStack() as stack:
        variants = {"frames": _start(stack, "frames", profile, frames_server, frames_client)}
        try:
            variants["grpclib"] = _start(stack, "grpclib", profile, grpc_server, grpc_client)
        except NotAvailable as exc:
            result.notes.append(f"grpclib: not available ({exc})")
        runs = alternate(variants, levels, profile)
    base_name = "length-prefixed frames on asyncio (the direct channels' framing)"
    for index, frames in enumerate(runs["frames"]):
        level = frames["concurrency"]
        result.add_load("frames", frames)
        result.figure(f"frames p50, {level} in flight", frames["p50_ms"], "ms",
                      higher_is_better=False, in_flight=level)  # fmt: skip
        result.figure(f"frames calls/s, {level} in flight", frames["throughput"], "calls/s",
                      in_flight=level)  # fmt: skip
        grpc = runs.get("grpclib")
        if not grpc:
            continue
        run_ = grpc[index]
        result.add_load("grpclib", run_)
        result.figure(
            f"grpclib p50, {level} in flight", run_["p50_ms"], "ms", baseline=frames["p50_ms"],
            baseline_name=base_name, higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"grpclib p99, {level} in flight", run_["p99_ms"], "ms", baseline=frames["p99_ms"],
            baseline_name=base_name, higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"grpclib calls/s, {level} in flight", run_["throughput"], "calls/s",
            baseline=frames["throughput"], baseline_name=base_name, in_flight=level,
        )  # fmt: skip
    return [result]
