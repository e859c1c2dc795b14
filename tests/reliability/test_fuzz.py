"""Issue 8: bad input never takes a node down.

Hypothesis-generated and mutated SRPC frames, odd query strings, and malformed JSON
published onto a node's inbox and the broadcast channel. The node never crashes, it
closes only the offending stream (4000 for a bad frame), a bystander client keeps
working throughout, the mesh keeps routing, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meshsrpc import MeshSrpcServer, RedisSettings, SrpcClient
from meshsrpc.settings import create_redis_client
from meshsrpc.testing import FAST_MESH
from redis.asyncio import Redis
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from tests.generated.sgnl24.TestRpc import (
    ByteStreamOperation,
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    PingPong,
    ServerMessage,
    UComplexRequest,
    UEchoRequest,
    UEchoResponse,
    WriteByteStream,
)
from tests.reliability.harness import SOAK

FRAME_CASES = 2000 if SOAK else 300
JSON_CASES = 3000 if SOAK else 400
QUERY_CASES = 400 if SOAK else 80
MEMORY_BOUND = 16 * 1024 * 1024  # generous: the point is "bounded", not "small"
FAST: dict[str, Any] = FAST_MESH
PING = bytes(ClientMessage(ping_pong=PingPong()))
Node = MeshSrpcServer[ClientMessage, ServerMessage, Any]
Client = SrpcClient[ClientMessage, ServerMessage]


def collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """Draw ``count`` examples from a Hypothesis strategy (as a fuzz-case generator)."""
    cases: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(case: Any) -> None:
        cases.append(case)

    draw()
    return cases


def valid_frames() -> st.SearchStrategy[bytes]:
    texts = st.text(max_size=40)
    messages = st.one_of(
        st.builds(
            lambda r, m: ClientMessage(request_id=r, u_echo_request=UEchoRequest(message=m)),
            texts,
            texts,
        ),
        st.builds(
            lambda r, n: ClientMessage(
                request_id=r, u_complex_request=UComplexRequest(int_field=n, array_field=["a"])
            ),
            texts,
            st.integers(-(2**31), 2**31 - 1),
        ),
        st.builds(
            lambda r, s, b: ClientMessage(
                request_id=r,
                byte_stream_operation=ByteStreamOperation(
                    stream_id=s, write=WriteByteStream(chunk=b)
                ),
            ),
            texts,
            st.integers(-(2**31), 2**31 - 1),
            st.binary(max_size=40),
        ),
        st.builds(lambda r: ClientMessage(request_id=r, reply=True, error="x"), texts),
        st.just(ClientMessage(ping_pong=PingPong())),
    )
    return messages.map(bytes)


def frame_cases() -> st.SearchStrategy[bytes | str]:
    valid = valid_frames()
    varint_huge = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    return st.one_of(
        st.binary(max_size=300),  # noise
        st.tuples(valid, st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])]),  # truncated
        st.tuples(valid, valid).map(lambda t: t[0] + t[1]),  # two oneof members (merged)
        st.tuples(valid, st.integers(16, 4000), st.binary(max_size=20)).map(  # unknown field
            lambda t: (
                t[0] + bytes([(t[1] << 3 | 2) & 0x7F | 0x80, t[1] >> 4]) + bytes([len(t[2])]) + t[2]
            )
        ),
        st.tuples(
            st.sampled_from([0x0A, 0x92, 0x9A, 0xA2]), st.binary(max_size=10)
        ).map(  # huge lengths
            lambda t: bytes([t[0]]) + (b"\x03" if t[0] >= 0x92 else b"") + varint_huge + t[1]
        ),
        st.text(max_size=50),  # non-binary frame
    )


@pytest.fixture
async def node(redis_settings: RedisSettings) -> AsyncIterator[Node]:
    server: Node = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="fuzz",
        redis=redis_settings,
        allow_unsigned=True,
        **FAST,
    )
    server.register_message_handler("uEcho", lambda _s, r: UEchoResponse(message=r.message))
    await server.listen("127.0.0.1", 0)
    await server.mesh_start()
    yield server
    await server.mesh_stop()
    await server.close()


async def bystander(node: Node, cid: str = "bystander") -> Client:
    client: Client = SrpcClient(
        f"ws://127.0.0.1:{node.port}/srpc", ClientMessage, ServerMessage, cid
    )
    client.register_message_handler("dNotify", lambda _r: DNotifyResponse(acknowledged=True))
    await client.connect()
    return client


async def still_serving(node: Node, client: Client) -> None:
    """The bystander's stream works both ways, and the node is still in the mesh."""
    assert client.is_connected
    assert (await client.invoke("uEcho", UEchoRequest(message="ok"), timeout=5)).message == "ok"
    reply = await node.invoke(
        client.client_id, "dNotify", DNotifyRequest(notification="x"), timeout=5
    )
    assert reply.acknowledged


async def run_frame_case(node: Node, frame: bytes | str, n: int) -> str:
    """One raw connection gets ``frame`` after the handshake; returns what happened."""
    url = f"ws://127.0.0.1:{node.port}/srpc?id=f{n}&cid=fuzz{n}&appv=1&_v=2"
    async with ws_connect(url, compression=None, proxy=None, max_size=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        await ws.send(frame)
        # A valid request after it: answered if the stream survived, else the close code.
        probe = ClientMessage(request_id="probe", u_echo_request=UEchoRequest(message="p"))
        try:
            await ws.send(bytes(probe))
            async with asyncio.timeout(5):
                while True:
                    reply = ServerMessage().parse(await ws.recv())
                    if reply.request_id == "probe":
                        return "alive"
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            return f"closed {code}"


async def test_fuzzed_frames_close_only_the_offending_stream(node: Node) -> None:
    watcher = await bystander(node)
    cases = collect(frame_cases(), FRAME_CASES)
    outcomes: dict[str, int] = {}
    gc.collect()
    tracemalloc.start()
    try:
        for n, frame in enumerate(cases):
            outcome = await run_frame_case(node, frame, n)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if n == 50:
                gc.collect()
                baseline = tracemalloc.get_traced_memory()[0]
            if n % 50 == 0:
                await still_serving(node, watcher)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    print(f"\nfuzz frames: {len(cases)} cases {outcomes} memory growth {growth / 1e6:.2f} MB")
    assert set(outcomes) <= {"alive", "closed 4000"}, outcomes
    assert outcomes.get("closed 4000", 0) > 0
    assert growth < MEMORY_BOUND
    await still_serving(node, watcher)
    # Every fuzz stream is gone, from the server and from the registry.
    await asyncio.sleep(0.2)
    assert set(node.streams_by_client_id) == {"bystander"}
    assert [c.client_id for c in await node.client_registry.list_clients()] == ["bystander"]
    await watcher.disconnect()


def query_cases() -> st.SearchStrategy[str]:
    names = st.sampled_from(
        ["id", "cid", "appv", "ts", "_v", "_supersede", "authv", "signature", "m--x", "m--"]
    )
    junk = st.one_of(
        st.text(max_size=30).map(lambda s: quote(s, safe="")),
        st.binary(max_size=20).map(lambda b: "".join(f"%{x:02x}" for x in b)),  # often not UTF-8
        st.sampled_from(
            ["", "-1", "99999999999999999999999", "1e3", "NaN", "%", "%zz", "&&", "=="]
        ),
        st.integers(1000, 20000).map(lambda n: "x" * n),  # overlong
    )
    pairs = st.lists(st.tuples(names, junk), max_size=8)
    base = st.sampled_from(["", "id=i&cid=q&appv=1&", "id=i&id=j&cid=q&cid=r&appv=1&appv=2&"])
    return st.tuples(base, pairs).map(lambda t: t[0] + "&".join(f"{k}={v}" for k, v in t[1]))


async def test_fuzzed_query_strings_are_refused_or_served_never_fatal(node: Node) -> None:
    watcher = await bystander(node)
    statuses: dict[int, int] = {}
    cases = collect(query_cases(), QUERY_CASES)
    for n, query in enumerate(cases):
        url = f"ws://127.0.0.1:{node.port}/srpc?{query}"
        try:
            async with ws_connect(url, compression=None, proxy=None, open_timeout=5) as ws:
                status = 101
                await ws.close()
        except InvalidStatus as exc:
            status = exc.response.status_code
        except (ConnectionClosed, InvalidURI, EOFError, OSError):
            status = 0  # the server hung up on an oversized request line
        statuses[status] = statuses.get(status, 0) + 1
        if n % 20 == 0:
            await still_serving(node, watcher)
    print(f"\nfuzz queries: {len(cases)} cases, statuses {statuses}")
    assert all(status < 500 for status in statuses), statuses
    assert statuses.get(400, 0) > 0
    await still_serving(node, watcher)
    await watcher.disconnect()


def json_cases() -> st.SearchStrategy[bytes]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    )
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=10,
    )
    keys = st.sampled_from(
        [
            "requestId",
            "senderInstanceId",
            "type",
            "data",
            "timeoutMs",
            "reply",
            "error",
            "heartbeat",
            "broadcast",
        ]
    )
    types = st.sampled_from(["forward", "kickClient", "updateMeta", "nope", ""])
    messages = st.dictionaries(keys, st.one_of(values, types), max_size=6)
    forward = st.builds(
        lambda rid, data: {
            "requestId": rid,
            "senderInstanceId": 999,
            "type": "forward",
            "data": data,
            "timeoutMs": 50,
        },
        st.text(max_size=8),
        st.one_of(
            values,
            st.fixed_dictionaries(
                {
                    "clientId": st.sampled_from(["nobody", "bystander"]),
                    "type": st.text(max_size=12),
                    "data": values,
                }
            ),
        ),
    )
    encoded = st.one_of(messages, forward, values).map(lambda m: json.dumps(m).encode())
    return st.one_of(
        encoded,
        st.binary(max_size=100),  # not JSON, not even UTF-8
        encoded.map(lambda b: b[: len(b) // 2]),  # truncated JSON
        st.integers(10_000, 200_000).map(lambda n: b"[" * n + b"]" * n),  # deeply nested
    )


async def test_malformed_mesh_messages_are_dropped(
    node: Node, redis_settings: RedisSettings
) -> None:
    watcher = await bystander(node)
    other: Node = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="fuzz",
        redis=redis_settings,
        allow_unsigned=True,
        **FAST,
    )
    await other.mesh_start()
    redis: Redis = create_redis_client(redis_settings)
    base = f"{redis_settings.key_prefix}:mesh:_mc:fuzz"
    channels = [f"{base}:node:{node.mesh_instance_id}", f"{base}:broadcast"]
    cases = collect(json_cases(), JSON_CASES)
    try:
        for n, payload in enumerate(cases):
            await redis.publish(channels[n % 2], payload)
            if n % 100 == 0:
                await still_serving(node, watcher)
                # Another node can still reach the bystander through this node.
                reply = await other.invoke(
                    "bystander", "dNotify", DNotifyRequest(notification="y"), timeout=5
                )
                assert reply.acknowledged
        await asyncio.sleep(0.3)
        print(f"\nfuzz mesh messages: {len(cases)} published")
        await still_serving(node, watcher)
        nodes = await other._mesh_client_service.mesh.get_nodes()
        assert {n.instance_id for n in nodes} == {node.mesh_instance_id, other.mesh_instance_id}
    finally:
        await redis.aclose()
        await watcher.disconnect()
        await other.mesh_stop()
        await other.close()
