"""A MeshSrpcServer node in its own process that reports its callbacks as JSON lines.

Usage: ``python node_child.py <redis url> <key prefix> [option=value ...]``, with the
repository root on ``PYTHONPATH`` (``meshsrpc.testing.child_env``).
Options: ``heartbeat``, ``ttl`` (node TTL), ``probe`` (probe timeout), ``replay`` (1/0),
``secret``.

stdout, one JSON object per line, flushed at once:

- ``{"ev": "ready", "port": int, "node": int}`` once listening and in the mesh;
- ``{"ev": "connected"|"disconnected", "cid": str, "s": str|null, "node": int, "t": float}``
  (``s`` is the client's ``m--s`` session token, so the test can tell connections apart);
- ``{"ev": "orphaned", "dead": int, "clients": [[cid, s], ...], "node": int, "t": float}``;
- ``{"ev": "leader", "node": int}`` when it becomes the cleanup leader;
- ``{"ev": "stopped", "node": int}`` after a graceful stop (SIGTERM: mesh_stop, then close;
  SIGUSR1: ``drain()`` first, as in a rolling restart).

SIGKILL it to simulate a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from typing import Any

from meshsrpc import LeaderOptions, MeshSrpcServer, RedisSettings, RegisteredClient

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
    USlowRequest,
    USlowResponse,
)


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _token(metadata: Any) -> Any:
    return metadata.get("s") if isinstance(metadata, dict) else None


async def main(url: str, prefix: str, options: dict[str, str]) -> None:
    heartbeat = float(options.get("heartbeat", "0.2"))
    ttl = float(options.get("ttl", "1.5"))
    extra: dict[str, Any] = {}
    if "secret" in options:
        extra["auth_secret"] = options["secret"]
    if "probe" in options:
        extra["probe_timeout"] = float(options["probe"])
    if "replay" in options:
        extra["replay_protection"] = options["replay"] == "1"
    node: MeshSrpcServer[ClientMessage, ServerMessage, Any] = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="app",
        redis=RedisSettings(url=url, prefix=prefix),
        heartbeat_interval=heartbeat,
        node_ttl=ttl,
        request_timeout=3.0,
        leader=LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
        allow_unsigned=True,
        **extra,
    )

    known_id = 0

    def me() -> int:
        # After mesh_stop() the instance id reads 0; callbacks of the closing streams
        # still belong to the id this node had.
        nonlocal known_id
        known_id = node.mesh_instance_id or known_id
        return known_id

    def on_connected(client_id: str, metadata: Any) -> None:
        emit(
            ev="connected",
            cid=client_id,
            s=_token(metadata),
            node=me(),
            t=time.time(),
        )

    def on_disconnected(client_id: str, metadata: Any) -> None:
        emit(
            ev="disconnected",
            cid=client_id,
            s=_token(metadata),
            node=me(),
            t=time.time(),
        )

    def on_orphaned(dead: int, clients: list[RegisteredClient[Any]]) -> None:
        emit(
            ev="orphaned",
            dead=dead,
            clients=[[c.client_id, _token(c.metadata)] for c in clients],
            node=me(),
            t=time.time(),
        )

    async def echo(_stream: Any, request: UEchoRequest) -> UEchoResponse:
        return UEchoResponse(message=request.message)

    async def slow(_stream: Any, request: USlowRequest) -> USlowResponse:
        await asyncio.sleep(request.delay_ms / 1000)
        return USlowResponse(message="done", actual_delay_ms=request.delay_ms)

    node.on_client_connected(on_connected)
    node.on_client_disconnected(on_disconnected)
    node.on_node_clients_orphaned(on_orphaned)
    node.register_message_handler("uEcho", echo)
    node.register_message_handler("uSlow", slow)
    await node.listen("127.0.0.1", 0)
    await node.mesh_start()
    emit(ev="ready", port=node.port, node=me())

    async def watch_leadership() -> None:
        # The test kills the leader on purpose: it must know which node that is.
        leading = False
        while True:
            if node.is_leader and not leading:
                emit(ev="leader", node=me())
            leading = node.is_leader
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_leadership())
    stop = asyncio.Event()
    drain = False

    def drain_then_stop() -> None:
        nonlocal drain
        drain = True
        stop.set()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, drain_then_stop)
    await stop.wait()
    watcher.cancel()
    instance_id = node.mesh_instance_id
    if drain:
        await node.drain()
    await node.mesh_stop()
    await node.close()
    emit(ev="stopped", node=instance_id)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("meshsrpc.mesh_server").setLevel(logging.DEBUG)
    opts = dict(arg.split("=", 1) for arg in sys.argv[3:])
    asyncio.run(main(sys.argv[1], sys.argv[2], opts))
