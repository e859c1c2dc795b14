"""Raw SRPC frames and a minimal load-generator client sending what a TypeScript client sends.

The load generators speak the wire directly (WIRE.md section 4) so that what is
measured is the server, not SrpcClient: the same frames go to the plain
`websockets` echo baseline. Also the adapters that find meshsrpc's parts and say
"not available" while a part has not landed yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from .runner import NotAvailable

SECRET = "meshsrpc-bench-secret"
PONG = (
    b"\x92\x03\x00"  # ClientMessage{pingPong: {}}, the client's answer to the server's first ping
)


def test_proto() -> Any:
    """The betterproto2 classes of the SRPC test schema (tests/generated/sgnl24/TestRpc)."""
    try:
        from tests.generated.sgnl24 import TestRpc
    except ImportError as exc:
        raise NotAvailable(f"betterproto2 classes of srpc_test.proto missing ({exc})") from exc
    return TestRpc


def srpc_server_class() -> Any:
    """meshsrpc's SrpcServer, or NotAvailable."""
    try:
        from meshsrpc import SrpcServer  # type: ignore[attr-defined]
    except ImportError:
        try:
            from meshsrpc.srpc import SrpcServer  # type: ignore[attr-defined]
        except ImportError as exc:
            raise NotAvailable(f"meshsrpc.SrpcServer has not landed ({exc})") from exc
    return SrpcServer


def mesh_srpc_server_class() -> Any:
    """meshsrpc's MeshSrpcServer, or NotAvailable."""
    try:
        from meshsrpc import MeshSrpcServer  # type: ignore[attr-defined]
    except ImportError:
        try:
            from meshsrpc.mesh_server import MeshSrpcServer  # type: ignore[import-not-found]
        except ImportError as exc:
            raise NotAvailable(f"meshsrpc.MeshSrpcServer has not landed ({exc})") from exc
    return MeshSrpcServer


def prometheus_metrics() -> Any:
    """A PrometheusMetrics on a registry of its own, or NotAvailable."""
    try:
        from meshsrpc.metrics import PrometheusMetrics  # type: ignore[import-not-found]
        from prometheus_client import CollectorRegistry
    except ImportError as exc:
        raise NotAvailable(f"meshsrpc[metrics] is not installed ({exc})") from exc
    return PrometheusMetrics(CollectorRegistry())


def redis_registry_class() -> Any:
    """meshsrpc's MeshClientRedisRegistry, or NotAvailable."""
    try:
        from meshsrpc import MeshClientRedisRegistry  # type: ignore[attr-defined]
    except ImportError:
        try:
            from meshsrpc.registry import MeshClientRedisRegistry  # type: ignore[attr-defined]
        except ImportError as exc:
            raise NotAvailable(f"meshsrpc.MeshClientRedisRegistry has not landed ({exc})") from exc
    return MeshClientRedisRegistry


async def start_listening(server: Any, host: str, port: int, wait: float = 20.0) -> Any:
    """``server.listen(host, port)`` whether it returns once listening or serves forever."""
    task = asyncio.ensure_future(server.listen(host, port))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if task.done():
            task.result()
            return task
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return task
        await asyncio.sleep(0.02)
    raise TimeoutError(f"SRPC server did not listen on {host}:{port}")


# --- frames --------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """Protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def with_request_id(request_id: str, body: bytes, *, reply: bool = False) -> bytes:
    """``body`` (an encoded message without field 1) with requestId (and reply) in front.

    Protobuf fields may come in any order, so prefixing is a valid encoding and lets
    the load generator skip a full encode per request.
    """
    rid = request_id.encode()
    return b"\x0a" + varint(len(rid)) + rid + (b"\x10\x01" if reply else b"") + body


def read_request_id(frame: bytes) -> bytes | None:
    """The requestId when it is the frame's first field (as every encoder writes it)."""
    if len(frame) < 2 or frame[0] != 0x0A:
        return None
    length, shift, pos = 0, 0, 1
    while pos < len(frame):
        byte = frame[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return frame[pos : pos + length]


def is_ping(frame: bytes) -> bool:
    """True for a ServerMessage that only carries pingPong (any requestId/reply form)."""
    return frame.endswith(PONG) and len(frame) <= 16


def echo_body(message: str) -> bytes:
    """ClientMessage{uEchoRequest: {message}} without requestId."""
    proto = test_proto()
    return bytes(proto.ClientMessage(u_echo_request=proto.UEchoRequest(message=message)))


def notify_reply_body() -> bytes:
    """ClientMessage{dNotifyResponse: {acknowledged: true}} without requestId/reply."""
    proto = test_proto()
    return bytes(proto.ClientMessage(d_notify_response=proto.DNotifyResponse(acknowledged=True)))


def signed_query(client_id: str, *, secret: str = SECRET, protocol_version: int = 2) -> str:
    """The connect query string of WIRE.md section 4, HMAC-signed."""
    params = {
        "authv": "1",
        "appv": "bench",
        "ts": str(int(time.time() * 1000)),
        "id": str(uuid.uuid4()),
        "cid": client_id,
    }
    text = "".join(f"{params[k]}\n" for k in ("authv", "appv", "ts", "id", "cid"))
    params["signature"] = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    params["_v"] = str(protocol_version)
    return urlencode(params)


async def connect_raw(base_url: str, client_id: str | None, *, handshake: bool = True) -> Any:
    """A websockets connection (compression off); with ``handshake``, an activated SRPC stream.

    ``client_id`` None connects to ``base_url`` as is (the plain echo baseline).
    """
    from websockets.asyncio.client import connect

    url = base_url if client_id is None else f"{base_url}?{signed_query(client_id)}"
    ws = await connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=60)
    if handshake:
        first = await ws.recv()
        if not isinstance(first, bytes) or not is_ping(first):
            raise RuntimeError(f"expected the server's first pingPong, got {first!r}")
        await ws.send(PONG)
    return ws


async def call(ws: Any, frame: bytes) -> bytes:
    """Send one frame and return the next frame that is not a ping."""
    await ws.send(frame)
    while True:
        reply: bytes = await ws.recv()
        if not is_ping(reply):
            return reply


async def answer_notify_requests(ws: Any) -> None:
    """Answer every server request on ``ws`` with dNotifyResponse{acknowledged: true}."""
    body = notify_reply_body()
    proto = None
    async for frame in ws:
        if is_ping(frame):
            continue
        rid = read_request_id(frame)
        if rid is None:
            if proto is None:
                proto = test_proto()
            rid = proto.ServerMessage.parse(frame).request_id.encode()
        await ws.send(b"\x0a" + varint(len(rid)) + rid + b"\x10\x01" + body)
