"""gRPC gateway call to a client on another node, next to the same call made by a node.

Two variants, measured in alternating rounds, each with its own private Redis:

- direct: node A ``invoke``s the client held by node B (as in cross_node.py);
- gateway: a grpclib caller (``SrpcTestGatewayStub.d_notify``, one HTTP/2 channel)
  calls the gateway served by node A, which invokes the client on node B.

The difference is what the gateway costs: the caller's gRPC round trip to A, protobuf
decode/encode of the gateway messages, and grpclib's HTTP/2 framing on both sides.
Node B and Redis are on the server core; A, the client and the caller on the load
core.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from . import cross_node, wire
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
    private_redis,
)

NAME = "gateway_cross"
TITLE = "gRPC gateway call to a client on another node (vs the node's own invoke)"
GOLDEN = str(Path(__file__).resolve().parents[1] / "tests" / "golden")


def _golden() -> None:
    # The gateway code is meshgen's golden output for srpc_test.proto with --gateway.
    if GOLDEN not in sys.path:
        sys.path.insert(0, GOLDEN)


def check() -> None:
    """The gateway needs grpclib (meshsrpc[gateway]) and the generated gateway code."""
    wire.test_proto()
    _golden()
    try:
        import grpclib  # noqa: F401
        import srpc_test_gateway.srpc_test_gateway  # noqa: F401
    except ImportError as exc:
        raise NotAvailable(f"the gateway cannot be imported ({exc})") from exc


async def gateway_node_a(channel: ChildChannel, redis_url: str) -> None:
    """Node A: the generated server serving the gateway, once the client is registered."""
    _golden()
    from meshsrpc import RedisSettings
    from srpc_test_gateway.srpc_test_srpc import SrpcTestMeshSrpcServer

    server = SrpcTestMeshSrpcServer(
        cross_node.MESH_KEY,
        redis=RedisSettings(url=redis_url, prefix=cross_node.PREFIX),
        auth_secret=wire.SECRET,
    )
    await server.mesh_start()
    gateway = await server.serve_gateway("127.0.0.1", 0)
    try:
        deadline = time.monotonic() + 30
        while await server.client_registry.get_client(cross_node.CLIENT_ID) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cross_node.CLIENT_ID} never appeared in the registry")
            await asyncio.sleep(0.05)
        channel.send({"ready": True, "port": gateway.port})
        await channel.recv()
    finally:
        await gateway.close()
        await server.mesh_stop()
        await server.close()


async def gateway_caller(channel: ChildChannel, port: int, cpu_pids: dict[str, int]) -> None:
    """The other service: calls dNotify on the client through the gateway, on command."""
    _golden()
    from grpclib.client import Channel
    from srpc_test_gateway.sgnl24.TestRpc import DNotifyRequest
    from srpc_test_gateway.sgnl24.TestRpc.gateway import DNotifyGatewayRequest
    from srpc_test_gateway.srpc_test_gateway import SrpcTestGatewayStub

    grpc_channel = Channel("127.0.0.1", port)
    stub = SrpcTestGatewayStub(grpc_channel, timeout=10)
    request = DNotifyGatewayRequest(
        client_id=cross_node.CLIENT_ID, request=DNotifyRequest(notification="ping")
    )

    async def call(_: int) -> None:
        response = await stub.d_notify(request)
        assert response.acknowledged

    channel.send({"ready": True})
    try:
        await measurement_loop(channel, call, cpu_pids)
    finally:
        grpc_channel.close()


def _start_gateway(stack: contextlib.ExitStack, profile: Profile) -> Child:
    log(f"{NAME}: starting gateway")
    redis_server = stack.enter_context(private_redis())
    port = free_port()
    (b,) = stack.enter_context(
        children(
            Child("meshsrpc B", cross_node.mesh_node_b, role="server",
                  redis_url=redis_server.url, port=port)
        )
    )  # fmt: skip
    b.recv(profile.ready_timeout)
    (client,) = stack.enter_context(
        children(
            Child("SRPC client", cross_node.srpc_client, role="load",
                  url=f"ws://127.0.0.1:{port}/srpc", client_id=cross_node.CLIENT_ID)
        )
    )  # fmt: skip
    client.recv(profile.ready_timeout)
    (a,) = stack.enter_context(
        children(Child("gateway A", gateway_node_a, role="load", redis_url=redis_server.url))
    )
    gateway_port = a.recv(profile.ready_timeout)["port"]
    pids = {"A": a.pid, "B": b.pid, "client": client.pid, "redis": redis_server.pid}
    (caller,) = stack.enter_context(
        children(
            Child("gateway caller", gateway_caller, role="load", port=gateway_port,
                  cpu_pids={k: v for k, v in pids.items() if v is not None})
        )
    )  # fmt: skip
    caller.recv(profile.ready_timeout)
    return caller


def _start_direct(stack: contextlib.ExitStack, profile: Profile) -> Child:
    return cross_node._start_trio(
        stack, "direct", profile,
        lambda url, port: Child("meshsrpc B", cross_node.mesh_node_b, role="server",
                                redis_url=url, port=port),
        lambda port, _: Child("SRPC client", cross_node.srpc_client, role="load",
                              url=f"ws://127.0.0.1:{port}/srpc", client_id=cross_node.CLIENT_ID),
        lambda url, pids, _: Child("meshsrpc A", cross_node.mesh_node_a, role="load",
                                   redis_url=url, cpu_pids=pids),
    )  # fmt: skip


def run(profile: Profile) -> list[BenchResult]:
    """The node's own invoke and the gateway call, side by side, in alternating rounds."""
    result = BenchResult(NAME, TITLE)
    with contextlib.ExitStack() as stack:
        try:
            variants = {"direct": _start_direct(stack, profile)}
            variants["gateway"] = _start_gateway(stack, profile)
        except NotAvailable as exc:
            result.status, result.reason = "not available", str(exc)
            return [result]
        runs = alternate(variants, list(profile.cross_concurrency), profile)
    base_name = "node A invoke(client_id) of a client on B"
    for base, run_ in zip(runs["direct"], runs["gateway"], strict=True):
        level = run_["concurrency"]
        result.add_load("node invoke", base)
        result.add_load("gateway (grpclib)", run_)
        result.figure(
            f"p50, {level} in flight", run_["p50_ms"], "ms", baseline=base["p50_ms"],
            baseline_name=base_name, higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"p99, {level} in flight", run_["p99_ms"], "ms", baseline=base["p99_ms"],
            baseline_name=base_name, higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"calls/s, {level} in flight", run_["throughput"], "calls/s",
            baseline=base["throughput"], baseline_name=base_name, in_flight=level,
        )  # fmt: skip
        # Every process of the call; in the direct variant A itself is the caller.
        result.figure(
            f"CPU per call, every process, {level} in flight",
            _cpu(run_, ["self", "A", "B", "client", "redis"]), "us CPU/op",
            baseline=_cpu(base, ["self", "B", "client", "redis"]), baseline_name=base_name,
            higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"CPU per call, node A, {level} in flight", _cpu(run_, ["A"]), "us CPU/op",
            baseline=_cpu(base, ["self"]), baseline_name="node A invoking",
            higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"CPU per call, the grpclib caller, {level} in flight", _cpu(run_, ["self"]),
            "us CPU/op", higher_is_better=False, in_flight=level,
        )  # fmt: skip
    return [result]


def _cpu(load: dict[str, Any], processes: list[str]) -> float | None:
    values = [load.get("cpu_us_per_op", {}).get(p) for p in processes]
    return None if any(v is None for v in values) else sum(values)
