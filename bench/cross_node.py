"""Cross-node invoke: node A calls a client held by node B (3 processes, one private Redis).

Three variants, each in the same layout (A and the client on the load core, B and
Redis on the server core):

- meshsrpc: ``MeshSrpcServer.invoke(client_id, "dNotify", ...)`` on A; the client
  is a raw SRPC connection to B that answers every dNotify;
- raw baseline: the minimum any design pays: redis-py PUBLISH to B's channel, B
  sends the bytes over a plain websocket, the client echoes them, B PUBLISHes them
  back to A's channel;
- python-socketio with AsyncRedisManager: A ``call()``s the client's sid on B
  (see socketio_cross.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, cast

from . import socketio_cross, wire
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
    times,
)

NAME = "cross_node"
TITLE = "Cross-node invoke (A -> client on B)"
MESH_KEY = "bench"
PREFIX = "meshbench"
CLIENT_ID = "bench-client-1"
# About the size of the mesh's forward request, so the raw baseline moves as many bytes.
DIRECT_SECRET = "meshsrpc-bench-direct-secret"
RAW_PAYLOAD = (
    b'{"requestId":"00000000-0000-0000-0000-000000000000","senderInstanceId":1,'
    b'"type":"forward","data":{"clientId":"bench-client-1","type":"dNotify",'
    b'"data":{"notification":"ping"}},"timeoutMs":10000}'
)


def check() -> None:
    """meshsrpc's MeshSrpcServer must be there for the meshsrpc variant."""
    wire.test_proto()


# --- meshsrpc ------------------------------------------------------------------------------


def _mesh_server(redis_url: str, direct: bool = False, metrics: bool = False) -> Any:
    from meshsrpc import RedisSettings

    proto = wire.test_proto()
    server_class = wire.mesh_srpc_server_class()
    options: dict[str, Any] = {"direct": False}
    if metrics:
        options["metrics"] = wire.prometheus_metrics()
    if direct:
        try:
            from meshsrpc import DirectSettings
        except ImportError as exc:
            raise NotAvailable(f"no direct channels in this meshsrpc ({exc})") from exc
        options["direct"] = DirectSettings(secret=DIRECT_SECRET)
    return server_class(
        proto.ClientMessage,
        proto.ServerMessage,
        mesh_key=MESH_KEY,
        redis=RedisSettings(url=redis_url, prefix=PREFIX),
        auth_secret=wire.SECRET,
        **options,
    )


async def mesh_node_b(
    channel: ChildChannel,
    redis_url: str,
    port: int,
    direct: bool = False,
    metrics: bool = False,
    uvloop: bool | None = None,
) -> None:
    """Node B: MeshSrpcServer listening for the client (with PrometheusMetrics if asked)."""
    server = _mesh_server(redis_url, direct, metrics)
    await server.mesh_start()
    listening = await wire.start_listening(server, "127.0.0.1", port)
    channel.send({"ready": True, "instance_id": server.mesh_instance_id})
    await channel.recv()
    await server.mesh_stop()
    await server.close()
    listening.cancel()


async def srpc_client(
    channel: ChildChannel, url: str, client_id: str, uvloop: bool | None = None
) -> None:
    """The client: one raw SRPC connection to B answering every dNotify."""
    ws = await wire.connect_raw(url, client_id)
    answering = asyncio.create_task(wire.answer_notify_requests(ws))
    channel.send({"ready": True})
    await channel.recv()
    answering.cancel()
    await ws.close()


async def mesh_node_a(
    channel: ChildChannel,
    redis_url: str,
    cpu_pids: dict[str, int],
    direct: bool = False,
    metrics: bool = False,
    uvloop: bool | None = None,
) -> None:
    """Node A: wait for the client to be registered, then invoke it on command.

    ``uvloop`` (every child of a trio takes it) picks the loop in bench.runner.
    """
    proto = wire.test_proto()
    server = _mesh_server(redis_url, direct, metrics)
    await server.mesh_start()
    try:
        deadline = time.monotonic() + 30
        while (client := await server.client_registry.get_client(CLIENT_ID)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{CLIENT_ID} never appeared in the registry")
            await asyncio.sleep(0.05)
        request = proto.DNotifyRequest(notification="ping")

        async def invoke(_: int) -> None:
            response = await server.invoke(CLIENT_ID, "dNotify", request)
            assert response.acknowledged

        if direct:
            # The first calls go through Redis while the channel to B opens.
            link = server._mesh_client_service.mesh.direct_link
            while not link.is_direct(client.node_id):
                if time.monotonic() > deadline:
                    raise TimeoutError("the direct channel to B never opened")
                await invoke(0)
                await asyncio.sleep(0.01)

        channel.send({"ready": True})
        await measurement_loop(channel, invoke, cpu_pids)
    finally:
        await server.mesh_stop()
        await server.close()


# --- raw baseline --------------------------------------------------------------------------
# redis-py's asyncio pool raises MaxConnectionsError past 100 connections; 100
# concurrent PUBLISHes need a bigger pool.


async def raw_node_b(channel: ChildChannel, redis_url: str, port: int, tag: str) -> None:
    """Raw B: SUBSCRIBE own channel -> websocket to the client -> its echo -> PUBLISH to A."""
    import redis.asyncio as aioredis
    from websockets.asyncio.server import serve

    publisher = aioredis.Redis.from_url(redis_url, max_connections=1000)
    pubsub = publisher.pubsub()
    await pubsub.subscribe(f"{tag}:B")
    client_ws: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handle(ws: Any) -> None:
        client_ws.set_result(ws)
        async for frame in ws:
            await publisher.publish(f"{tag}:A", frame)

    async def forward() -> None:
        ws = await client_ws
        async for message in pubsub.listen():
            if message["type"] == "message":
                await ws.send(message["data"])

    async with serve(handle, "127.0.0.1", port, compression=None, ping_interval=None):
        forwarding = asyncio.create_task(forward())
        channel.send({"ready": True})
        await channel.recv()
        forwarding.cancel()
    await pubsub.aclose()
    await publisher.aclose()


async def raw_client(channel: ChildChannel, url: str, uvloop: bool | None = None) -> None:
    """Raw client: echo every frame."""
    ws = await wire.connect_raw(url, None, handshake=False)

    async def echo() -> None:
        async for frame in ws:
            await ws.send(frame)

    echoing = asyncio.create_task(echo())
    channel.send({"ready": True})
    await channel.recv()
    echoing.cancel()
    await ws.close()


async def raw_node_a(
    channel: ChildChannel, redis_url: str, tag: str, cpu_pids: dict[str, int]
) -> None:
    """Raw A: PUBLISH "<id>|payload" to B, resolve the future when it comes back."""
    import redis.asyncio as aioredis

    publisher = aioredis.Redis.from_url(redis_url, max_connections=1000)
    pubsub = publisher.pubsub()
    await pubsub.subscribe(f"{tag}:A")
    pending: dict[bytes, asyncio.Future[bytes]] = {}
    loop = asyncio.get_running_loop()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                data: bytes = message["data"]
                future = pending.pop(data.split(b"|", 1)[0], None)
                if future is not None and not future.done():
                    future.set_result(data)

    listening = asyncio.create_task(listen())
    counter = 0

    async def round_trip(_: int) -> None:
        nonlocal counter
        counter += 1
        rid = str(counter).encode()
        future: asyncio.Future[bytes] = loop.create_future()
        pending[rid] = future
        await publisher.publish(f"{tag}:B", rid + b"|" + RAW_PAYLOAD)
        await asyncio.wait_for(future, 10)

    channel.send({"ready": True})
    await measurement_loop(channel, round_trip, cpu_pids)
    listening.cancel()
    await pubsub.aclose()
    await publisher.aclose()


# --- raw direct baseline: length-prefixed TCP A <-> B, websocket B <-> client ------------


class _Frames(asyncio.Protocol):
    """4-byte big-endian length + payload, as the direct channels frame mesh messages."""

    def __init__(self, on_frame: Callable[[bytes], None]) -> None:
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 4:
            size = int.from_bytes(buffer[start : start + 4], "big")
            if len(buffer) - start - 4 < size:
                break
            self.on_frame(bytes(buffer[start + 4 : start + 4 + size]))
            start += 4 + size
        del buffer[:start]

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(len(payload).to_bytes(4, "big") + payload)


async def tcp_node_b(
    channel: ChildChannel, port: int, tcp_port: int, uvloop: bool | None = None
) -> None:
    """Raw direct B: frames from A -> websocket to the client -> its echo -> frame to A."""
    from websockets.asyncio.server import serve

    loop = asyncio.get_running_loop()
    client_ws: asyncio.Future[Any] = loop.create_future()
    to_a: list[_Frames] = []
    sending: set[asyncio.Task[None]] = set()

    def from_a(frame: bytes) -> None:
        # As the mesh does: one task per message on the way to the client.
        task = loop.create_task(client_ws.result().send(frame))
        sending.add(task)
        task.add_done_callback(sending.discard)

    def accepted() -> _Frames:
        frames = _Frames(from_a)
        to_a.append(frames)
        return frames

    async def handle(ws: Any) -> None:
        client_ws.set_result(ws)
        async for frame in ws:
            to_a[-1].send(frame)

    tcp = await loop.create_server(accepted, "127.0.0.1", tcp_port)
    async with serve(handle, "127.0.0.1", port, compression=None, ping_interval=None):
        channel.send({"ready": True})
        await channel.recv()
    tcp.close()


async def tcp_node_a(
    channel: ChildChannel, tcp_port: int, cpu_pids: dict[str, int], uvloop: bool | None = None
) -> None:
    """Raw direct A: frame "<id>|payload" to B, resolve the future when it comes back."""
    loop = asyncio.get_running_loop()
    pending: dict[bytes, asyncio.Future[bytes]] = {}

    def on_frame(frame: bytes) -> None:
        future = pending.pop(frame.split(b"|", 1)[0], None)
        if future is not None and not future.done():
            future.set_result(frame)

    _, frames = await loop.create_connection(lambda: _Frames(on_frame), "127.0.0.1", tcp_port)
    counter = 0

    async def round_trip(_: int) -> None:
        nonlocal counter
        counter += 1
        rid = str(counter).encode()
        future: asyncio.Future[bytes] = loop.create_future()
        pending[rid] = future
        frames.send(rid + b"|" + RAW_PAYLOAD)
        await asyncio.wait_for(future, 10)

    channel.send({"ready": True})
    await measurement_loop(channel, round_trip, cpu_pids)


# --- orchestration -------------------------------------------------------------------------


def _start_trio(
    stack: contextlib.ExitStack,
    label: str,
    profile: Profile,
    make_b: Callable[[str, int], Child],
    make_client: Callable[[int, dict[str, Any]], Child],
    make_a: Callable[[str, dict[str, int], dict[str, Any]], Child],
) -> Child:
    """Redis, then B, then the client, then A (ready when it can invoke); all on ``stack``."""
    log(f"{NAME}: starting {label}")
    redis_server = stack.enter_context(private_redis())
    port = free_port()
    (b,) = stack.enter_context(children(make_b(redis_server.url, port)))
    b.recv(profile.ready_timeout)
    (client,) = stack.enter_context(children(make_client(port, {})))
    client_ready = client.recv(profile.ready_timeout)
    pids = _pids(b.pid, client.pid, redis_server.pid)
    (a,) = stack.enter_context(children(make_a(redis_server.url, pids, client_ready)))
    a.recv(profile.ready_timeout)
    return a


def run(profile: Profile) -> list[BenchResult]:
    """Raw baseline, meshsrpc and python-socketio side by side, measured in alternating rounds."""
    levels = list(profile.cross_concurrency)
    tag = "rawbench"
    starters: dict[str, Callable[[contextlib.ExitStack], Child]] = {
        "raw": lambda stack: _start_trio(
            stack, "raw", profile,
            lambda url, port: Child("raw B", raw_node_b, role="server", redis_url=url,
                                    port=port, tag=tag),
            lambda port, _: Child("raw client", raw_client, role="load",
                                  url=f"ws://127.0.0.1:{port}/"),
            lambda url, pids, _: Child("raw A", raw_node_a, role="load", redis_url=url, tag=tag,
                                       cpu_pids=pids),
        ),
        "meshsrpc": lambda stack: _start_trio(
            stack, "meshsrpc", profile,
            lambda url, port: Child("meshsrpc B", mesh_node_b, role="server", redis_url=url,
                                    port=port, direct=False),
            lambda port, _: Child("SRPC client", srpc_client, role="load",
                                  url=f"ws://127.0.0.1:{port}/srpc", client_id=CLIENT_ID),
            lambda url, pids, _: Child("meshsrpc A", mesh_node_a, role="load", redis_url=url,
                                       cpu_pids=pids, direct=False),
        ),
        **_direct_starters(profile, uvloop=False),
        **(_direct_starters(profile, uvloop=True) if _uvloop_installed() else {}),
        "socketio": lambda stack: _start_trio(
            stack, "socketio", profile,
            lambda url, port: Child("socketio B", socketio_cross.node_b, role="server",
                                    redis_url=url, port=port),
            lambda port, _: Child("socketio client", socketio_cross.client, role="load",
                                  port=port),
            lambda url, pids, ready: Child("socketio A", socketio_cross.node_a, role="load",
                                           redis_url=url, sid=ready["sid"], cpu_pids=pids),
        ),
    }  # fmt: skip
    runs: dict[str, list[dict[str, Any]] | str] = {}
    if not _uvloop_installed():
        runs["raw direct uvloop"] = runs["meshsrpc direct uvloop"] = "uvloop is not installed"
    with contextlib.ExitStack() as stack:
        variants: dict[str, Child] = {}
        for label, start in starters.items():
            try:
                variants[label] = start(stack)
            except NotAvailable as exc:
                runs[label] = str(exc)
        runs.update(alternate(variants, levels, profile))
    return [
        *_assemble(runs),
        _assemble_direct(runs),
        _assemble_direct(runs, uvloop=True),
    ]


def _direct_starters(
    profile: Profile, *, uvloop: bool
) -> dict[str, Callable[[contextlib.ExitStack], Child]]:
    """The floor of the direct path and meshsrpc over direct channels, on one loop.

    Every process of these trios (A, B and the client) runs on uvloop or on asyncio.
    """
    tcp_port = free_port()
    suffix = " uvloop" if uvloop else ""
    return {
        f"raw direct{suffix}": lambda stack: _start_trio(
            stack, f"raw direct{suffix}", profile,
            lambda url, port: Child(f"raw direct B{suffix}", tcp_node_b, role="server",
                                    port=port, tcp_port=tcp_port, uvloop=uvloop),
            lambda port, _: Child(f"raw direct client{suffix}", raw_client, role="load",
                                  url=f"ws://127.0.0.1:{port}/", uvloop=uvloop),
            lambda url, pids, _: Child(f"raw direct A{suffix}", tcp_node_a, role="load",
                                       tcp_port=tcp_port, cpu_pids=pids, uvloop=uvloop),
        ),
        f"meshsrpc direct{suffix}": lambda stack: _start_trio(
            stack, f"meshsrpc direct{suffix}", profile,
            lambda url, port: Child(f"direct B{suffix}", mesh_node_b, role="server",
                                    redis_url=url, port=port, direct=True, uvloop=uvloop),
            lambda port, _: Child(f"direct SRPC client{suffix}", srpc_client, role="load",
                                  url=f"ws://127.0.0.1:{port}/srpc", client_id=CLIENT_ID,
                                  uvloop=uvloop),
            lambda url, pids, _: Child(f"direct A{suffix}", mesh_node_a, role="load",
                                       redis_url=url, cpu_pids=pids, direct=True,
                                       uvloop=uvloop),
        ),
    }  # fmt: skip


def _uvloop_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def _pids(b: int | None, client: int | None, redis: int | None) -> dict[str, int]:
    pids = {"B": b, "client": client, "redis": redis}
    return {name: pid for name, pid in pids.items() if pid is not None}


def _assemble(runs: dict[str, list[dict[str, Any]] | str]) -> list[BenchResult]:
    mesh_result = BenchResult(NAME, TITLE)
    sio_result = BenchResult(socketio_cross.NAME, socketio_cross.TITLE)
    raw, mesh, sio = runs["raw"], runs["meshsrpc"], runs["socketio"]
    if isinstance(raw, str):
        mesh_result.status, mesh_result.reason = "not available", raw
    elif isinstance(mesh, str):
        mesh_result.status, mesh_result.reason = "not available", mesh
    else:
        base_name = "raw PUBLISH->SUBSCRIBE->ws->PUBLISH round trip"
        ratios: list[tuple[int, float]] = []
        for base, run_ in zip(raw, mesh, strict=True):
            level = run_["concurrency"]
            mesh_result.add_load("raw round trip", base)
            mesh_result.add_load("meshsrpc", run_)
            p50 = mesh_result.figure(
                f"p50, {level} in flight", run_["p50_ms"], "ms", baseline=base["p50_ms"],
                baseline_name=base_name, higher_is_better=False, in_flight=level,
            )  # fmt: skip
            mesh_result.figure(
                f"p99, {level} in flight", run_["p99_ms"], "ms", baseline=base["p99_ms"],
                baseline_name=base_name, higher_is_better=False, in_flight=level,
            )  # fmt: skip
            mesh_result.figure(
                f"invokes/s, {level} in flight", run_["throughput"], "invokes/s",
                baseline=base["throughput"], baseline_name=base_name, in_flight=level,
            )  # fmt: skip
            for label, names in (
                ("node A", ["self"]),
                ("node B", ["B"]),
                ("A + B + client + Redis", ["self", "B", "client", "redis"]),
            ):
                mesh_result.cpu_figure(
                    f"CPU per invoke, {label}, {level} in flight", run_, base, names,
                    base_name, in_flight=level,
                )  # fmt: skip
            ratios.append((level, p50["ratio"] or float("inf")))
        mesh_result.target(
            "cross-node p50 <= 1.3x raw round trip (every in-flight level)",
            all(r <= 1.3 for _, r in ratios),
            ", ".join(f"{level} in flight: {r:.2f}x" for level, r in ratios),
        )
    if isinstance(sio, str):
        sio_result.status, sio_result.reason = "not available", sio
        return [mesh_result, sio_result]
    details, met = [], True
    for index, run_ in enumerate(sio):
        level = run_["concurrency"]
        sio_result.add_load("python-socketio", run_)
        sio_result.figure(f"p50, {level} in flight", run_["p50_ms"], "ms",
                          higher_is_better=False, in_flight=level)  # fmt: skip
        sio_result.figure(f"p99, {level} in flight", run_["p99_ms"], "ms",
                          higher_is_better=False, in_flight=level)  # fmt: skip
        sio_result.figure(f"calls/s, {level} in flight", run_["throughput"], "calls/s",
                          in_flight=level)  # fmt: skip
        if not isinstance(mesh, str):
            fig = sio_result.figure(
                f"meshsrpc invokes/s vs socketio calls/s, {level} in flight",
                mesh[index]["throughput"], "invokes/s", baseline=run_["throughput"],
                baseline_name="python-socketio call()", in_flight=level,
            )  # fmt: skip
            sio_result.cpu_figure(
                f"meshsrpc CPU per invoke vs socketio per call (A + B), {level} in flight",
                mesh[index], run_, ["self", "B"], "python-socketio call()", in_flight=level,
            )  # fmt: skip
            if level >= 10:
                details.append(f"{level} in flight: {times(fig['ratio'])}")
                met = met and fig["ratio"] is not None and fig["ratio"] >= 3.0
    if not isinstance(mesh, str):
        for run_ in mesh:
            sio_result.throughput.setdefault("meshsrpc", {})[str(run_["concurrency"])] = run_[
                "throughput"
            ]
        sio_result.target(
            "meshsrpc cross-node invokes/s >= 3x socketio at 10 and 100 in flight",
            met if details else None,
            ", ".join(details) or "no level >= 10 in this profile",
        )
    else:
        sio_result.target(
            "meshsrpc cross-node invokes/s >= 3x socketio at 10 and 100 in flight",
            None,
            f"meshsrpc not available: {mesh}",
        )
    return [mesh_result, sio_result]


DIRECT_NAME = "cross_node_direct"
DIRECT_TITLE = "Cross-node invoke over direct channels (A -> client on B, no Redis hop)"
DIRECT_UVLOOP_NAME = "cross_node_direct_uvloop"
DIRECT_UVLOOP_TITLE = (
    "Cross-node invoke over direct channels under uvloop (A, B, client and the floor on uvloop)"
)


def _assemble_direct(
    runs: dict[str, list[dict[str, Any]] | str], *, uvloop: bool = False
) -> BenchResult:
    """Direct channels against their floor (raw TCP + websocket, on the same loop) and
    today's Redis path (asyncio) of the same run."""
    suffix = " uvloop" if uvloop else ""
    result = BenchResult(
        DIRECT_UVLOOP_NAME if uvloop else DIRECT_NAME,
        DIRECT_UVLOOP_TITLE if uvloop else DIRECT_TITLE,
    )
    floor = runs.get(f"raw direct{suffix}", "not run")
    direct = runs.get(f"meshsrpc direct{suffix}", "not run")
    redis_path, sio = runs.get("meshsrpc", "not run"), runs.get("socketio", "not run")
    for missing in (floor, direct, redis_path):
        if isinstance(missing, str):
            result.status, result.reason = "not available", missing
            return result
    assert not isinstance(floor, str) and not isinstance(direct, str)
    assert not isinstance(redis_path, str)
    floor_name = "raw TCP frame -> ws -> TCP frame round trip" + (" (uvloop)" if uvloop else "")
    result.notes.append(
        "A, B and the client on uvloop, and so the floor; the Redis path on asyncio"
        if uvloop
        else "every process on asyncio's own loop"
    )
    p50_ratios: dict[int, tuple[float, float]] = {}
    throughput_ratios: dict[int, float] = {}
    sio_ratios: dict[int, float] = {}
    for index, (base, run_, old) in enumerate(zip(floor, direct, redis_path, strict=True)):
        level = run_["concurrency"]
        result.add_load(f"raw TCP + ws round trip{suffix}", base)
        result.add_load(f"meshsrpc direct{suffix}", run_)
        p50 = result.figure(
            f"p50, {level} in flight", run_["p50_ms"], "ms", baseline=base["p50_ms"],
            baseline_name=floor_name, higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"p99, {level} in flight", run_["p99_ms"], "ms", baseline=base["p99_ms"],
            baseline_name=floor_name, higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"invokes/s, {level} in flight", run_["throughput"], "invokes/s",
            baseline=base["throughput"], baseline_name=floor_name, in_flight=level,
        )  # fmt: skip
        vs_redis = result.figure(
            f"p50 vs the Redis path, {level} in flight", run_["p50_ms"], "ms",
            baseline=old["p50_ms"], baseline_name="meshsrpc via Redis (same run)",
            higher_is_better=False, in_flight=level,
        )  # fmt: skip
        result.figure(
            f"p99 vs the Redis path, {level} in flight", run_["p99_ms"], "ms",
            baseline=old["p99_ms"], baseline_name="meshsrpc via Redis (same run)",
            higher_is_better=False, in_flight=level,
        )  # fmt: skip
        tput = result.figure(
            f"invokes/s vs the Redis path, {level} in flight", run_["throughput"], "invokes/s",
            baseline=old["throughput"], baseline_name="meshsrpc via Redis (same run)",
            in_flight=level,
        )  # fmt: skip
        for label, names in (("node A", ["self"]), ("node B", ["B"])):
            result.cpu_figure(
                f"CPU per invoke, {label}, {level} in flight", run_, old, names,
                "meshsrpc via Redis (same run)", in_flight=level,
            )  # fmt: skip
        p50_ratios[level] = (p50["ratio"] or float("inf"), vs_redis["ratio"] or float("inf"))
        throughput_ratios[level] = tput["ratio"] or 0.0
        if not isinstance(sio, str):
            fig = result.figure(
                f"invokes/s vs socketio calls/s, {level} in flight", run_["throughput"],
                "invokes/s", baseline=sio[index]["throughput"],
                baseline_name="python-socketio call()", in_flight=level,
            )  # fmt: skip
            sio_ratios[level] = fig["ratio"] or 0.0
    if 1 in p50_ratios:
        floor_ratio, redis_ratio = p50_ratios[1]
        result.target(
            "direct p50 at 1 in flight <= 1.3x the floor (raw TCP + ws) and <= 0.6x the Redis path",
            floor_ratio <= 1.3 and redis_ratio <= 0.6,
            f"{floor_ratio:.2f}x the floor, {redis_ratio:.2f}x the Redis path",
        )
    top = max(throughput_ratios) if throughput_ratios else None
    if top is not None:
        result.target(
            f"direct invokes/s at {top} in flight >= 1.5x the Redis path",
            throughput_ratios[top] >= 1.5,
            f"{throughput_ratios[top]:.2f}x",
        )
    wide = {level: r for level, r in sio_ratios.items() if level >= 10}
    result.target(
        "direct invokes/s >= 3x socketio at 10 and 100 in flight",
        all(r >= 3.0 for r in wide.values()) if wide else None,
        ", ".join(f"{level} in flight: {r:.2f}x" for level, r in wide.items())
        or "no level >= 10 in this profile (or socketio not available)",
    )
    return result
